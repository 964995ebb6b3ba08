#!/usr/bin/env bash
# The "server under load" benchmark: klad-server against the JavaScript
# automerge-repo sync server (tests/bench/js-server), same workload, same
# machine, one run. Builds klad-server and the load generator in release,
# installs the Node packages on first use, runs 100, 500 and 1,000 clients
# against each server (20 s of steady load per run) and writes the Markdown
# report to target/bench/load.md (or $CARGO_TARGET_DIR/bench/load.md), also
# printed on stdout. Extra arguments go to klad-load, e.g. --steps 100,500
# (see `klad-load --help` and tests/src/bin/klad-load.rs).
#
# Loopback only. Takes about 4 minutes on 2 cores once built; a first release
# build adds a few minutes. Goals are reported, never asserted: the script
# fails only when a run could not be made.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
OUT="$TARGET/bench/load.md"
# The whole script, build included, should stay under 7 minutes.
BUDGET_SECS="${KLAD_BENCH_BUDGET_SECS:-400}"
started=$(date +%s)

cargo build --release -p klad-server -p klad-tests --bin klad-server --bin klad-load

JS="$ROOT/tests/bench/js-server"
if [ ! -d "$JS/node_modules" ]; then
  # `npm ci` installs exactly what package-lock.json pins. Where the registry
  # in use does not serve cbor-extract's optional prebuilds, npm leaves them out
  # of the lockfile and `npm ci` refuses it; `npm install --no-save` then
  # installs the same pinned versions without them (as server/interop does).
  (cd "$JS" && { npm ci --no-audit --no-fund --loglevel=error >&2 ||
    npm install --no-audit --no-fund --no-save --loglevel=error >&2; })
fi

built=$(date +%s)
left=$((BUDGET_SECS - (built - started)))
if [ "$left" -lt 60 ]; then
  echo "error: the build took $((built - started)) s, which leaves too little of the ${BUDGET_SECS} s budget; run the script again (the build is now cached)" >&2
  exit 1
fi

status=0
"$TARGET/release/klad-load" \
  --klad-server "$TARGET/release/klad-server" \
  --js-server-dir "$JS" \
  --steps 100,500,1000 \
  --per-doc 10 \
  --interval-ms 2000 \
  --steady-secs 20 \
  --drain-secs 10 \
  --connect-secs 30 \
  --budget-secs "$left" \
  --out "$OUT" \
  --command "scripts/bench-load.sh${*:+ $*}" \
  "$@" || status=$?

finished=$(date +%s)
printf '\nScript wall time: %d s (build and install %d s, runs %d s).\n' \
  $((finished - started)) $((built - started)) $((finished - built)) | tee -a "$OUT"
echo "Report written to $OUT" >&2
exit "$status"
