#!/usr/bin/env bash
# The soak (issue 14): 500 clients (50 processes of 10 drafters) type into a
# release klad-server for 30 minutes, one edit every 20 s each; the server's
# resident memory, open file descriptors, runtime tasks (klad_tokio_tasks)
# and the p99 edit-to-peer latency are sampled every 10 s. Prints whether
# they stay flat after warm-up (goal: memory within 10 %, no file descriptor
# growth) and writes the samples and their picture to docs/soak/
# (soak-klad-<clients>.csv and .svg), the report to target/bench/soak.md.
#
#   bash scripts/soak.sh [CLIENTS] [SECONDS] [SAMPLE_SECS] [INTERVAL_MS]
#
# Why one edit every 20 s and not the load test's 2 s: Automerge 0.12
# applies every change it receives in time proportional to the whole
# history of the text it edits (docs/RELIABILITY.md has the figures), and at
# 2 s each article grows by 9,000 edits in 30 minutes, so the run measures
# that growth (the server and the 500 samod clients of the generator end up
# saturated), not whether the server leaks. At 20 s an article ends with
# 900 edits, a heavily edited article, and the load stays steady.
#
# Goals are reported, never asserted; the suite runs a short soak (20
# clients for 8 s, tests/tests/soak.rs). Loopback only; every phase is
# bounded (the run ends after SECONDS of load plus a 10 s drain).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
CLIENTS="${1:-500}"
SECS="${2:-1800}"
EVERY="${3:-10}"
INTERVAL_MS="${4:-20000}"

cargo build --release -p klad-server -p klad-tests --bin klad-server --bin klad-load

"$TARGET/release/klad-load" \
  --klad-server "$TARGET/release/klad-server" \
  --servers klad \
  --steps "$CLIENTS" \
  --per-doc 10 \
  --interval-ms "$INTERVAL_MS" \
  --steady-secs "$SECS" \
  --sample-secs "$EVERY" \
  --soak-out "$ROOT/docs/soak" \
  --out "$TARGET/bench/soak.md" \
  --command "bash scripts/soak.sh $CLIENTS $SECS $EVERY $INTERVAL_MS"
