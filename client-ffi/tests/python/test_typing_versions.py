"""Issue 11: a keystroke says which text it was typed into. The app reads the
text with its version and hands the version back with every keystroke; a
change from another phone that arrives between reading and typing never
moves the keystroke."""

import klad_ffi

from conftest import eventually

BODY = "[a][b][c]"


def test_a_change_from_another_phone_between_reading_and_typing_does_not_move_the_keystroke(server, phones):
    pid = server.create_process("Versies")
    _, anna = phones.join("anna", server, server.invite(pid, "Anna", "drafter"))
    _, bram = phones.join("bram", server, server.invite(pid, "Bram", "drafter"))
    art = anna.create_article(None, "Versies", BODY)
    eventually("the article to reach Bram", lambda: bram.articles() and bram.articles()[0].body == BODY)

    # Anna's app shows the text as it is now, with its version.
    shown = anna.articles_with_version()
    assert shown.articles[0].body == BODY
    version = shown.version

    # Bram's change arrives on Anna's phone before she types.
    bram.edit_body(art, 0, 0, "REMOTE")
    bram.commit()
    eventually("Bram's change to reach Anna",
               lambda: anna.articles()[0].body == "REMOTE" + BODY)

    # Anna types after "[a]" in the text her app shows, then once more after
    # her own keystroke, both with the version she read.
    anna.edit_body_at(version, art, 3, 0, "X")
    anna.edit_body_at(version, art, 4, 0, "Y")
    anna.commit()
    assert anna.articles()[0].body == "REMOTE[a]XY[b][c]"
    eventually("both phones to agree",
               lambda: bram.articles()[0].body == "REMOTE[a]XY[b][c]")

    # A fresh read hands out a new version; typing into it works as before.
    shown = anna.articles_with_version()
    assert shown.version != version
    anna.edit_body_at(shown.version, art, len(shown.articles[0].body), 0, "!")
    assert anna.articles()[0].body == "REMOTE[a]XY[b][c]!"

    # A version the library never handed out is refused with a sentence.
    try:
        anna.edit_body_at("not-a-version", art, 0, 0, "Z")
        raise AssertionError("a made-up version was accepted")
    except klad_ffi.KladError.InvalidInput as e:
        assert "version" in e.sentence
