"""Issue 11: an observer's read marks sync. They are the only thing an observer
writes (into their own contributions document), so an observer's phone can be
all on the server, and the mark is there on another of their devices."""

from conftest import eventually


def test_an_observers_read_mark_reaches_the_server(server, phones):
    pid = server.create_process("Meelezen")
    _, anna = phones.join("anna", server, server.invite(pid, "Anna", "drafter"))
    otto_inv = server.invite(pid, "Otto", "observer")
    _, otto = phones.join("otto", server, otto_inv)
    anna.create_article(None, "Meelezen", "Wie leest er mee?")
    eventually("the article to reach Otto", lambda: bool(otto.articles()))
    before = otto.changes_since_read()
    assert before.since is None and before.articles, "Otto has something new to read"

    otto.mark_read()
    mark = otto.changes_since_read().since
    assert mark is not None and otto.changes_since_read().articles == []
    eventually("Otto's read mark to be on the server", lambda: otto.sync_status().all_on_server)

    # The same observer on a second device finds the mark there.
    _, tablet = phones.join("otto-tablet", server, otto_inv)
    eventually("the read mark to reach Otto's tablet",
               lambda: tablet.articles() and tablet.changes_since_read().since == mark)
