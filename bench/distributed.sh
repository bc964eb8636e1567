#!/usr/bin/env bash
# Distributed throughput: WORKERS worker processes (SLOTS slots each) of
# `dist_worker`, then one run of `spread(DIST_WIDTH)` submitted and timed from
# submission to its end. Needs DATABASE_URL (`eval "$(scripts/postgres.sh)"`).
#   bench/distributed.sh [WORKERS=2] [DIST_WIDTH=3333] [SLOTS=256]
set -euo pipefail
cd "$(dirname "$0")/.."
workers=${1:-2}
export DIST_WIDTH=${2:-3333}
slots=${3:-256}
: "${DATABASE_URL:?run: eval \"\$(scripts/postgres.sh)\"}"
cargo build --release -q -p aqueduct-examples --bin dist_worker
bin=target/release/dist_worker
pipes=()
for _ in $(seq "$workers"); do
    exec {fd}> >("$bin" "$DATABASE_URL" 30000 "$slots" >/dev/null 2>&1)
    pipes+=("$fd")
done
sleep 1
"$bin" submit "$DATABASE_URL" "bench-$(date +%s%N)"
for fd in "${pipes[@]}"; do exec {fd}>&-; done
wait
