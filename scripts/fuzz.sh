#!/usr/bin/env bash
# Runs Klad's fuzz targets with cargo-fuzz (libFuzzer, nightly Rust) for a
# given time each and prints, per target: executions, crashes found, corpus
# size. The targets' bodies are klad-tests' src/fuzz_bodies (the stable suite
# replays the committed corpus and regressions through them:
# tests/tests/fuzz_smoke.rs).
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (default: 60 s, every target)
#
# New corpus entries go to fuzz/corpus-work/<target> (not committed); the
# committed seeds (fuzz/corpus/<target>) and regressions
# (fuzz/regressions/<target>) are read as extra corpus. A crash stops that
# target's run and is kept by libFuzzer in fuzz/artifacts/<target>/; fix it,
# then copy the file into fuzz/regressions/<target>/ so the suite replays it
# (inputs that cannot be replayed in the suite, such as one that exhausts
# memory, are kept in fuzz/findings/<target>/ until fixed).
#
# Built with -O: cargo-fuzz's default turns debug assertions on in every
# crate, and Automerge's own debug-only self-checks then abort on inputs it
# handles in a real build; fuzz/Cargo.toml keeps debug assertions and
# overflow checks for our crates only.
#
# Environment: FUZZ_JOBS (cargo build jobs, default 1), FUZZ_SANITIZER
# (default none: every fuzzed crate is safe Rust, and without AddressSanitizer
# each input runs several times faster; set address to use it).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECONDS_PER_TARGET="${1:-60}"
shift || true
ALL_TARGETS=(wire hub_frame hub_changes load store journal token desk)
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi
SANITIZER="${FUZZ_SANITIZER:-none}"
export CARGO_BUILD_JOBS="${FUZZ_JOBS:-1}"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "error: the nightly toolchain is missing (rustup toolchain install nightly); cargo-fuzz needs it" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing; installing it"
  cargo install cargo-fuzz --locked || { echo "error: could not install cargo-fuzz" >&2; exit 1; }
fi

echo "== building the fuzz targets (sanitizer: $SANITIZER)"
if ! nice cargo +nightly fuzz build -O -s "$SANITIZER"; then
  echo "error: the fuzz targets did not build" >&2
  exit 1
fi

LOGDIR="$(mktemp -d)"
SUMMARY=()
FAILED=0
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus-work/$t" "fuzz/artifacts/$t" "fuzz/regressions/$t"
  before=$(ls "fuzz/artifacts/$t" | wc -l)
  echo "== $t: ${SECONDS_PER_TARGET} s"
  nice cargo +nightly fuzz run -O -s "$SANITIZER" "$t" \
    "fuzz/corpus-work/$t" "fuzz/corpus/$t" "fuzz/regressions/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 -timeout=10 \
    -rss_limit_mb=2048 >"$LOGDIR/$t.log" 2>&1
  rc=$?
  execs=$(grep -a 'stat::number_of_executed_units' "$LOGDIR/$t.log" | tail -1 | awk '{print $2}')
  rate=$(grep -a 'stat::average_exec_per_sec' "$LOGDIR/$t.log" | tail -1 | awk '{print $2}')
  after=$(ls "fuzz/artifacts/$t" | wc -l)
  crashes=$((after - before))
  # libFuzzer's own count of the corpus it ended with (inputs/bytes), and
  # its coverage (edges).
  done_line=$(grep -a 'DONE' "$LOGDIR/$t.log" | tail -1)
  corpus=$(sed -n 's/.*corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$done_line")
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$done_line")
  caught=$(grep -ac '^klad-fuzz: panic at' "$LOGDIR/$t.log")
  line=$(printf '%-12s executions %10s  (%s/s)  crashes %d  corpus %s  cov %s  caught panics: %d places' \
    "$t" "${execs:-?}" "${rate:-?}" "$crashes" "${corpus:-?}" "${cov:-?}" "$caught")
  echo "$line"
  if [ "$caught" -gt 0 ]; then grep -a '^klad-fuzz: panic at' "$LOGDIR/$t.log" | sed 's/^/    /' | head -5; fi
  if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    FAILED=1
    echo "   the run stopped (exit $rc); the log is $LOGDIR/$t.log; new artifacts:"
    ls -t "fuzz/artifacts/$t" | head -"$((crashes > 0 ? crashes : 1))" | sed "s|^|   fuzz/artifacts/$t/|"
    grep -a -m3 -e 'panicked at' -e 'ERROR: libFuzzer' -e 'SUMMARY' "$LOGDIR/$t.log" | sed 's/^/   /'
  fi
  SUMMARY+=("$line")
done

echo
echo "== summary ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, ${SECONDS_PER_TARGET} s per target, sanitizer $SANITIZER)"
printf '%s\n' "${SUMMARY[@]}"
exit "$FAILED"
