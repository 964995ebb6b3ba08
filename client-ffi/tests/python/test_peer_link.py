"""Issue 4, scenario 4: two phones sync over a peer link with no server at all
(an in-memory pipe), then one of them syncs with the server and a third phone
receives the other phone's edits through it. A forged invitation is refused.

Bram's comment reaches the server through Anna's phone, signed by Bram's.
(An official's phone sending a text edit over a link is refused as well; that
needs a peer that bypasses klad-ffi's own checks, so it is tested in Rust:
client-ffi/tests/peer_link.rs.)"""

import base64
import threading

import klad_ffi

from conftest import eventually

BODY = "Bomen in de straat worden niet gekapt."


class Pipe(klad_ffi.PeerTransport):
    """One direction of an in-memory link: frames sent here are handed to the
    other phone's link. Frames sent before the other link exists wait."""

    def __init__(self):
        self.lock = threading.Lock()
        self.other = None
        self.waiting = []
        self.sent = []
        self.closed_reason = None

    def connect(self, other_link):
        with self.lock:
            self.other = other_link
            waiting, self.waiting = self.waiting, []
        for f in waiting:
            other_link.receive(f)

    def send(self, frame):
        with self.lock:
            self.sent.append(bytes(frame))
            other = self.other
            if other is None:
                self.waiting.append(frame)
                return
        try:
            other.receive(frame)
        except klad_ffi.KladError.Network:
            pass  # the other side has closed; a real radio would drop it too

    def closed(self, reason):
        self.closed_reason = reason


def body_of(process):
    arts = process.articles()
    return arts[0].body if arts else None


def link(p, q):
    """Links two phones' processes through two pipes; returns both links."""
    pq, qp = Pipe(), Pipe()
    lp = p.open_peer_link(pq)
    lq = q.open_peer_link(qp)
    pq.connect(lq)
    qp.connect(lp)
    return lp, lq


def test_two_phones_sync_over_a_peer_link_then_a_third_gets_it_through_the_server(server, phones):
    pid = server.create_process("Bomen")
    anna_c, anna = phones.join("anna", server, server.invite(pid, "Anna", "drafter"))
    bram_c, bram = phones.join("bram", server, server.invite(pid, "Bram", "drafter"))
    art = anna.create_article(None, "Bomen", BODY)
    eventually("the article to reach Bram", lambda: body_of(bram) == BODY)

    # From here on, no server for either phone.
    anna_c.set_online(False)
    bram_c.set_online(False)
    anna.edit_body(art, 0, 0, "Oude ")
    anna.commit()
    end = len("Oude " + BODY)
    bram.edit_body(art, len(BODY) - 1, 1, ", ook niet in het park.")
    bram.commit()
    thread = bram.comment(art, 0, 5, "Welke bomen?")

    a_link, b_link = link(anna, bram)
    eventually("the link to be up on both phones",
               lambda: a_link.status().state == b_link.status().state == klad_ffi.PeerLinkState.CONNECTED)
    assert a_link.status().peer.name == "Bram"
    assert b_link.status().peer.name == "Anna"
    assert b_link.status().peer.role == klad_ffi.Role.DRAFTER

    expected = "Oude Bomen in de straat worden niet gekapt, ook niet in het park."
    eventually("both phones to converge over the link",
               lambda: body_of(anna) == body_of(bram) == expected)
    eventually("Bram's comment to reach Anna over the link",
               lambda: [t.id for t in anna.threads(None)] == [thread])
    assert anna.threads(None) == bram.threads(None)
    assert a_link.status().refused_changes == 0 and b_link.status().refused_changes == 0
    assert not anna.sync_status().online and not bram.sync_status().online

    a_link.end()
    eventually("both sides to see the link closed",
               lambda: b_link.status().state == klad_ffi.PeerLinkState.CLOSED)
    assert a_link.status().state == klad_ffi.PeerLinkState.CLOSED

    # Anna goes online: the server gets Bram's text edits from her phone.
    anna_c.set_online(True)
    eventually("Anna's phone to be all on the server", lambda: anna.sync_status().all_on_server)
    _, carla = phones.join("carla", server, server.invite(pid, "Carla", "official"))
    eventually("a third phone to receive Bram's edits through Anna and the server",
               lambda: body_of(carla) == expected)
    assert not bram.sync_status().online, "Bram never connected to the server"
    # Bram's comment lives in his own contributions document, which only he
    # may write; Anna's phone relays it with the signature Bram's phone put on
    # it, so it reaches the server (and Carla) attributed to Bram.
    eventually("Bram's comment to reach Carla through Anna",
               lambda: [t.id for t in carla.threads(None)] == [thread])
    assert carla.threads(None)[0].author.name == "Bram"
    bram_c.set_online(True)
    eventually("Bram's phone to be all on the server", lambda: bram.sync_status().all_on_server)
    assert [t.id for t in carla.threads(None)] == [thread]


