"""Issue 14: a phone on a full disk. Its data directory is on a small tmpfs
(mounting needs root, as CI has; elsewhere the test is skipped) that a
ballast file fills while the phone types. A keystroke that cannot be saved
is still taken (it shows) and the call says so with the `not-saved` error;
the status says it too (`not_saved`), as long as neither the typing journal
nor the database can take it. Once space returns, the library saves it by
itself (the status clears); the app is then killed (its database, which
failed a write, refuses writes until it is opened again), and the phone
opened again has every token whose call returned `ok` or `not-saved`, once,
and syncs them to the server. A token refused otherwise is not there."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import eventually, klad_ffi

HERE = Path(__file__).resolve().parent


def mount_tmpfs(path, mib):
    path.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(path)],
                       capture_output=True)
    return r.returncode == 0


def fill(path):
    """Writes a ballast file until the filesystem is full."""
    with open(path, "wb", buffering=0) as f:
        block = b"\0" * 65536
        try:
            while True:
                f.write(block)
        except OSError:
            pass
        try:
            while True:  # the last pages, a little at a time
                f.write(b"\0" * 512)
        except OSError:
            pass


def test_a_phone_on_a_full_disk_keeps_typing_and_saves_once_there_is_room(server, tmp_path):
    disk = tmp_path / "phone-disk"
    if not mount_tmpfs(disk, 48):
        pytest.skip("cannot mount a tmpfs here (it needs root): the phone's full-disk test did not run")
    try:
        pid = server.create_process("Vol")
        data = disk / "anna"
        c = klad_ffi.KladClient.open(str(data))
        p = c.join(server.url, server.invite(pid, "Anna", "drafter")["token"], 30_000)
        p.create_article(None, "Typen", "")
        eventually("the article on the server", lambda: p.sync_status().all_on_server)
        c.shutdown()
        del p, c

        child = subprocess.Popen([sys.executable, str(HERE / "full_disk_child.py"), str(data)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 cwd=str(HERE))
        try:
            assert child.stdout.readline().strip() == "ready"
            ballast = disk / "ballast"
            fill(ballast)
            child.stdin.write("go\n")
            child.stdin.flush()
            ok, kept, refused = [], [], []
            while True:
                line = child.stdout.readline().strip()
                assert line, "the phone stopped before it reported its status"
                kind, _, rest = line.partition(" ")
                if kind == "status":
                    status = rest
                    break
                {"ok": ok, "kept": kept, "refused": refused}[kind].append(rest.split()[0])
            assert kept, f"keystrokes were kept in memory ({ok=}, {refused=})"
            assert status != "None" and "could not" in status, \
                f"3 s later (past a retry) the status still says why: {status}"

            ballast.unlink()
            child.stdin.write("room\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "saved", "the library saved the kept typing by itself"
        finally:
            child.kill()
            child.wait()

        c = klad_ffi.KladClient.open(str(data))
        p = c.process(pid)
        body = p.articles()[0].body
        for t in ok + kept:
            assert body.count(t) == 1, f"{t} (its call returned) appears {body.count(t)} times in {body!r}"
        for t in refused:
            assert t not in body, f"{t} was refused yet is there"
        eventually("the phone to sync up", lambda: p.sync_status().all_on_server, timeout=120)
        print(f"phone on a full disk: {len(ok)} keystrokes saved at once, {len(kept)} answered not-saved "
              f"and saved by the library later (the last ones once there was room), {len(refused)} refused; "
              f"all there once and on the server after the app was killed and opened again")
        c.shutdown()
    finally:
        subprocess.run(["umount", "-l", str(disk)])
