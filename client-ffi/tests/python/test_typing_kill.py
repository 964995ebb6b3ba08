"""Issue 11: a phone typing into an article (at the end, and in the middle)
while another phone edits the same article through the server is killed with
SIGKILL at random moments. After every kill and at the end, every token whose
last keystroke's call returned is there exactly once, intact, in the order
typed. Each keystroke is typed into the version of the text the app read, so
the other phone's changes, arriving at any moment (before the keystroke,
before the commit, before the kill and the replay), never move it.

`KLAD_TYPING_KILL_ROUNDS` sets the rounds per typing window (default 10: 20
rounds in the suite, over a 1 ms and the default window);
scripts/typing-kill.sh runs 100 per window and prints the figures."""

import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import eventually

HERE = Path(__file__).resolve().parent
ROUNDS = int(os.environ.get("KLAD_TYPING_KILL_ROUNDS", "10"))
TOKEN = re.compile(r"\[a\d+_\d+\]")


class OtherPhone(threading.Thread):
    """Bram's phone, online, putting tokens {bN} into the article as it sees
    it, every few milliseconds, until stopped."""

    def __init__(self, process, article, seed):
        super().__init__(daemon=True)
        self.p, self.article = process, article
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.typed = []
        self.error = None

    def run(self):
        try:
            while not self.stop.is_set():
                shown = self.p.articles_with_version()
                body = shown.articles[0].body
                # At the start or right after one of its own tokens: never
                # next to a character of Anna's, where two people typing at
                # one spot interleave (as they would on any CRDT) and a
                # token could be split without anything being misplaced.
                spots = [0] + [i + 1 for i, c in enumerate(body) if c == "}"]
                token = f"{{b{len(self.typed)}}}"
                self.p.edit_body_at(shown.version, self.article, self.rng.choice(spots), 0, token)
                self.typed.append(token)
                if len(self.typed) % 3 == 0:
                    self.p.commit()
                time.sleep(self.rng.uniform(0.005, 0.03))
        except Exception as e:  # reported by the test
            self.error = e


def check(body, anna, bram, what):
    for t in anna:
        assert body.count(t) == 1, f"{what}: {t} appears {body.count(t)} times in {body!r}"
    order = [m.group(0) for m in TOKEN.finditer(body) if m.group(0) in set(anna)]
    assert order == anna, f"{what}: Anna's tokens are out of the order typed: {order} vs {anna}"
    for t in bram:
        assert body.count(t) <= 1, f"{what}: {t} doubled in {body!r}"


@pytest.mark.parametrize("window", [1, 75])
def test_a_phone_killed_while_another_edits_the_same_article_keeps_every_keystroke_in_place(
    server, phones, window
):
    pid = server.create_process("Typen")
    anna_c, anna = phones.join("anna", server, server.invite(pid, "Anna", "drafter"))
    _, bram = phones.join("bram", server, server.invite(pid, "Bram", "drafter"))
    art = anna.create_article(None, "Typen", "")
    eventually("the article to reach Bram", lambda: bool(bram.articles()))
    data_dir = str(phones.base / "anna")
    anna_c.shutdown()
    phones.clients.remove(anna_c)
    del anna, anna_c

    other = OtherPhone(bram, art, seed=window)
    other.start()
    rng = random.Random(window)
    returned = []
    kills = 0
    try:
        for run in range(2 * ROUNDS):
            mode = "end" if run % 2 else "middle"
            after = returned[-1] if returned else "-"
            child = subprocess.Popen(
                [sys.executable, str(HERE / "typing_child.py"), data_dir, str(run), mode, after, str(window)],
                stdout=subprocess.PIPE,
                text=True,
                cwd=str(HERE),
            )
            first = child.stdout.readline().strip()
            assert first, f"run {run}: the child typed nothing before it was killed"
            returned.append(first)
            time.sleep(rng.uniform(0.0, 0.25))
            child.kill()
            code = child.wait()
            assert code == -9, f"run {run}: the typing process ended by itself (exit {code}) before it was killed"
            kills += 1
            returned.extend(t for t in child.stdout.read().split() if t)
            assert other.error is None, f"the other phone failed: {other.error}"
    finally:
        other.stop.set()
        other.join(timeout=30)
    assert other.error is None, f"the other phone failed: {other.error}"
    bram.commit()

    c = phones.open("anna")
    c.set_typing_window(window)
    p = c.process(pid)
    check(p.articles()[0].body, returned, other.typed, "after the last kill")
    eventually("Anna's phone to sync up", lambda: p.sync_status().all_on_server, timeout=120)
    eventually("Bram's phone to sync up", lambda: bram.sync_status().all_on_server, timeout=120)
    eventually("both phones to agree",
               lambda: p.articles()[0].body == bram.articles()[0].body, timeout=120)
    body = p.articles()[0].body
    check(body, returned, other.typed, "at the end")
    for t in other.typed:
        assert body.count(t) == 1, f"Bram's {t} appears {body.count(t)} times"
    print(f"typing kill, window {window} ms: {kills} kills, {len(returned)} tokens returned "
          f"({sum(len(t) for t in returned)} keystrokes), {len(other.typed)} tokens from the other phone; "
          f"0 lost, 0 doubled, 0 misplaced")
