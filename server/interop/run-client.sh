#!/bin/sh
# Installs the pinned packages when node_modules is missing, then runs the
# interop client (or, with --writer first, writer.mjs) with the given arguments.
#
# `npm ci` installs exactly what package-lock.json pins. Where the registry in
# use does not serve the optional, platform-specific prebuilds of cbor-extract
# (an optional accelerator of cbor-x), npm leaves them out of the lockfile and
# `npm ci` refuses the lockfile as incomplete; `npm install` then installs the
# same pinned versions from the lockfile without the optional prebuilds.
set -e
cd "$(dirname "$0")"
if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund --loglevel=error >&2 ||
    npm install --no-audit --no-fund --no-save --loglevel=error >&2
fi
# `--writer` runs writer.mjs (a writer with a chosen actor) instead of client.mjs.
script=client.mjs
if [ "${1:-}" = "--writer" ]; then
  script=writer.mjs
  shift
fi
exec node "$script" "$@"
