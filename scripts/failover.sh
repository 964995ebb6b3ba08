#!/usr/bin/env bash
# The long failover campaign (issue 13): three klad-server nodes on one
# PostgreSQL database (a fresh database of its own), a writer connected to
# each node; each round kills the node that serves the process with SIGKILL at
# a random moment among writes in flight, checks that another node serves the
# process again, restarts the killed node, and at the end a reader on every
# node checks that every acknowledged change is stored and that the writers
# converged. Lease time 1 s. Default 100 rounds (the suite runs 20).
#
#   bash scripts/failover.sh [ROUNDS]
#
# Prints the rounds, the acknowledged changes ("none lost") and the time from
# each kill until another node served the process (min-max, median);
# KLAD_FAILOVER_SEED=<n> repeats a run's kill moments. Starts PostgreSQL
# (scripts/postgres.sh) if KLAD_TEST_POSTGRES is not set. Loopback only; every
# wait is bounded (30 s).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export KLAD_FAILOVER_ROUNDS="${1:-${KLAD_FAILOVER_ROUNDS:-100}}"
if [ -z "${KLAD_TEST_POSTGRES:-}" ]; then
  eval "$(bash scripts/postgres.sh)"
fi
start=$(date +%s)
cargo nextest run -p klad-server --locked --test nodes --no-capture -E 'test(failover)' 2>&1 \
  | grep -E "^failover:|panicked|FAIL|PASS|Summary"
echo "took $(( $(date +%s) - start )) s on $(nproc) cores"
