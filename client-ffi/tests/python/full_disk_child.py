"""Child process of test_full_disk.py: a phone whose data directory is on a
small filesystem. Opens it and says `ready`; on `go` (the disk is full now)
pastes tokens of 4 KB into the first article, one call each, printing `ok
T`, `kept T` (on screen but not saved: the `not-saved` error) or `refused T
code`. At first its database still has room the journal file lacks, and
commits save what the journal could not; it goes on until three tokens in a
row are still unsaved 200 ms later (past the typing window: the commit
failed too), then prints the status's `not_saved` sentence 3 s later (past
the library's retry), waits for `room` (space is back), prints `saved` once
the status no longer says anything is unsaved, and waits to be killed (as a
phone's app is, by the system).

Usage: full_disk_child.py <data dir>"""

import sys
import time

from conftest import klad_ffi  # the bindings, found as the tests find them

client = klad_ffi.KladClient.open(sys.argv[1])
klad_ffi.set_language("en")
p = client.process(client.processes()[0].process_id)
art = p.articles()[0].id
print("ready", flush=True)
assert sys.stdin.readline().strip() == "go"
unsaved = 0
for i in range(400):
    token = f"[t{i}]"
    shown = p.articles_with_version()
    try:
        p.edit_body_at(shown.version, art, len(shown.articles[0].body), 0, token + "-" * 4000)
        print("ok", token, flush=True)
    except klad_ffi.KladError.Storage as e:
        if e.code == "not-saved":
            print("kept", token, flush=True)
        else:
            print("refused", token, e.code, flush=True)
    time.sleep(0.2)
    unsaved = unsaved + 1 if p.sync_status().not_saved is not None else 0
    if unsaved >= 3:
        break
time.sleep(3)
print("status", p.sync_status().not_saved, flush=True)
assert sys.stdin.readline().strip() == "room"
deadline = time.monotonic() + 60
while p.sync_status().not_saved is not None and time.monotonic() < deadline:
    time.sleep(0.1)
print("saved" if p.sync_status().not_saved is None else "still-not-saved", flush=True)
sys.stdin.readline()
