"""Issue 4, scenario 3: a phone killed with SIGKILL at random moments during
a stream of edits loses no edit whose call had returned, and syncs up."""

import random
import subprocess
import sys
import time
from pathlib import Path

from conftest import eventually

HERE = Path(__file__).resolve().parent
KILLS = 20


def test_phone_killed_at_random_moments_keeps_every_returned_edit(server, phones, tmp_path):
    pid = server.create_process("Afval")
    c, p = phones.join("anna", server, server.invite(pid, "Anna", "drafter"))
    p.create_article(None, "Afval", "")
    data_dir = str(phones.base / "anna")
    c.shutdown()
    del p, c
    phones.clients.clear()

    rng = random.Random(4)
    returned = []
    for run in range(KILLS):
        child = subprocess.Popen(
            [sys.executable, str(HERE / "kill_child.py"), data_dir, str(run)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(HERE),
        )
        # Wait for the first returned edit, then kill at a random moment.
        first = child.stdout.readline().strip()
        assert first, "the child process typed something before being killed"
        returned.append(first)
        time.sleep(rng.uniform(0.0, 0.3))
        child.kill()
        child.wait()
        returned.extend(w for w in child.stdout.read().split() if w)

    c = phones.open("anna")
    p = c.process(pid)
    body = p.articles()[0].body
    words = body.split()
    missing = [w for w in returned if w not in words]
    assert not missing, f"{len(missing)} returned edits lost, e.g. {missing[:5]}"
    # Words keep the order they were typed in.
    positions = [words.index(w) for w in returned]
    assert positions == sorted(positions)

    eventually("the phone to sync up", lambda: p.sync_status().all_on_server, timeout=120)
    _, fresh = phones.join("fresh", server, server.invite(pid, "Bram", "drafter"))
    eventually(
        "a fresh phone to receive every returned edit",
        lambda: all(w in fresh.articles()[0].body.split() for w in returned) if fresh.articles() else False,
    )
