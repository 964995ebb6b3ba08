#!/bin/sh
# Installs the pinned packages when node_modules is missing, then runs the
# baseline sync server with the given arguments (see server.mjs).
#
# `npm ci` installs exactly what package-lock.json pins. Where the registry in
# use does not serve the optional, platform-specific prebuilds of cbor-extract
# (an optional accelerator of cbor-x), npm leaves them out of the lockfile and
# `npm ci` refuses the lockfile as incomplete; `npm install --no-save` then
# installs the same pinned versions from the lockfile without them.
set -e
cd "$(dirname "$0")"
if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund --loglevel=error >&2 ||
    npm install --no-audit --no-fund --no-save --loglevel=error >&2
fi
exec node server.mjs "$@"
