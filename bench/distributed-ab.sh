#!/usr/bin/env bash
# Distributed throughput of two builds side by side: for each round, each build's
# `dist_worker` (WORKERS processes × 256 slots) runs `spread(DIST_WIDTH)` on a fresh
# database, the builds alternating. Needs DATABASE_URL whose role may create databases
# (`eval "$(scripts/postgres.sh)"`).
#   bench/distributed-ab.sh BEFORE_BIN AFTER_BIN [ROUNDS=5] [WORKERS=2]
# A build of another commit: `git worktree add /tmp/before REV` and
# `CARGO_TARGET_DIR=target-before cargo build --release -p aqueduct-examples --bin dist_worker`
# there; then BEFORE_BIN is target-before/release/dist_worker.
set -uo pipefail
before=${1:?the first build: its dist_worker}
after=${2:?the second build: its dist_worker}
rounds=${3:-5}
workers=${4:-2}
: "${DATABASE_URL:?run: eval \"\$(scripts/postgres.sh)\"}"
export DIST_WIDTH=${DIST_WIDTH:-3333}
server=${DATABASE_URL%%\?*}
server=${server%/*}
for round in $(seq "$rounds"); do
    for build in before after; do
        if [ "$build" = before ]; then bin=$before; else bin=$after; fi
        db=aqueduct_ab_$build
        psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null 2>&1
        url="$server/$db"
        pipes=()
        for _ in $(seq "$workers"); do
            exec {fd}> >("$bin" "$url" 30000 256 >/dev/null 2>&1)
            pipes+=("$fd")
        done
        sleep 1
        echo "round $round $build: $("$bin" submit "$url" "ab-$(date +%s%N)" 2>&1 | tr '\n' ' ')"
        for fd in "${pipes[@]}"; do exec {fd}>&-; done
        wait
        psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db" >/dev/null
    done
done
