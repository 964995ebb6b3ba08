#!/usr/bin/env bash
# The phone benchmark: time per local edit and memory of a phone client
# (klad-ffi through its Python bindings) holding a process with 50 members and
# 2,000 contributions, next to baselines measured in the same run (an fsync'd
# append on the same filesystem; a phone holding an empty process).
#
# Builds in release what it needs (the klad-ffi cdylib and the workspace's
# uniffi-bindgen, the Python bindings generated from that library, and
# klad-server), then runs scripts/bench-phone.py, which writes the Markdown
# report to target/bench/phone.md (or $CARGO_TARGET_DIR/bench/phone.md, or the
# path given as the first argument) and prints it. Other arguments go to
# bench-phone.py (see `python3 scripts/bench-phone.py --help`).
#
# Honours CARGO_TARGET_DIR, and KLAD_BINDINGS_DIR for where the bindings go
# (default <target>/klad-ffi-bindings-release; the Python ones in python/).
# Loopback only. About 1.5 minutes on 2 cores once built (the script itself
# must stay under 4 minutes); a first release build adds several minutes.
# Nothing is asserted: it fails only when a run could not be made.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
BINDINGS="${KLAD_BINDINGS_DIR:-$TARGET/klad-ffi-bindings-release}"
case "$(uname -s)" in
  Darwin) LIBFILE=libklad_ffi.dylib ;;
  *) LIBFILE=libklad_ffi.so ;;
esac

COMMAND="${CARGO_TARGET_DIR:+CARGO_TARGET_DIR=$CARGO_TARGET_DIR }scripts/bench-phone.sh${*:+ $*}"
OUT="$TARGET/bench/phone.md"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  OUT="$1"
  shift
fi

started=$(date +%s)

# What client-ffi/scripts/gen-bindings.sh does, in release and for Python only.
cargo build --release -p klad-ffi --lib --bin uniffi-bindgen
LIB="$TARGET/release/$LIBFILE"
rm -rf "$BINDINGS/python"
mkdir -p "$BINDINGS/python"
"$TARGET/release/uniffi-bindgen" generate --library "$LIB" --language python \
  --out-dir "$BINDINGS/python" --no-format
cp "$LIB" "$BINDINGS/python/"

cargo build --release -p klad-server --bin klad-server

built=$(date +%s)

python3 "$ROOT/scripts/bench-phone.py" \
  --out "$OUT" \
  --server-bin "$TARGET/release/klad-server" \
  --bindings "$BINDINGS/python" \
  --command "$COMMAND" \
  "$@"

finished=$(date +%s)
printf '\nWith the build: %d s (build %d s, benchmark %d s).\n' \
  $((finished - started)) $((built - started)) $((finished - built)) | tee -a "$OUT"
