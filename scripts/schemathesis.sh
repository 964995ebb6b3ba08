#!/usr/bin/env bash
# The HTTP API as an attacker sees it: schemathesis (PyPI) generates requests
# from the OpenAPI description a real klad-server serves (/api/openapi.yaml,
# the same file as docs/openapi.yaml) and checks every answer: no 5xx, status
# codes, content types and bodies as the document says (every error a JSON
# sentence). See docs/RELIABILITY.md.
#
#   bash scripts/schemathesis.sh [MAX_EXAMPLES]     (default 100 per operation)
#
# Installs schemathesis (pinned) into a virtual environment under
# $KLAD_TOOLS_DIR (default ~/.cache/klad-tools) if it is missing, builds the
# workspace (as the test suite does; KLAD_SERVER_BIN names a built server
# instead), starts klad-server on a fresh data directory on 127.0.0.1 with a
# free port, creates a process and members to have real ids, runs two passes
# (as the operator, with the admin secret, and as a facilitator, with their
# token), prints a summary and stops the server. Exits non-zero on any
# failure. Only loopback is ever contacted; the run is bounded by
# MAX_EXAMPLES, and each pass is stopped (and fails) after
# KLAD_SCHEMATHESIS_MAX_TIME seconds (default 900). (schemathesis's own
# --max-time is not a bound: it repeats fuzzing until the time is spent.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

MAX_EXAMPLES="${1:-100}"
case "$MAX_EXAMPLES" in
  '' | *[!0-9]* | 0) echo "error: MAX_EXAMPLES must be a whole number above 0, not '$MAX_EXAMPLES'" >&2; exit 2 ;;
esac
MAX_TIME="${KLAD_SCHEMATHESIS_MAX_TIME:-900}"
VERSION=4.32.5
TOOLS="${KLAD_TOOLS_DIR:-$HOME/.cache/klad-tools}"
VENV="$TOOLS/schemathesis-$VERSION"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

die() { echo "error: $*" >&2; exit 1; }

# 1. schemathesis, in a virtual environment of its own (no system packages
#    touched, whatever PEP 668 says about the system's Python).
if [ ! -x "$VENV/bin/schemathesis" ]; then
  echo "== installing schemathesis $VERSION into $VENV"
  rm -rf "$VENV"
  mkdir -p "$TOOLS"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv) >/dev/null \
        || die "python3-venv could not be installed with apt-get"
      rm -rf "$VENV"
      python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
    else
      die "python3 -m venv failed; install Python's venv module (Debian: python3-venv)"
    fi
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$VERSION" \
    || die "schemathesis $VERSION could not be installed with pip"
fi
ST="$VENV/bin/schemathesis"

# 2. The server binary. The whole workspace with its test targets, as
#    scripts/test.sh and the bindings build it: after them this compiles
#    nothing, and the shared dependencies keep one set of features.
if [ -n "${KLAD_SERVER_BIN:-}" ]; then
  BIN="$KLAD_SERVER_BIN"
else
  echo "== building klad-server"
  cargo build --workspace --all-targets --locked --quiet || die "the workspace did not build"
  BIN="$TARGET/debug/klad-server"
fi
[ -x "$BIN" ] || die "no klad-server binary at $BIN"

# 3. A real server on a fresh data directory and a free loopback port.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/klad-schemathesis.XXXXXX")"
DATA="$WORK/data"
SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
cleanup() {
  stop_server
  if [ -z "${KLAD_KEEP_WORK:-}" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
RUST_LOG="${RUST_LOG:-warn}" "$BIN" --data "$DATA" --listen 127.0.0.1:0 >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER_PID=$!
ADDR=""
for _ in $(seq 1 300); do
  if [ -f "$DATA/server.json" ]; then
    ADDR="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["listen"])' "$DATA/server.json" 2>/dev/null || true)"
    [ -n "$ADDR" ] && break
  fi
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; die "klad-server exited at start"; }
  sleep 0.1
done
[ -n "$ADDR" ] || die "klad-server did not start within 30 s"
case "$ADDR" in 127.*) ;; *) die "the server listens on $ADDR, not on loopback" ;; esac
BASE="http://$ADDR"
SECRET="$(cat "$DATA/admin-secret")"
echo "== klad-server $("$BIN" --version | awk '{print $2}') at $BASE (data in $DATA)"

