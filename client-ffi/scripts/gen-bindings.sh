#!/usr/bin/env bash
# Builds klad-ffi (the cdylib) and generates its Kotlin, Swift and Python
# bindings from the built library (UniFFI library mode), with the workspace's
# own uniffi-bindgen (same pinned uniffi version as the library).
#
# Output (default target/klad-ffi-bindings, or $KLAD_BINDINGS_DIR):
#   kotlin/uniffi/klad_ffi/klad_ffi.kt
#   swift/klad_ffi.swift, klad_ffiFFI.h, klad_ffiFFI.modulemap
#   python/klad_ffi.py plus the library itself, so `import klad_ffi` works there
#   lib/libklad_ffi.so (the library the bindings were generated from)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

TARGET="${CARGO_TARGET_DIR:-target}"
OUT="${KLAD_BINDINGS_DIR:-$TARGET/klad-ffi-bindings}"
case "$(uname -s)" in
  Darwin) LIBFILE=libklad_ffi.dylib ;;
  *) LIBFILE=libklad_ffi.so ;;
esac

# What to build: by default just the library and the generator. The test
# script passes `--workspace --all-targets`, which reuses what the workspace's
# test build already compiled (the same features), instead of building the
# library again with the smaller feature set of klad-ffi alone.
# shellcheck disable=SC2086
cargo build ${KLAD_CARGO_BUILD_ARGS:--p klad-ffi --lib --bin uniffi-bindgen}
LIB="$TARGET/debug/$LIBFILE"
BINDGEN="$TARGET/debug/uniffi-bindgen"

rm -rf "$OUT"
mkdir -p "$OUT/lib"
cp "$LIB" "$OUT/lib/"
for lang in kotlin swift python; do
  "$BINDGEN" generate --library "$LIB" --language "$lang" --out-dir "$OUT/$lang" --no-format
done
cp "$LIB" "$OUT/python/"
echo "bindings in $OUT"
