"""Shared fixtures: a real klad-server process on a loopback port, its command
line for creating processes and inviting members, and phone clients.

Environment (set by client-ffi/scripts/test-bindings.sh):
  KLAD_BINDINGS_PYTHON  directory holding klad_ffi.py and the library
  KLAD_SERVER_BIN       the klad-server binary
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BINDINGS = Path(os.environ.get("KLAD_BINDINGS_PYTHON", ROOT / "target/klad-ffi-bindings/python"))
SERVER_BIN = Path(os.environ.get("KLAD_SERVER_BIN", ROOT / "target/debug/klad-server"))
sys.path.insert(0, str(BINDINGS))

import klad_ffi  # noqa: E402


def eventually(what, f, timeout=60.0, interval=0.05):
    """Polls f until it returns something truthy, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = f()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


class Server:
    """A klad-server process with its own data directory."""

    def __init__(self, data: Path):
        self.data = data
        self.addr = "127.0.0.1:0"
        self.proc = None

    def start(self):
        server_file = self.data / "server.json"
        if server_file.exists():
            server_file.unlink()
        env = dict(os.environ, RUST_LOG=os.environ.get("KLAD_TEST_LOG", "warn"))
        self.proc = subprocess.Popen(
            [str(SERVER_BIN), "--data", str(self.data), "--listen", self.addr],
            stdout=subprocess.DEVNULL,
            env=env,
        )

        def ready():
            try:
                v = json.loads(server_file.read_text())
            except (OSError, ValueError):
                return None
            return v["listen"] if v.get("pid") == self.proc.pid else None

        self.addr = eventually("the server to start", ready, timeout=30)
        return self

    @property
    def url(self):
        return f"http://{self.addr}"

    def kill9(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def cli(self, *args):
        out = subprocess.run(
            [str(SERVER_BIN), "--data", str(self.data), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, f"klad-server {args} failed: {out.stderr}"
        return json.loads(out.stdout)

    def create_process(self, title):
        return self.cli("process", "create", "--title", title, "--json")["process"]["process_id"]

    def invite(self, process, name, role):
        return self.cli("invite", "--process", process, "--name", name, "--role", role, "--json")


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "server").start()
    yield s
    s.kill9()


class Phones:
    """Opens phone clients on fresh data directories and closes them at the end."""

    def __init__(self, base: Path):
        self.base = base
        self.clients = []

    def open(self, name):
        c = klad_ffi.KladClient.open(str(self.base / name))
        self.clients.append(c)
        return c

    def join(self, name, server, invitation):
        c = self.open(name)
        p = c.join(server.url, invitation["token"], 30_000)
        return c, p

    def close_all(self):
        for c in self.clients:
            c.shutdown()
        self.clients.clear()


@pytest.fixture
def phones(tmp_path):
    ps = Phones(tmp_path / "phones")
    yield ps
    ps.close_all()
