#!/usr/bin/env bash
# The long typing-kill campaign (issue 11): a phone typing into an article (at
# the end and in the middle), each keystroke typed into the version of the
# text it read, while another phone edits the same article through a real
# klad-server; the typing process is killed with SIGKILL at random moments.
# 100 kills with a 1 ms typing window and 100 with the default 75 ms window
# (KLAD_TYPING_KILL_ROUNDS=50 runs 2 x 50 per window). Prints, per window, the
# kills, the tokens and keystrokes whose calls returned, the other phone's
# tokens, and "0 lost, 0 doubled, 0 misplaced" (the test fails otherwise).
# The suite runs 20 kills per window (scripts/test.sh). Loopback only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
KLAD_CARGO_BUILD_ARGS="-p klad-ffi -p klad-server" bash client-ffi/scripts/gen-bindings.sh >&2
python3 -c 'import pytest' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check pytest
export KLAD_SERVER_BIN="$TARGET/debug/klad-server"
export KLAD_BINDINGS_PYTHON="${KLAD_BINDINGS_DIR:-$TARGET/klad-ffi-bindings}/python"
export KLAD_TYPING_KILL_ROUNDS="${KLAD_TYPING_KILL_ROUNDS:-50}"
python3 -m pytest -q -s -p no:cacheprovider client-ffi/tests/python/test_typing_kill.py
