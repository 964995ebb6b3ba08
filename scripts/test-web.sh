#!/usr/bin/env bash
# The web desk in a real browser (web/tests/browser): Debian's Chromium driven
# by playwright-core against a real klad-server, a resident's phone on the
# Python bindings, axe-core on every page. Needs the klad-server binary and
# the generated Python bindings (scripts/test.sh builds both before this).
#
# Installs what is missing, without questions: Chromium (Debian's package,
# when running as root) and the npm packages pinned in the lockfile.
# KLAD_SCREENSHOTS=docs/web saves the screenshots docs/WEB.md shows.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export KLAD_SERVER_BIN="${KLAD_SERVER_BIN:-$TARGET/debug/klad-server}"
export KLAD_BINDINGS_PYTHON="${KLAD_BINDINGS_PYTHON:-$TARGET/klad-ffi-bindings/python}"
export KLAD_CHROMIUM="${KLAD_CHROMIUM:-/usr/bin/chromium}"
# A screenshot directory named relative to the repository stays so.
if [ -n "${KLAD_SCREENSHOTS:-}" ]; then
  mkdir -p "$KLAD_SCREENSHOTS"
  KLAD_SCREENSHOTS="$(cd "$KLAD_SCREENSHOTS" && pwd)"
  export KLAD_SCREENSHOTS
fi

die() { echo "error: $*" >&2; exit 1; }

[ -x "$KLAD_SERVER_BIN" ] || die "$KLAD_SERVER_BIN is missing; build it with \`cargo build -p klad-server\` (scripts/test.sh does)"
[ -f "$KLAD_BINDINGS_PYTHON/klad_ffi.py" ] || die "the Python bindings are missing from $KLAD_BINDINGS_PYTHON; generate them with \`bash client-ffi/scripts/gen-bindings.sh\` (scripts/test.sh does)"

if [ ! -x "$KLAD_CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing Chromium (Debian's package)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null \
      || die "chromium could not be installed with apt-get"
  else
    die "Chromium is missing: install Debian's chromium package (or set KLAD_CHROMIUM to a Chromium binary)"
  fi
fi

cd web/tests/browser
if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/@axe-core/playwright ]; then
  echo "== installing the browser tests' npm packages (package-lock.json)"
  npm ci --no-audit --no-fund --loglevel=error || die "npm ci failed in web/tests/browser"
fi
echo "== the web desk in Chromium ($("$KLAD_CHROMIUM" --version 2>/dev/null | head -1))"
node --test --test-concurrency=1 desk.test.mjs