# Real ids, made with the server's own command line (it calls the running
# server's API): a process with a drafter for the operator's pass, and one
# with a drafter and a facilitator for the facilitator's (each pass moves its
# process on to the final phase, where members are no longer managed).
field() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1:]: v=v[k]
print(v)' "$@"; }
cli() { "$BIN" --data "$DATA" "$@"; }
# Path parameters: mostly real ids (so calls reach the code behind the
# checks), sometimes whatever schemathesis makes up. The facilitator is left
# out of the members: revoking her own tokens would end her pass in 401s.
config() { # FILE PROCESS MEMBER_ID MEMBER_NAME
  cat >"$1" <<EOF
[dictionaries.processes]
values = ["$2"]

[dictionaries.members]
values = ["$3", "$4", "  $4 "]

[parameters]
"path.pid" = { dictionary = "processes", probability = 0.8 }
"path.member" = { dictionary = "members", probability = 0.8 }
EOF
}
PID="$(cli process create --title "Schemathesis-verordening" --json | field process process_id)"
ANNA="$(cli invite --process "$PID" --name "Anna de Vries" --role drafter --json | field member_id)"
config "$WORK/operator.toml" "$PID" "$ANNA" "Anna de Vries"
PID2="$(cli process create --title "Schemathesis-verordening 2" --json | field process process_id)"
BRAM="$(cli invite --process "$PID2" --name "Bram Smit" --role drafter --json | field member_id)"
FIEN_TOKEN="$(cli invite --process "$PID2" --name "Fien Jansen" --role facilitator --ttl 1y --json | field token)"
config "$WORK/facilitator.toml" "$PID2" "$BRAM" "Bram Smit"

# No 5xx; status codes, content types, headers and bodies as documented
# (every error the JSON sentence); a method no route takes gets a 405 with
# Allow; a call that needs a token refuses a request without one.
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,unsupported_method,ignored_auth
status=0
run_pass() {
  local who="$1" bearer="$2" failed=0
  echo "== schemathesis as the $who: $MAX_EXAMPLES examples per operation, checks $CHECKS"
  if timeout "$MAX_TIME" "$ST" --no-color --config-file "$WORK/$who.toml" run "$BASE/api/openapi.yaml" \
      --header "Authorization: Bearer $bearer" \
      --checks "$CHECKS" \
      --phases examples,coverage,fuzzing,stateful \
      --max-examples "$MAX_EXAMPLES" \
      --workers 1 \
      --request-timeout 30 \
      --generation-database none \
      --report junit --report-junit-path "$WORK/junit-$who.xml" \
      >"$WORK/$who.out" 2>&1; then
    :
  else
    failed=1
    status=1
    [ "$(tail -c 200 "$WORK/$who.out" | grep -c 'SUMMARY\|passed\|failed')" != 0 ] \
      || echo "(the $who pass did not finish within $MAX_TIME s)" >>"$WORK/$who.out"
  fi
  # The details of a failing run, then the closing summary.
  if [ "$failed" != 0 ]; then
    cat "$WORK/$who.out"
  else
    sed -n '/SUMMARY/,$p' "$WORK/$who.out"
  fi
}
run_pass operator "$SECRET"
run_pass facilitator "$FIEN_TOKEN"

# The server's own account: panics caught (each answered 500) and a last
# look that it still answers.
METRICS="$(python3 -c 'import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "$BASE/metrics")"
PANICS="$(printf '%s\n' "$METRICS" | awk '$1=="klad_http_panics_total"{print $2}')"
HEALTH="$(python3 -c 'import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode().strip())' "$BASE/healthz" || true)"
stop_server
if grep -q 'panicked' "$WORK/server.log"; then
  echo "== the server log has panics:"
  grep -A3 'panicked' "$WORK/server.log" | head -40
  status=1
fi
[ "${PANICS:-0}" = 0 ] || status=1
[ "$HEALTH" = ok ] || { echo "the server no longer answers /healthz"; status=1; }

python3 - "$WORK" "${PANICS:-?}" "$status" <<'EOF'
import re, sys, glob, xml.etree.ElementTree as ET
work, panics, status = sys.argv[1], sys.argv[2], sys.argv[3]
runs = failures = errors = cases = 0
for path in sorted(glob.glob(f"{work}/junit-*.xml")):
    root = ET.parse(path).getroot()
    for suite in root.iter("testsuite"):
        runs += int(suite.get("tests", 0))
        failures += int(suite.get("failures", 0))
        errors += int(suite.get("errors", 0))
for path in sorted(glob.glob(f"{work}/*.out")):
    m = re.search(r"Test cases:\s*\n\s*(\d+) generated", open(path).read())
    if m:
        cases += int(m.group(1))
print(f"schemathesis: {cases} test cases over {runs} operation runs (2 passes), "
      f"{failures} operations failed, {errors} errors; server panics: {panics}; "
      f"{'PASSED' if status == '0' else 'FAILED'}")
EOF
exit $status
