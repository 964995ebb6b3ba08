"""Child process of test_typing_kill.py: opens a phone's data directory and
types tokens into the first article, key by key, each typed into the version
of the text it read. Prints a token once the call that typed its last key has
returned, until it is killed.

Usage: typing_child.py <data dir> <run> <end|middle> <after token or -> <window ms>

`end` types each token at the end of the body; `middle` types it right after
the token typed before it (`after`, the previous run's last returned token,
or the start of the body), so other text keeps coming after it."""

import sys

from conftest import klad_ffi  # the bindings, found as the tests find them

data_dir, run, mode, after, window = sys.argv[1:6]
client = klad_ffi.KladClient.open(data_dir)
client.set_typing_window(int(window))
pid = client.processes()[0].process_id
p = client.process(pid)
art = p.articles()[0].id
prev = None if after == "-" else after
i = 0
while True:
    token = f"[a{run}_{i}]"
    shown = p.articles_with_version()
    body = shown.articles[0].body
    if mode == "end" or prev is None:
        pos = len(body) if mode == "end" else 0
    else:
        at = body.find(prev)
        pos = at + len(prev) if at >= 0 else len(body)
    for k, ch in enumerate(token):
        p.edit_body_at(shown.version, art, pos + k, 0, ch)
    print(token, flush=True)
    prev = token
    i += 1