def cbor_head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    if n < 256:
        return bytes([major << 5 | 24, n])
    if n < 65536:
        return bytes([major << 5 | 25]) + n.to_bytes(2, "big")
    return bytes([major << 5 | 26]) + n.to_bytes(4, "big")


def cbor_map(fields):
    """A CBOR map of text keys to text or small-integer values."""
    out = cbor_head(5, len(fields))
    for k, v in fields.items():
        kb = k.encode()
        out += cbor_head(3, len(kb)) + kb
        if isinstance(v, int):
            out += cbor_head(0, v)
        else:
            vb = v.encode()
            out += cbor_head(3, len(vb)) + vb
    return out


def forge(token, old, new):
    """Rewrites a claim inside a v4.public token; the signature no longer matches."""
    prefix, _, rest = token.partition("v4.public.")
    body, dot, footer = rest.partition(".")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    claims, sig = raw[:-64], raw[-64:]
    assert old.encode() in claims
    raw = claims.replace(old.encode(), new.encode()) + sig
    return "v4.public." + base64.urlsafe_b64encode(raw).decode().rstrip("=") + dot + footer


def test_a_forged_invitation_is_refused_on_a_peer_link(server, phones):
    pid = server.create_process("Bankjes")
    _, anna = phones.join("anna", server, server.invite(pid, "Anna", "drafter"))
    olga = server.invite(pid, "Olga", "official")
    anna.create_article(None, "Bankjes", "Er komen bankjes.")
    eventually("Anna's phone to have the server's key", lambda: anna.sync_status().online)

    # An official rewrites her own invitation to say she is a drafter.
    forged = forge(olga["token"], '"role":"official"', '"role":"drafter"')
    to_olga = Pipe()
    a_link = anna.open_peer_link(to_olga)
    a_link.receive(cbor_map({"type": "klad-hello", "version": 1, "token": forged,
                             "peerId": olga["member_id"] + ":forged"}))
    eventually("the link to be refused", lambda: a_link.status().state == klad_ffi.PeerLinkState.CLOSED)
    status = a_link.status()
    assert "not signed by this process's server" in status.closed_reason
    assert status.peer is None
    # The transport is called on the link's own thread, so it hears a moment later.
    eventually("the transport to be told", lambda: to_olga.closed_reason is not None)
    assert "not signed by this process's server" in to_olga.closed_reason
    assert any(b"klad-refused" in f for f in to_olga.sent), "the other side is told why"
    try:
        a_link.receive(b"more")
        raise AssertionError("a closed link takes no more frames")
    except klad_ffi.KladError.Network as e:
        assert "closed" in str(e)

    # The genuine invitation of the same official is accepted (she may read).
    _, olga_p = phones.join("olga", server, olga)
    l1, l2 = link(anna, olga_p)
    eventually("a genuine invitation to be accepted",
               lambda: l1.status().state == l2.status().state == klad_ffi.PeerLinkState.CONNECTED)
    assert l1.status().peer.role == klad_ffi.Role.OFFICIAL
