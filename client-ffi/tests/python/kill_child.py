"""Child process of test_phone_kill.py: opens a phone's data directory and
appends words to the first article, printing each word after the call that
typed it has returned, until it is killed."""

import sys

from conftest import klad_ffi  # the bindings, found as the tests find them

data_dir, run = sys.argv[1], sys.argv[2]
client = klad_ffi.KladClient.open(data_dir)
process = client.processes()[0]
p = client.process(process.process_id)
art = p.articles()[0].id
# A word cut off by the previous kill must not run into the next one.
body = p.articles()[0].body
if body and not body.endswith(" "):
    p.edit_body(art, len(body), 0, " ")
i = 0
while True:
    word = f"r{run}w{i} "
    body = p.articles()[0].body
    # Every other word is typed key by key, the rest pasted at once.
    if i % 2:
        for k, ch in enumerate(word):
            p.edit_body(art, len(body) + k, 0, ch)
    else:
        p.edit_body(art, len(body), 0, word)
    print(word.strip(), flush=True)
    i += 1
