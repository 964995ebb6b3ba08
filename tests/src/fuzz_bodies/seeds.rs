//! The seed corpus, generated from real frames, documents, stored values,
//! journal records and tokens made with Klad's own code (run
//! `cargo run -p klad-tests --bin klad-fuzz-seeds` to write it into
//! `fuzz/corpus/`). Seeds meant to reach past a checksum are written as
//! chunk contents with the mode byte that wraps them again
//! ([`super::bytes::unwrap`]), so libFuzzer's mutations keep valid checksums.

use automerge::sync::{self, ChunkList, Message, MessageVersion, SyncDoc};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, Change, ROOT, ReadDoc};
use ciborium::Value;
use klad_core::rules::Role;
use klad_core::{KladDocument, ProcessDocs, Session, Splice};
use klad_store::journal;
use klad_sync::authorship::{self, DeviceKey};
use klad_sync::wire;

use super::bytes;
use super::hub::{ANNA_ACTOR, ANNA_PEER, BRAM_ACTOR, BRAM_SEED, join_frame, sync_frame, world};
use super::token;

/// One seed: its target, its file name, its bytes.
pub type Seed = (&'static str, String, Vec<u8>);

fn cbor(entries: Vec<(&str, Value)>) -> Vec<u8> {
    let map = entries
        .into_iter()
        .map(|(k, v)| (Value::Text(k.into()), v))
        .collect();
    let mut out = Vec::new();
    ciborium::into_writer(&Value::Map(map), &mut out).expect("CBOR into a Vec");
    out
}

fn t(s: &str) -> Value {
    Value::Text(s.into())
}

/// One change on top of the stored text document by `actor`.
fn change_by(actor: &[u8], time: i64) -> Change {
    let mut doc = Automerge::load(&world().base)
        .expect("base")
        .with_actor(ActorId::from(actor));
    let mut tx = doc.transaction();
    let articles = match tx.get(ROOT, "articles") {
        Ok(Some((_, id))) => id,
        _ => ROOT,
    };
    tx.put(&articles, format!("seed-{time}"), time)
        .expect("put");
    tx.commit_with(CommitOptions::default().with_time(time));
    doc.get_last_local_change().expect("a change")
}

/// A sync message that carries `changes` on top of the stored text.
fn message_with(changes: &[&Change], version: MessageVersion) -> Message {
    let base = Automerge::load(&world().base).expect("base");
    let chunks = match version {
        MessageVersion::V1 => ChunkList::from(
            changes
                .iter()
                .map(|c| c.raw_bytes().to_vec())
                .collect::<Vec<_>>(),
        ),
        MessageVersion::V2 => ChunkList::from(
            changes
                .iter()
                .flat_map(|c| c.raw_bytes().to_vec())
                .collect::<Vec<u8>>(),
        ),
    };
    Message {
        heads: changes.iter().map(|c| c.hash()).collect(),
        need: Vec::new(),
        have: vec![sync::Have {
            last_sync: base.get_heads(),
            bloom: Default::default(),
        }],
        changes: chunks,
        flags: None,
        version,
    }
}

/// A real first message of a peer: its heads and what it has.
fn first_message(doc: &Automerge) -> Message {
    doc.clone()
        .generate_sync_message(&mut sync::State::new())
        .expect("a first message")
}

fn frames() -> Vec<(String, Vec<u8>)> {
    let w = world();
    let text = &w.text;
    let anna = change_by(&ANNA_ACTOR, 10);
    let anna2 = {
        let mut doc = Automerge::load(&w.base).expect("base");
        doc.apply_changes([anna.clone()]).expect("apply");
        doc.set_actor(ActorId::from(&ANNA_ACTOR[..]));
        let mut tx = doc.transaction();
        tx.put(ROOT, "later", 1).expect("put");
        tx.commit_with(CommitOptions::default().with_time(11));
        doc.get_last_local_change().expect("change")
    };
    let bram = change_by(&BRAM_ACTOR, 12);
    let stranger = change_by(&[0x5a; 16], 13);
    let base = Automerge::load(&w.base).expect("base");
    let mut out = vec![
        ("join".to_owned(), join_frame(ANNA_PEER)),
        (
            "sync-heads".to_owned(),
            sync_frame("sync", ANNA_PEER, text, first_message(&base)),
        ),
        (
            "request-empty".to_owned(),
            sync_frame("request", ANNA_PEER, text, first_message(&Automerge::new())),
        ),
        (
            "sync-own-change".to_owned(),
            sync_frame(
                "sync",
                ANNA_PEER,
                text,
                message_with(&[&anna], MessageVersion::V1),
            ),
        ),
        (
            "sync-own-changes-v2".to_owned(),
            sync_frame(
                "sync",
                ANNA_PEER,
                text,
                message_with(&[&anna, &anna2], MessageVersion::V2),
            ),
        ),
        (
            "sync-missing-dependency".to_owned(),
            sync_frame(
                "sync",
                ANNA_PEER,
                text,
                message_with(&[&anna2], MessageVersion::V1),
            ),
        ),
        (
            "sync-other-members-device".to_owned(),
            sync_frame(
                "sync",
                ANNA_PEER,
                text,
                message_with(&[&bram], MessageVersion::V1),
            ),
        ),
        (
            "sync-new-device".to_owned(),
            sync_frame(
                "sync",
                ANNA_PEER,
                text,
                message_with(&[&stranger], MessageVersion::V1),
            ),
        ),
        (
            "sync-not-allowed".to_owned(),
            sync_frame(
                "sync",
                ANNA_PEER,
                &w.bram_contributions,
                message_with(&[&anna], MessageVersion::V1),
            ),
        ),
        (
            "request-own-contributions".to_owned(),
            sync_frame(
                "request",
                ANNA_PEER,
                &w.anna_contributions,
                first_message(&Automerge::new()),
            ),
        ),
        (
            "ephemeral".to_owned(),
            cbor(vec![
                ("type", t("ephemeral")),
                ("senderId", t(ANNA_PEER)),
                ("targetId", t("klad-server")),
                ("documentId", t(text)),
                ("count", Value::Integer(1.into())),
                ("sessionId", t("s1")),
                ("data", Value::Bytes(vec![0xa1, 0x61, 0x78, 0x01])),
            ]),
        ),
        (
            "leave".to_owned(),
            cbor(vec![("type", t("leave")), ("senderId", t(ANNA_PEER))]),
        ),
        (
            "doc-unavailable".to_owned(),
            cbor(vec![
                ("type", t("doc-unavailable")),
                ("senderId", t(ANNA_PEER)),
                ("documentId", t(text)),
            ]),
        ),
        (
            "bad-document-id".to_owned(),
            cbor(vec![
                ("type", t("sync")),
                ("documentId", t("not-a-document")),
                ("data", Value::Bytes(vec![0x42])),
            ]),
        ),
        (
            "signatures".to_owned(),
            authorship::encode_signatures(
                text,
                &[(
                    bram.hash(),
                    DeviceKey::from_seed(BRAM_SEED).sign(&bram.hash()),
                )],
            ),
        ),
    ];
    let token = token::sign(
        br#"{"sub":"anna","pid":"p","role":"drafter","exp":"2999-01-01T00:00:00+00:00"}"#,
    )
    .expect("a token");
    out.push((
        "hello".to_owned(),
        wire::encode_hello(&wire::Hello {
            token,
            peer_id: ANNA_PEER.to_owned(),
        }),
    ));
    out.push((
        "refused".to_owned(),
        wire::encode_refused("Not a member of this process."),
    ));
    out
}

/// The changes payloads for `hub_changes`: (name, flags, chunk bytes).
fn changes() -> Vec<(String, u8, Vec<u8>)> {
    let anna = change_by(&ANNA_ACTOR, 20);
    let bram = change_by(&BRAM_ACTOR, 21);
    let stranger = change_by(&[0x5b; 16], 22);
    let mut grown = Automerge::load(&world().base).expect("base");
    grown.apply_changes([anna.clone()]).expect("apply");
    let bundle = grown
        .bundle([anna.hash()])
        .expect("a bundle")
        .bytes()
        .to_vec();
    vec![
        ("own-change".into(), 0, anna.raw_bytes().to_vec()),
        ("own-change-v2".into(), 4, anna.raw_bytes().to_vec()),
        ("own-change-request".into(), 8, anna.raw_bytes().to_vec()),
        ("own-change-heads".into(), 0x20, anna.raw_bytes().to_vec()),
        ("relayed-signed".into(), 0x10, bram.raw_bytes().to_vec()),
        ("relayed-unsigned".into(), 0, bram.raw_bytes().to_vec()),
        ("new-device".into(), 0, stranger.raw_bytes().to_vec()),
        ("own-contributions".into(), 0x40, anna.raw_bytes().to_vec()),
        (
            "others-contributions".into(),
            0x80,
            anna.raw_bytes().to_vec(),
        ),
        ("whole-document".into(), 4, grown.save()),
        (
            "document-after".into(),
            4,
            grown.save_after(&Automerge::load(&world().base).expect("base").get_heads()),
        ),
        ("bundle".into(), 0, bundle),
    ]
}

/// A process with articles, comments and a suggestion, made through a
/// member's session.
fn process_docs() -> ProcessDocs {
    let text_id = klad_core::DocId(wire::document_id([9; 16]));
    let pid = klad_core::ProcessId(wire::document_id([8; 16]));
    let mut docs = ProcessDocs::create(1_000, &pid, "Fietsen", &text_id).expect("process");
    let drafter = docs
        .add_member(
            1_000,
            None,
            "Anna",
            Role::Drafter,
            &klad_core::DocId(wire::document_id([7; 16])),
        )
        .expect("member");
    let official = docs
        .add_member(
            1_000,
            None,
            "Olga",
            Role::Official,
            &klad_core::DocId(wire::document_id([6; 16])),
        )
        .expect("member");
    let mut anna = Session::new(docs, drafter, ActorId::from(&ANNA_ACTOR[..]));
    let a1 = anna
        .create_article(2_000, None, "Fietsen", "Iedereen mag hier fietsen.")
        .expect("article");
    anna.create_article(2_100, Some(&a1), "Honden", "Honden aan de lijn.")
        .expect("article");
    anna.edit_body(
        2_200,
        &a1,
        &[Splice {
            pos: 0,
            delete: 0,
            insert: "Overdag: ".into(),
        }],
    )
    .expect("edit");
    anna.comment(2_300, &a1, 0, 7, "Ook 's nachts?")
        .expect("comment");
    let mut olga = Session::new(anna.into_docs(), official, ActorId::from(&[0x0f; 16][..]));
    olga.suggest(2_400, &a1, 9, 17, "Wie dan ook", "Duidelijker.")
        .expect("suggestion");
    olga.into_docs()
}

/// Every seed of every target.
pub fn generate() -> Vec<Seed> {
    let mut out: Vec<Seed> = Vec::new();
    for (name, frame) in frames() {
        out.push(("wire", name.clone(), frame.clone()));
        out.push(("hub_frame", name, frame));
    }
    out.push(("wire", "garbage".into(), b"\xff\x00garbage".to_vec()));
    for (name, flags, chunks) in changes() {
        // A single chunk goes in as its contents, wrapped again by the body.
        let (mode, payload) = bytes::unwrap(&chunks);
        let mut seed = vec![(flags & !3) | mode];
        seed.extend(payload);
        out.push(("hub_changes", name, seed));
    }
    let docs = process_docs();
    let (member, contributions) = docs
        .contributions
        .iter()
        .next_back()
        .expect("contributions");
    let _ = member;
    let saved = [
        ("process", 0u8, docs.process.save()),
        ("text", 1, docs.text.save()),
        ("contributions", 2, contributions.save()),
    ];
    for (kind, k, bytes) in &saved {
        let (mode, payload) = bytes::unwrap(bytes);
        let mut seed = vec![(k << 2) | mode];
        seed.extend(payload);
        out.push(("load", format!("{kind}-document"), seed));
        let mut raw = vec![k << 2];
        raw.extend(bytes);
        out.push(("load", format!("{kind}-raw"), raw));
    }
    let text = docs.text.automerge();
    let changes = text.get_changes(&[]);
    let mut incremental = vec![1 << 2];
    incremental.extend(text.save_after(&[]));
    out.push(("load", "text-changes".into(), incremental));
    // The store: a snapshot of the first changes, then chunks after it.
    let first = changes[0].hash();
    let snapshot = text.clone().fork_at(&[first]).expect("fork").save();
    let values: Vec<(u8, Vec<u8>)> = std::iter::once((1, snapshot.clone()))
        .chain(
            changes[1..]
                .iter()
                .take(3)
                .map(|c| (0, c.raw_bytes().to_vec())),
        )
        .collect();
    out.push(("store", "snapshot-and-chunks".into(), store_seed(&values)));
    out.push((
        "store",
        "one-snapshot".into(),
        store_seed(&[(1, text.save())]),
    ));
    out.push((
        "store",
        "missing-dependency".into(),
        store_seed(&[(0, changes[changes.len() - 1].raw_bytes().to_vec())]),
    ));
    out.push((
        "store",
        "several-changes-one-chunk".into(),
        store_seed(&[(1, snapshot), (0, text.save_after(&[first]))]),
    ));
    let records = [
        &br#"{"seq":0,"article":"a1","pos":0,"insert":"I"}"#[..],
        br#"{"seq":1,"article":"a1","pos":1,"insert":"e"}"#,
    ];
    let file: Vec<u8> = records.iter().flat_map(|r| journal::encode(r)).collect();
    out.push(("journal", "two-records".into(), file.clone()));
    let mut torn = file.clone();
    torn.extend(&journal::encode(b"{\"seq\":2}")[..7]);
    out.push(("journal", "torn-tail".into(), torn));
    let mut zeros = file;
    zeros.extend([0; 24]);
    out.push(("journal", "zero-tail".into(), zeros));
    for (name, claims) in [
        (
            "valid",
            r#"{"sub":"anna","pid":"p1","role":"drafter","exp":"2999-01-01T00:00:00+00:00","gen":2}"#,
        ),
        (
            "expired",
            r#"{"sub":"anna","pid":"p1","role":"drafter","exp":"2001-01-01T00:00:00+00:00"}"#,
        ),
        (
            "bad-role",
            r#"{"sub":"anna","pid":"p1","role":"admin","exp":"2999-01-01T00:00:00+00:00"}"#,
        ),
        ("no-claims", r#"{"exp":"2999-01-01T00:00:00+00:00"}"#),
    ] {
        let mut signed = vec![1];
        signed.extend(claims.as_bytes());
        out.push(("token", format!("claims-{name}"), signed));
        let mut whole = vec![0];
        whole.extend(token::sign(claims.as_bytes()).expect("token").as_bytes());
        out.push(("token", format!("token-{name}"), whole));
    }
    out.push(("token", "garbage".into(), b"\x00v4.public.AAAA".to_vec()));
    let key = klad_sync::token::PublicKey::from(
        pasetors::keys::AsymmetricPublicKey::<pasetors::version4::V4>::from(
            &DeviceKey::from_seed([0x5e; 32]).public_key(),
        )
        .expect("key"),
    );
    let mut paserk = vec![2];
    paserk.extend(key.to_paserk().as_bytes());
    out.push(("token", "public-key".into(), paserk));
    out.extend(desk_seeds());
    out
}

/// `desk` seeds: each route's form as the desk's pages send it (route
/// index, sender byte, body; see `super::desk`).
fn desk_seeds() -> Vec<Seed> {
    let forms: &[(u8, &str, &str)] = &[
        (
            0,
            "comment",
            "csrf=CSRF&passage=buurt&text=Eens+hiermee&kind=comment",
        ),
        (
            0,
            "suggest",
            "csrf=CSRF&passage=buurt&text=Beter&kind=suggestion&wording=wijk",
        ),
        (
            1,
            "text",
            "csrf=CSRF&body=De+wijk+schrijft+zelf.%0D%0ANieuwe+regel.",
        ),
        (
            2,
            "answer",
            "csrf=CSRF&status=partly_adopted&reason=Deels+overgenomen",
        ),
        (3, "reply", "csrf=CSRF&text=Dank+voor+het+antwoord"),
        (4, "hide", "csrf=CSRF&reason=Kwetsend"),
        (5, "unhide", "csrf=CSRF&reason=Toch+niet"),
        (6, "invite", "csrf=CSRF&name=Nieuwe+bewoner&role=drafter"),
        (7, "phase", "csrf=CSRF&phase=consultation"),
        (
            8,
            "letter",
            "csrf=CSRF&person=Mevrouw+Jansen&article=ART&passage=buurt&text=Per+brief",
        ),
        (9, "checkin-done", "csrf=CSRF"),
        (10, "name-version", "csrf=CSRF&name=Versie+voor+de+raad"),
        (11, "language", "lang=en&csrf=CSRF"),
        (12, "sign-in", "token=v4.public.AAAA"),
        (13, "start", "title=Nieuw+proces&facilitator=Fien"),
        (
            14,
            "comment-bogus",
            "csrf=CSRF&passage=x&text=y&kind=comment",
        ),
        (15, "answer-bogus", "csrf=CSRF&status=noted&reason=z"),
        (16, "version-text", "at=0"),
        (17, "version-diff", "from=0&to=1"),
        (18, "article", "passage=buurt"),
        (19, "inbox", ""),
        (20, "members", ""),
        (21, "checkin", ""),
        (22, "letters", ""),
        (23, "versions", ""),
        (24, "export", ""),
        (25, "export-csv", ""),
        (26, "export-html", ""),
    ];
    let mut out = Vec::new();
    for (route, name, form) in forms {
        // The facilitator; the official; the facilitator's browser saying
        // it is the same site.
        for (who, by) in [(0u8, "facilitator"), (1, "official"), (4, "same-origin")] {
            let mut bytes = vec![*route, who];
            bytes.extend(form.as_bytes());
            out.push(("desk", format!("{name}-{by}"), bytes));
        }
    }
    out
}

/// A `store` seed of values (snapshot flag, bytes), each single chunk given
/// as its contents to be wrapped again.
fn store_seed(values: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![(values.len() as u8).saturating_sub(1)];
    for (i, (snapshot, bytes)) in values.iter().enumerate() {
        let (mode, payload) = bytes::unwrap(bytes);
        out.push(snapshot | (mode << 1));
        if i + 1 < values.len() {
            out.extend((payload.len() as u16).to_le_bytes());
        }
        out.extend(payload);
    }
    out
}
