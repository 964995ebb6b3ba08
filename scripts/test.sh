#!/usr/bin/env bash
# The whole test suite: every crate's unit, property and integration tests,
# including the end-to-end tests that start a real klad-server process and the
# Node automerge-repo interop client (its npm packages are installed from the
# lockfile on first use), then the phone client's generated bindings: Python
# (pytest) and Kotlin/JVM against a real server, and the Swift C header with gcc
# (pytest, kotlinc and JNA are installed on first use), and last the web desk
# in Chromium (scripts/test-web.sh; Chromium and the npm packages are installed
# on first use). Between the first two, a short
# schemathesis run against a real server (scripts/schemathesis.sh; schemathesis
# is installed on first use). PostgreSQL is installed and started on first use
# (scripts/postgres.sh) unless KLAD_TEST_POSTGRES names a database server.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The editing trace is in the repository (tests/data, with its attribution);
# KLAD_SHARED_DATA points the tests at another directory holding it.
TRACE="${KLAD_SHARED_DATA:-tests/data}/automerge-paper.json.gz"
if [ ! -f "$TRACE" ]; then
  echo "error: $TRACE is missing; it is part of the repository (tests/data), or unset KLAD_SHARED_DATA if it points elsewhere" >&2
  exit 1
fi

# The PostgreSQL store's tests (klad-store's contract suite, klad-server on
# PostgreSQL) need a database: scripts/postgres.sh installs and starts a local
# one when needed (Debian's package) and prints where it is. Set
# KLAD_TEST_POSTGRES yourself to use another.
if [ -z "${KLAD_TEST_POSTGRES:-}" ]; then
  eval "$(bash scripts/postgres.sh)"
fi
export KLAD_TEST_POSTGRES

# nextest runs every test in its own process, in parallel, and ends with one
# summary line for the whole workspace.
cargo nextest run --workspace --locked --no-fail-fast

# The HTTP API as an attacker sees it (docs/RELIABILITY.md): schemathesis
# against the OpenAPI description a real server serves, a few examples per
# call; the server binary is the one nextest built above.
bash scripts/schemathesis.sh "${KLAD_SCHEMATHESIS_EXAMPLES:-10}"

bash client-ffi/scripts/test-bindings.sh

# The web desk in a real browser, with a phone on the Python bindings built
# above; node's test runner prints the last summary.
bash scripts/test-web.sh
