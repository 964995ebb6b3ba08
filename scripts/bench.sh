#!/usr/bin/env bash
# Every benchmark of Klad, on this machine, in one run (issue 5), and the
# tables of docs/BENCHMARKS.md rewritten with the results.
#
#   bash scripts/bench.sh            # everything, then docs/BENCHMARKS.md
#   bash scripts/bench.sh core wire  # only these parts (core wire start load phone typing storm idle apply)
#
# Each part prints Markdown to target/bench/<part>.md; the script then puts
# each part's file between its `<!-- bench:<part> -->` markers in
# docs/BENCHMARKS.md, leaving the written text around them as it is. Numbers
# are ratios to a baseline measured in the same run; nothing is asserted.
# Loopback only. About 16 minutes on 2 cores once the release build is cached
# (storm about 7, idle about 2). storm and idle open thousands of sockets:
# klad-bench raises its open-files soft limit to the hard limit (the servers
# it starts inherit it); with a hard limit below about 10,300 idle reports
# the step it could not reach.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
export CARGO_TARGET_DIR="$TARGET"
OUT="$TARGET/bench"
DOC="$ROOT/docs/BENCHMARKS.md"
mkdir -p "$OUT"
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(core wire start load phone typing storm idle apply)

# The editing trace is in the repository (tests/data, with its attribution);
# KLAD_SHARED_DATA points the tests at another directory holding it.
TRACE="${KLAD_SHARED_DATA:-tests/data}/automerge-paper.json.gz"
if [ ! -f "$TRACE" ]; then
  echo "error: $TRACE is missing; it is part of the repository (tests/data), or unset KLAD_SHARED_DATA if it points elsewhere" >&2
  exit 1
fi

started=$(date +%s)
echo "== release build"
cargo build --release --locked -p klad-server -p klad-tests \
  --bin klad-server --bin klad-bench --bin klad-load
BENCH="$TARGET/release/klad-bench"

# The JS reference server of storm and idle (bench-load.sh does the same).
js_server() {
  local js="$ROOT/tests/bench/js-server"
  [ -d "$js/node_modules" ] && return 0
  (cd "$js" && { npm ci --no-audit --no-fund --loglevel=error >&2 ||
    npm install --no-audit --no-fund --no-save --loglevel=error >&2; })
}

run_part() {
  local part=$1 t0
  t0=$(date +%s)
  echo "== $part"
  case "$part" in
    core)
      { echo "Command: \`cargo run --release -p klad-tests --bin klad-bench -- core-editing\`"; echo
        "$BENCH" core-editing; } > "$OUT/core.md" ;;
    wire)
      { echo "Command: \`cargo run --release -p klad-tests --bin klad-bench -- wire\`"; echo
        "$BENCH" wire; } > "$OUT/wire.md" ;;
    start)
      { echo "Command: \`cargo run --release -p klad-tests --bin klad-bench -- start\` (with the release \`klad-server\` built next to it), then \`-- store-load\`"; echo
        "$BENCH" start; echo; "$BENCH" store-load; } > "$OUT/start.md" ;;
    load)
      bash scripts/bench-load.sh > /dev/null
      # bench-load.sh writes its own report (command, machine and all).
      [ -s "$OUT/load.md" ] || { echo "error: scripts/bench-load.sh wrote no report" >&2; return 1; } ;;
    typing)
      { echo "Command: \`cargo run --release -p klad-tests --bin klad-bench -- typing\` (in the repository, on its filesystem)"; echo
        "$BENCH" typing; } > "$OUT/typing.md" ;;
    phone)
      bash scripts/bench-phone.sh "$OUT/phone.md" > /dev/null
      [ -s "$OUT/phone.md" ] || { echo "error: scripts/bench-phone.sh wrote no report" >&2; return 1; } ;;
    storm)
      js_server
      { echo "Command: \`cargo run --release -p klad-tests --bin klad-bench -- storm --members 200,1000\` (with the release \`klad-server\` next to it and the JS server's packages installed in tests/bench/js-server)"; echo
        "$BENCH" storm --members 200,1000; } > "$OUT/storm.md" ;;
    idle)
      js_server
      { echo "Command: \`cargo run --release -p klad-tests --bin klad-bench -- idle --connections 1000,5000,10000 --js --js-connections 1000,2000\`, then \`-- idle --join-only\`"; echo
        "$BENCH" idle --connections 1000,5000,10000 --js --js-connections 1000,2000
        echo "#### The same with bare connections (\`--join-only\`: they join and open no document)"; echo
        "$BENCH" idle --connections 1000,5000,10000 --join-only; } > "$OUT/idle.md" ;;
    apply)
      { echo "Command: \`cargo run --release -p klad-tests --bin klad-bench -- apply-cost\`"; echo
        "$BENCH" apply-cost; } > "$OUT/apply.md" ;;
    *)
      echo "error: unknown part '$part'; choose from core wire start load phone typing storm idle apply" >&2
      return 1 ;;
  esac
  cat "$OUT/$part.md"
  echo "($part took $(( $(date +%s) - t0 )) s)"
}

for part in "${parts[@]}"; do
  run_part "$part"
done

machine="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r)"
python3 - "$DOC" "$OUT" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$machine" "${parts[@]}" <<'EOF'
import pathlib, re, sys
doc, out, date, machine, parts = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
text = doc.read_text()
for part in parts:
    body = (out / f"{part}.md").read_text().strip()
    stamp = f"_Measured {date} on {machine}, by `bash scripts/bench.sh {part}`._"
    block = f"<!-- bench:{part} -->\n{stamp}\n\n{body}\n<!-- /bench:{part} -->"
    pattern = re.compile(rf"<!-- bench:{part} -->.*?<!-- /bench:{part} -->", re.S)
    if not pattern.search(text):
        sys.exit(f"error: docs/BENCHMARKS.md has no <!-- bench:{part} --> markers; add them where the results belong")
    text = pattern.sub(lambda _: block, text)
doc.write_text(text)
EOF
echo "== docs/BENCHMARKS.md updated ($(( $(date +%s) - started )) s in all)"
