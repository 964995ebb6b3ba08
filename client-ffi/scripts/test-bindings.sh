#!/usr/bin/env bash
# Builds klad-ffi and klad-server, generates the bindings, and runs the Python
# (pytest) and Kotlin/JVM tests of the bindings against a real klad-server,
# plus the gcc smoke test of the Swift bindings' C header.
#
# Installs what is missing, idempotently and without questions: pytest (pip),
# kotlinc (the npm package kotlin-compiler, under $KLAD_TOOLS_DIR, default
# ~/.cache/klad-ffi) and JNA (Debian's libjna-java, when running as root).
# Exits non-zero if anything fails; the last line is the Kotlin runner's summary.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT="$PWD"
TOOLS="${KLAD_TOOLS_DIR:-$HOME/.cache/klad-ffi}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="${KLAD_BINDINGS_DIR:-$TARGET/klad-ffi-bindings}"
export KLAD_BINDINGS_DIR="$OUT"
status=0

step() { echo "== $*"; }
die() { echo "error: $*" >&2; exit 1; }

step "build and generate bindings"
# One build of the whole workspace with its test targets: after
# `cargo nextest run --workspace` (scripts/test.sh) it compiles nothing new,
# and it holds both the library and the klad-server binary.
KLAD_CARGO_BUILD_ARGS="--workspace --all-targets" bash client-ffi/scripts/gen-bindings.sh \
  || die "building the workspace or generating klad-ffi's bindings failed"
export KLAD_SERVER_BIN="$TARGET/debug/klad-server"
export KLAD_BINDINGS_PYTHON="$OUT/python"

step "install test tools (if missing)"
python3 -c 'import pytest' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check pytest \
  || die "pytest could not be installed with pip"
JNA_JAR="${KLAD_JNA_JAR:-/usr/share/java/jna.jar}"
if [ ! -f "$JNA_JAR" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjna-java) >/dev/null \
      || die "libjna-java could not be installed with apt-get"
  else
    die "JNA is missing: install Debian's libjna-java (or set KLAD_JNA_JAR to a jna.jar)"
  fi
fi
KOTLINC="$TOOLS/kotlin/node_modules/kotlin-compiler/bin/kotlinc"
if [ ! -x "$KOTLINC" ]; then
  mkdir -p "$TOOLS/kotlin"
  (cd "$TOOLS/kotlin" && npm install --silent --no-audit --no-fund kotlin-compiler@2.4.20 >/dev/null) \
    || die "kotlinc could not be installed with npm (package kotlin-compiler)"
fi

step "Swift: the generated C header compiles with gcc"
if bash client-ffi/tests/swift/header-smoke.sh "$OUT"; then echo "header smoke test passed"; else status=1; fi

step "Python (pytest)"
python3 -m pytest -q -p no:cacheprovider client-ffi/tests/python || status=1

step "Kotlin/JVM"
KT_BUILD="$TARGET/klad-ffi-kotlin"
rm -rf "$KT_BUILD" && mkdir -p "$KT_BUILD"
if "$KOTLINC" -nowarn -include-runtime -cp "$JNA_JAR" -d "$KT_BUILD/tests.jar" \
    "$OUT"/kotlin/uniffi/klad_ffi/klad_ffi.kt client-ffi/tests/kotlin/*.kt 2>&1 | grep -v '^warning' ; then :; fi
if [ ! -f "$KT_BUILD/tests.jar" ]; then
  echo "0 passed, 1 failed (the Kotlin tests did not compile)"
  exit 1
fi
java -Djna.library.path="$OUT/lib" -cp "$KT_BUILD/tests.jar:$JNA_JAR" OfflineConvergeKt \
  "$KLAD_SERVER_BIN" "$(mktemp -d)" || status=1
exit $status
