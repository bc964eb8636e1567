#!/usr/bin/env bash
# Distributed latency, from a task becoming ready to its claim on an idle worker: two
# `dist_worker` processes wait on LISTEN; RUNS runs of `spread(0)` (a root task and a
# cleanup) are submitted one after another; the times come from the server's clock in
# the tasks table. Needs DATABASE_URL (`eval "$(scripts/postgres.sh)"`) and psql.
#   bench/latency.sh [RUNS=30]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}
: "${DATABASE_URL:?run: eval \"\$(scripts/postgres.sh)\"}"
export DIST_WIDTH=0
cargo build --release -q -p aqueduct-examples --bin dist_worker
bin=target/release/dist_worker
pipes=()
for _ in 1 2; do
    exec {fd}> >("$bin" "$DATABASE_URL" 30000 8 >/dev/null 2>&1)
    pipes+=("$fd")
done
sleep 1
tag="latency-$(date +%s%N)"
for i in $(seq "$runs"); do
    "$bin" submit "$DATABASE_URL" "$tag-$i" >/dev/null
    sleep 0.05
done
for fd in "${pipes[@]}"; do exec {fd}>&-; done
wait
psql "$DATABASE_URL" -At <<SQL
WITH roots AS (
    SELECT t.started_ms - r.submitted_ms AS ms FROM aqueduct_dist_tasks t
    JOIN aqueduct_dist_runs r ON r.id = t.run_id
    WHERE r.id LIKE '$tag-%' AND t.name = 'total'),
  released AS (
    SELECT t.started_ms - t.available_ms AS ms FROM aqueduct_dist_tasks t
    WHERE t.run_id LIKE '$tag-%' AND t.name = 'cleanup')
SELECT 'root, submission to claim: p50 ' || percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)
       || ' ms, p99 ' || percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)
       || ' ms, max ' || max(ms) || ' ms' FROM roots
UNION ALL
SELECT 'made ready by a commit, ready to claim: p50 '
       || percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) || ' ms, p99 '
       || percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) || ' ms, max ' || max(ms) || ' ms'
FROM released;
SQL
