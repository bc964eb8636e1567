#!/usr/bin/env bash
# Compile cost of a workflow of 100 nodes: generates a crate with 100 tasks wired in
# one `workflow!`, builds its dependencies once, then times `cargo check` and
# `cargo build` after editing the source. Usage: bench/compile-cost.sh [NODES]
set -euo pipefail
nodes=${1:-100}
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/src"
cat > "$dir/Cargo.toml" <<TOML
[package]
name = "compile-cost"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
aqueduct = { path = "$root/core" }
tokio = { version = "1", features = ["rt-multi-thread", "macros"] }

[workspace]
TOML
{
  echo 'use aqueduct::prelude::*;'
  for i in $(seq 1 "$nodes"); do
    if (( i % 2 )); then
      echo "#[task] fn step$i(x: &u64) -> u64 { x + $i }"
    else
      echo "#[task] async fn step$i(x: &u64) -> u64 { x + $i }"
    fi
  done
  echo 'workflow! {'
  echo '    pub fn big(seed: u64) -> u64 {'
  echo '        let n1 = step1(&seed);'
  for i in $(seq 2 "$nodes"); do echo "        let n$i = step$i(&n$((i - 1)));"; done
  echo "        n$nodes"
  echo '    }'
  echo '}'
  echo '#[tokio::main] async fn main() { println!("{}", big(0).await.unwrap()); }'
} > "$dir/src/main.rs"
cd "$dir"
export CARGO_TARGET_DIR="$root/target/compile-cost"
cargo build -q 2>/dev/null && cargo check -q 2>/dev/null
# An edit (not just a touch) so both commands really redo the crate.
edit() { echo "// edit $1" >> src/main.rs; }
time_of() { local start=$EPOCHREALTIME; "$@" >/dev/null 2>&1; echo "$EPOCHREALTIME - $start" | awk '{ printf "%.2f", $1 - $3 }'; }
edit 1; check=$(time_of cargo check -q)
edit 2; build=$(time_of cargo build -q)
echo "workflow of $nodes nodes: cargo check after an edit ${check}s, cargo build (debug) after an edit ${build}s"
echo "output: $(cargo run -q)"
