"""Issue 4, scenarios 1 and 2: offline work converges through a real server,
and `all_on_server` is honest across a server killed with SIGKILL."""

import klad_ffi
import pytest

from conftest import eventually

BODY = "De gemeente zorgt voor groen in de wijk."


def body_of(process):
    arts = process.articles()
    return arts[0].body if arts else None


def test_two_drafters_and_an_official_converge_after_working_offline(server, phones):
    pid = server.create_process("Groen in de wijk")
    anna_inv = server.invite(pid, "Anna", "drafter")
    bram_inv = server.invite(pid, "Bram", "drafter")
    olga_inv = server.invite(pid, "Olga", "official")
    anna_c, anna = phones.join("anna", server, anna_inv)
    bram_c, bram = phones.join("bram", server, bram_inv)
    olga_c, olga = phones.join("olga", server, olga_inv)

    art = anna.create_article(None, "Groen", BODY)
    for p in (bram, olga):
        eventually("the article to reach every phone", lambda p=p: body_of(p) == BODY)

    for c in (anna_c, bram_c, olga_c):
        c.set_online(False)

    # Anna types a word at the start, keystroke by keystroke.
    for i, ch in enumerate("Ook "):
        anna.edit_body(art, i, 0, ch)
    assert body_of(anna) == "Ook " + BODY, "typing shows before it is committed"
    # Bram rewrites the end.
    end = len(BODY)
    bram.edit_body(art, end - 1, 1, ", elke straat.")
    bram.commit()
    # Olga comments on "groen" (she sees the text as it was).
    start = BODY.index("groen")
    thread = olga.comment(art, start, start + len("groen"), "Welk groen bedoelen jullie?")
    # An official may not change the text: refused locally with core's
    # reason code and sentence, in Dutch until the app chooses English.
    assert klad_ffi.language() == "nl"
    with pytest.raises(klad_ffi.KladError.NotAllowed) as refused:
        olga.edit_body(art, 0, 0, "x")
    assert refused.value.code == "role-may-not"
    assert refused.value.sentence == (
        "Als ambtenaar mag u dit niet: de tekst van de artikelen wijzigen. "
        "Alleen inwoners mogen dat."
    )
    klad_ffi.set_language("en-GB")
    try:
        assert klad_ffi.language() == "en"
        with pytest.raises(klad_ffi.KladError.NotAllowed) as refused:
            olga.edit_body(art, 0, 0, "x")
        assert refused.value.code == "role-may-not"
        assert refused.value.sentence == (
            "As an official, you cannot change the article text: only drafters can."
        )
        with pytest.raises(klad_ffi.KladError.InvalidInput) as unknown:
            klad_ffi.set_language("fr")
        assert unknown.value.code == "unknown-language"
        assert klad_ffi.language() == "en"
    finally:
        klad_ffi.set_language("nl")

    for p in (anna, bram, olga):
        s = p.sync_status()
        assert not s.online
        assert not s.all_on_server and s.unsynced_changes > 0

    for c in (anna_c, bram_c, olga_c):
        c.set_online(True)

    expected = "Ook De gemeente zorgt voor groen in de wijk, elke straat."

    def converged():
        bodies = {body_of(p) for p in (anna, bram, olga)}
        threads = [p.threads(None) for p in (anna, bram, olga)]
        return bodies == {expected} and all(len(t) == 1 for t in threads) and threads

    threads = eventually("all phones to converge", converged)
    assert threads[0] == threads[1] == threads[2], "identical views on every phone"
    t = threads[0][0]
    assert t.id == thread
    assert t.author.name == "Olga"
    assert t.status == klad_ffi.ThreadStatus.OPEN
    assert isinstance(t.anchor, klad_ffi.Anchor.LIVE)
    assert t.anchor.text == "groen", "the comment is still on its passage"
    assert expected[t.anchor.start : t.anchor.end] == "groen"

    for p in (anna, bram, olga):
        eventually("the server to acknowledge everything", lambda p=p: p.sync_status().all_on_server)

    # Each phone names its device when it connects, so blame names the drafters.
    def blamed():
        names = {s.name for s in olga.blame(art) if s.text.strip()}
        return names if names == {"Anna", "Bram"} else None

    eventually("blame to name both drafters", blamed)


def test_all_on_server_is_honest_across_a_server_sigkill(server, phones, tmp_path):
    pid = server.create_process("Parkeren")
    anna_c, anna = phones.join("anna", server, server.invite(pid, "Anna", "drafter"))
    art = anna.create_article(None, "Parkeren", "Parkeren mag op de stoep.")
    eventually("the article to be on the server", lambda: anna.sync_status().all_on_server)

    anna_c.set_online(False)
    anna.edit_body(art, 13, 0, "niet ")
    for i, ch in enumerate(" Nooit."):
        anna.edit_body(art, len("Parkeren mag niet op de stoep.") + i, 0, ch)
    s = anna.sync_status()
    assert not s.all_on_server and s.unsynced_changes > 0
    anna.commit()
    assert not anna.sync_status().all_on_server, "committed is not the same as on the server"

    anna_c.set_online(True)
    eventually("the server to acknowledge", lambda: anna.sync_status().all_on_server)
    server.kill9()  # right after it turned true: nothing may be lost
    server.start()

    expected = "Parkeren mag niet op de stoep. Nooit."
    fresh_c, fresh = phones.join("fresh", server, server.invite(pid, "Fenna", "official"))
    eventually("the fresh phone to receive every change", lambda: body_of(fresh) == expected)
    assert body_of(anna) == expected


def test_typing_in_heading_and_body_becomes_one_change_each(server, phones):
    pid = server.create_process("Typen")
    c, anna = phones.join("anna", server, server.invite(pid, "Anna", "drafter"))
    art = anna.create_article(None, "Kop", "Tekst")
    # A window longer than the test, so only commit() ends it.
    c.set_typing_window(600_000)

    def text_changes():
        return [h for h in anna.history() if h.doc == klad_ffi.DocKind.TEXT]

    before = len(text_changes())
    for i, ch in enumerate(" een"):
        anna.edit_heading(art, len("Kop") + i, 0, ch)
    for i, ch in enumerate(" twee"):
        anna.edit_body(art, len("Tekst") + i, 0, ch)
    a = anna.articles()[0]
    assert (a.heading, a.body) == ("Kop een", "Tekst twee"), "typing shows before it is committed"
    with pytest.raises(klad_ffi.KladError.InvalidInput) as e:
        anna.edit_heading(art, 99, 0, "x")
    assert e.value.code == "edit-outside-field"
    assert "buiten de kop" in e.value.sentence
    anna.commit()
    after = text_changes()
    assert len(after) == before + 2, "nine keystrokes, two changes: the heading's and the body's"
    assert (anna.articles()[0].heading, anna.articles()[0].body) == ("Kop een", "Tekst twee")
