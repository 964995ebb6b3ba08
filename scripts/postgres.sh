#!/usr/bin/env bash
# Makes a local PostgreSQL ready for the test suite and prints the line that
# points the tests at it:
#
#   eval "$(bash scripts/postgres.sh)"   # sets KLAD_TEST_POSTGRES
#
# Installs Debian's postgresql package when its cluster tools are missing,
# starts the cluster (listening on 127.0.0.1 only), and creates the role
# `klad` (password `klad`, CREATEDB) and the database `klad_test` when they
# are missing. Idempotent, and quick when everything is there already. Runs
# as root (as CI does here) or as a user who may sudo to postgres; PostgreSQL
# itself runs as its own user `postgres`. Progress goes to stderr, only the
# export line to stdout.
set -euo pipefail

say() { echo "postgres.sh: $*" >&2; }
as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"
  elif [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
  else sudo -u postgres "$@"; fi
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

URL="postgres://klad:klad@127.0.0.1:5432/klad_test"

if ! command -v pg_lsclusters >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  say "PostgreSQL is not installed; installing Debian's postgresql package"
  as_root apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >&2
fi

# The newest installed version, and its cluster `main` (the package creates
# one; create it if it was removed).
VERSION="$(ls /usr/lib/postgresql | sort -V | tail -1)"
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$VERSION main"; then
  say "creating the cluster $VERSION/main"
  as_root pg_createcluster "$VERSION" main >&2
fi

# Loopback only: the test role has a well-known password.
CONF="/etc/postgresql/$VERSION/main/postgresql.conf"
if ! grep -q "^listen_addresses = '127.0.0.1'" "$CONF"; then
  echo "listen_addresses = '127.0.0.1'" | as_root tee -a "$CONF" >/dev/null
  RESTART=1
fi

STATUS="$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $4}')"
PORT="$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $3}')"
if [ "$STATUS" != online ]; then
  say "starting the cluster $VERSION/main"
  as_root pg_ctlcluster "$VERSION" main start >&2
elif [ "${RESTART:-0}" = 1 ]; then
  say "restarting the cluster $VERSION/main to listen on 127.0.0.1 only"
  as_root pg_ctlcluster "$VERSION" main restart >&2
fi

# Wait for it to accept connections (a fresh start takes a moment).
for _ in $(seq 1 50); do
  if as_postgres psql -p "$PORT" -qtAc "SELECT 1" >/dev/null 2>&1; then break; fi
  sleep 0.2
done

if [ "$(as_postgres psql -p "$PORT" -qtAc "SELECT 1 FROM pg_roles WHERE rolname = 'klad'")" != 1 ]; then
  say "creating the role klad"
  as_postgres psql -p "$PORT" -qc "CREATE ROLE klad LOGIN CREATEDB PASSWORD 'klad'" >&2
fi
if [ "$(as_postgres psql -p "$PORT" -qtAc "SELECT 1 FROM pg_database WHERE datname = 'klad_test'")" != 1 ]; then
  say "creating the database klad_test"
  as_postgres psql -p "$PORT" -qc "CREATE DATABASE klad_test OWNER klad" >&2
fi

URL="postgres://klad:klad@127.0.0.1:$PORT/klad_test"
echo "export KLAD_TEST_POSTGRES=$URL"
