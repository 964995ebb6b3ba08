#!/usr/bin/env bash
# The long server-kill campaign (issue 14): writing clients (default 50) write
# continuously into their contributions documents through a real klad-server
# whose storage writes are delayed 40 ms; after each write a client waits
# briefly for the server's word that it has everything, and records the
# writes so far as acknowledged. At a random moment the server is killed with
# SIGKILL and restarted on the same data directory, and a reader checks that
# every acknowledged write is there. Default 100 rounds.
#
#   bash scripts/kill-rounds.sh [ROUNDS] [WRITERS]
#
# Prints rounds, writers, writes, acknowledged writes and "0 lost" (the test
# fails, naming the round and KLAD_KILL_SEED, otherwise); KLAD_KILL_SEED=<n>
# repeats a run's kill moments. The suite runs 20 rounds under 2 writers.
# Loopback only; every round is bounded (10,000 writes per writer, timeouts).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export KLAD_KILL_ROUNDS="${1:-${KLAD_KILL_ROUNDS:-100}}"
export KLAD_KILL_WRITERS="${2:-${KLAD_KILL_WRITERS:-50}}"
start=$(date +%s)
cargo nextest run -p klad-server --locked --test durability --no-capture 2>&1 \
  | grep -E "kill -9:|panicked|FAIL|PASS|Summary" 
echo "took $(( $(date +%s) - start )) s on $(nproc) cores"
