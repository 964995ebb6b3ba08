//! The per-change authorship check (`klad_sync::authorship`), through its
//! public API only: a real process document made with klad-core (members,
//! devices with actor ids and Ed25519 keys), real Automerge changes written
//! with those actors, and real automerge-repo `sync` frames carrying them.

use std::collections::HashSet;

use automerge::sync::{
    ChunkList, Message as SyncMessage, MessageVersion, State as SyncState, SyncDoc,
};
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, Change, ChangeHash, ROOT, ReadDoc};
use ciborium::Value;
use klad_core::{
    ContributionsDoc, DocId, KladDocument, MemberId, NewMember, Phase, ProcessDoc, ProcessId,
    ReadOnlyReason, Role, TextDoc,
};
use klad_sync::access::Access;
use klad_sync::authorship::{
    self, Author, Device, DeviceKey, Judged, MAX_WAITING_SIGNATURES, Refusal, Registry, SIGNATURES,
    Sender, Signature, Signatures,
};
use klad_sync::wire::{self, FrameError};

/// A fixed clock (2026-01-05, ms).
const T0: i64 = 1_767_571_200_000;

// Devices: actor `[n; 16]`, signing key from the seed `[n; 32]`.
/// Anna's phone (drafter), with a key.
const ANNA_PHONE: u8 = 0xA1;
/// Anna's tablet, with its own key.
const ANNA_TABLET: u8 = 0xA2;
/// An old device of Anna's registered without a key.
const ANNA_OLD: u8 = 0xA3;
/// Bram's phone (drafter).
const BRAM_PHONE: u8 = 0xB1;
/// Olga's phone (official).
const OLGA_PHONE: u8 = 0xC1;
/// Otto's phone (observer).
const OTTO_PHONE: u8 = 0xD1;
/// Actors nobody has registered.
const STRANGER: u8 = 0xE1;
const STRANGER_2: u8 = 0xE2;

fn actor(n: u8) -> ActorId {
    ActorId::from([n; 16])
}

fn hex(n: u8) -> String {
    actor(n).to_hex_string()
}

fn key(n: u8) -> DeviceKey {
    DeviceKey::from_seed([n; 32])
}

/// A valid automerge-repo document id.
fn doc_id(n: u8) -> String {
    samod_core::DocumentId::try_from(vec![n; 16])
        .unwrap()
        .to_string()
}

/// A process with two drafters (Anna, Bram), an official (Olga) and an
/// observer (Otto), made with klad-core's process document.
struct World {
    pid: ProcessId,
    process: ProcessDoc,
    registry: Registry,
    anna: MemberId,
    bram: MemberId,
    olga: MemberId,
    otto: MemberId,
    text_id: String,
    /// The text document as everyone already has it (its creation change).
    text: Automerge,
}

impl World {
    fn new() -> World {
        let pid = ProcessId(doc_id(0x01));
        let text_id = doc_id(0x02);
        let mut process = ProcessDoc::create(
            T0,
            &pid,
            "Verordening Groene Buurt",
            &DocId(text_id.clone()),
        )
        .unwrap();
        let members = [
            (
                "anna",
                "Anna",
                Role::Drafter,
                0x11,
                &[ANNA_PHONE, ANNA_TABLET][..],
            ),
            ("bram", "Bram", Role::Drafter, 0x12, &[BRAM_PHONE][..]),
            ("olga", "Olga", Role::Official, 0x13, &[OLGA_PHONE][..]),
            ("otto", "Otto", Role::Observer, 0x14, &[OTTO_PHONE][..]),
        ];
        for (id, name, role, doc, devices) in members {
            let id = MemberId::from(id);
            process
                .add_member(
                    T0,
                    None,
                    &NewMember {
                        id: id.clone(),
                        name: name.into(),
                        role,
                        contributions_doc: DocId(doc_id(doc)),
                    },
                )
                .unwrap();
            for &d in devices {
                process
                    .register_device(T0, &id, &actor(d), Some(&key(d).public_key()))
                    .unwrap();
            }
        }
        process
            .register_device(T0, &MemberId::from("anna"), &actor(ANNA_OLD), None)
            .unwrap();
        let text = TextDoc::create(T0, &pid).unwrap().automerge().clone();
        World {
            registry: Registry::new(process.info().unwrap()),
            pid,
            process,
            anna: MemberId::from("anna"),
            bram: MemberId::from("bram"),
            olga: MemberId::from("olga"),
            otto: MemberId::from("otto"),
            text_id,
            text,
        }
    }

    fn set_phase(&mut self, phase: Phase) {
        self.process.set_phase(T0, None, phase).unwrap();
        self.registry = Registry::new(self.process.info().unwrap());
    }

    /// The id of `member`'s contributions document.
    fn contributions_id(&self, member: &MemberId) -> String {
        self.registry.info().members[member]
            .contributions_doc
            .as_str()
            .to_owned()
    }

    /// `member`'s contributions document as everyone already has it.
    fn contributions(&self, member: &MemberId) -> Automerge {
        ContributionsDoc::create(T0, &self.pid, member)
            .unwrap()
            .automerge()
            .clone()
    }

    /// Inspects `bytes` (which must carry changes) and judges them with this
    /// world's registry.
    fn judge(
        &self,
        bytes: &[u8],
        sender: &MemberId,
        may_register: bool,
        signatures: &Signatures,
        known: &HashSet<ChangeHash>,
    ) -> Judged {
        authorship::inspect(bytes)
            .unwrap()
            .expect("the frame carries changes")
            .judge(
                Some(&self.registry),
                Sender {
                    member: sender,
                    may_register,
                },
                signatures,
                known,
            )
    }

    /// Judges as a phone would (no registration), without signatures or known changes.
    fn judge_plain(&self, bytes: &[u8], sender: &MemberId) -> Judged {
        self.judge(
            bytes,
            sender,
            false,
            &Signatures::default(),
            &HashSet::new(),
        )
    }
}

/// The next change of `doc`, written with device `device`'s actor (it
/// depends on the document's heads).
fn edit(doc: &mut Automerge, device: u8, field: &str) -> Change {
    doc.set_actor(actor(device));
    let mut tx = doc.transaction();
    tx.put(ROOT, field, i64::from(device)).unwrap();
    let (hash, _) = tx.commit();
    doc.get_change_by_hash(&hash.unwrap()).unwrap()
}

/// The changes as a sync message of `version` carries them: one chunk per
/// change (V1) or one concatenated buffer (V2).
fn chunks(changes: &[&Change], version: MessageVersion) -> ChunkList {
    match version {
        MessageVersion::V1 => ChunkList::from(
            changes
                .iter()
                .map(|c| c.raw_bytes().to_vec())
                .collect::<Vec<Vec<u8>>>(),
        ),
        MessageVersion::V2 => ChunkList::from(
            changes
                .iter()
                .flat_map(|c| c.raw_bytes().iter().copied())
                .collect::<Vec<u8>>(),
        ),
    }
}

fn message(changes: ChunkList, heads: Vec<ChangeHash>, version: MessageVersion) -> SyncMessage {
    SyncMessage {
        heads,
        need: vec![],
        have: vec![],
        changes,
        flags: None,
        version,
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).unwrap();
    out
}

/// An automerge-repo frame of `kind` for `document` with sync data `data`.
fn repo_frame(kind: &str, document: Option<&str>, data: Option<Vec<u8>>) -> Vec<u8> {
    let mut entries = vec![
        (text("type"), text(kind)),
        (text("senderId"), text("anna:phone")),
        (text("targetId"), text("klad-server")),
    ];
    if let Some(d) = document {
        entries.push((text("documentId"), text(d)));
    }
    if let Some(data) = data {
        entries.push((text("data"), Value::Bytes(data)));
    }
    cbor(&Value::Map(entries))
}

fn sync_frame(document: &str, msg: SyncMessage) -> Vec<u8> {
    repo_frame("sync", Some(document), Some(msg.encode()))
}

/// A `sync` frame for `document` carrying `changes` (heads: the last one).
fn frame(document: &str, changes: &[&Change], version: MessageVersion) -> Vec<u8> {
    let heads = changes.last().map(|c| vec![c.hash()]).unwrap_or_default();
    sync_frame(
        document,
        message(chunks(changes, version.clone()), heads, version),
    )
}

/// What a (possibly rewritten) frame's sync message carries: its message,
/// its raw chunks and the hashes of the changes in them.
fn carried(bytes: &[u8]) -> (SyncMessage, Vec<Vec<u8>>, Vec<ChangeHash>) {
    let msg = wire::parse(bytes).unwrap().sync_message().unwrap().unwrap();
    let raw: Vec<Vec<u8>> = msg.changes.iter().map(<[u8]>::to_vec).collect();
    let joined = raw.concat();
    let hashes = if joined.is_empty() {
        vec![]
    } else {
        klad_core::chunks::decode_changes(&joined)
            .unwrap()
            .iter()
            .map(Change::hash)
            .collect()
    };
    (msg, raw, hashes)
}

/// The top-level CBOR fields of a frame other than `data`.
fn header_fields(bytes: &[u8]) -> Vec<(Value, Value)> {
    let Value::Map(entries) = ciborium::from_reader::<Value, _>(bytes).unwrap() else {
        panic!("not a map");
    };
    entries
        .into_iter()
        .filter(|(k, _)| k != &text("data"))
        .collect()
}

fn set<const N: usize>(hashes: [ChangeHash; N]) -> HashSet<ChangeHash> {
    hashes.into_iter().collect()
}

fn signatures(list: Vec<(ChangeHash, Signature)>) -> Signatures {
    let mut s = Signatures::default();
    s.add(list);
    s
}

/// True when `inspect` finds no changes in `bytes` (the frame passes as it is).
fn passes(bytes: &[u8]) -> bool {
    matches!(authorship::inspect(bytes), Ok(None))
}

const VERSIONS: [MessageVersion; 2] = [MessageVersion::V1, MessageVersion::V2];

// 1. A member's own device is attributed by the connection, and a frame whose
//    changes are all accepted passes byte for byte.
#[test]
fn own_devices_changes_are_the_senders_and_pass_unchanged() {
    let w = World::new();
    for version in VERSIONS {
        let mut doc = w.text.fork();
        let a = edit(&mut doc, ANNA_PHONE, "a");
        let b = edit(&mut doc, ANNA_TABLET, "b");
        // A device without a key is still the sender's own: no signature needed.
        let c = edit(&mut doc, ANNA_OLD, "c");
        let bytes = frame(&w.text_id, &[&a, &b, &c], version.clone());
        let inspected = authorship::inspect(&bytes).unwrap().unwrap();
        assert_eq!(inspected.document(), w.text_id);
        assert_eq!(inspected.hashes(), vec![a.hash(), b.hash(), c.hash()]);
        assert_eq!(inspected.changes().len(), 3);

        let judged = w.judge_plain(&bytes, &w.anna);
        assert_eq!(
            judged,
            Judged {
                accepted: vec![
                    (a.hash(), Author::Sender),
                    (b.hash(), Author::Sender),
                    (c.hash(), Author::Sender),
                ],
                new_devices: vec![],
                refused: vec![],
                known: 0,
            }
        );
        assert!(judged.forgery().is_none());
        let keep = judged.accepted.iter().map(|(h, _)| *h).collect();
        assert_eq!(inspected.retain(&bytes, &keep).unwrap(), bytes);
    }
    // Her own contributions document too.
    let mut doc = w.contributions(&w.anna);
    let a = edit(&mut doc, ANNA_PHONE, "comment");
    let bytes = frame(&w.contributions_id(&w.anna), &[&a], MessageVersion::V1);
    assert_eq!(
        w.judge_plain(&bytes, &w.anna).accepted,
        vec![(a.hash(), Author::Sender)]
    );
}

// 2. A change written with another member's device and sent without that
//    device's signature is a forgery, even where new devices may register.
#[test]
fn another_members_device_without_a_signature_is_a_forgery() {
    let w = World::new();
    let mut doc = w.text.fork();
    let a = edit(&mut doc, ANNA_PHONE, "a");
    let bytes = frame(&w.text_id, &[&a], MessageVersion::V1);
    for may_register in [false, true] {
        let judged = w.judge(
            &bytes,
            &w.bram,
            may_register,
            &Signatures::default(),
            &HashSet::new(),
        );
        assert!(judged.accepted.is_empty());
        assert!(judged.new_devices.is_empty());
        let refusal = (
            a.hash(),
            hex(ANNA_PHONE),
            Refusal::Unsigned {
                owner: w.anna.clone(),
            },
        );
        assert_eq!(judged.refused, vec![refusal.clone()]);
        assert_eq!(judged.forgery(), Some(&refusal));
        assert_eq!(refusal.2.label(), "forged_author");
        assert!(refusal.2.is_forgery());
    }
    // A signature for some other change does not cover this one.
    let mut other = w.text.fork();
    let unrelated = edit(&mut other, ANNA_TABLET, "x");
    let sigs = signatures(vec![(
        unrelated.hash(),
        key(ANNA_PHONE).sign(&unrelated.hash()),
    )]);
    let judged = w.judge(&bytes, &w.bram, false, &sigs, &HashSet::new());
    assert_eq!(
        judged.refused[0].2,
        Refusal::Unsigned {
            owner: w.anna.clone()
        }
    );
}

// 3. A change relayed with its device's signature (sent in a signatures frame)
//    is the signer's, and may go where the signer may write.
#[test]
fn a_signed_relay_is_attributed_to_the_signer() {
    let w = World::new();
    let mut doc = w.text.fork();
    let a = edit(&mut doc, ANNA_PHONE, "a");
    let a2 = edit(&mut doc, ANNA_TABLET, "a2");
    let list = vec![
        (a.hash(), key(ANNA_PHONE).sign(&a.hash())),
        (a2.hash(), key(ANNA_TABLET).sign(&a2.hash())),
    ];
    // The signatures frame round-trips and is recognised as one.
    let sig_frame = authorship::encode_signatures(&w.text_id, &list);
    let parsed = wire::parse(&sig_frame).unwrap();
    assert!(authorship::is_signatures(&parsed));
    assert_eq!(parsed.kind, SIGNATURES);
    assert_eq!(parsed.document_id.as_deref(), Some(w.text_id.as_str()));
    assert!(parsed.sync_message().unwrap().is_none());
    assert!(passes(&sig_frame));
    let received = authorship::parse_signatures(&sig_frame).unwrap();
    assert_eq!(received, list);
    let mut sigs = Signatures::default();
    sigs.add(received);
    assert_eq!(sigs.len(), 2);

    let bytes = frame(&w.text_id, &[&a, &a2], MessageVersion::V2);
    let judged = w.judge(&bytes, &w.bram, false, &sigs, &HashSet::new());
    assert_eq!(
        judged.accepted,
        vec![
            (a.hash(), Author::Signed(w.anna.clone())),
            (a2.hash(), Author::Signed(w.anna.clone())),
        ]
    );
    assert!(judged.refused.is_empty());
    let inspected = authorship::inspect(&bytes).unwrap().unwrap();
    assert_eq!(
        inspected
            .retain(&bytes, &set([a.hash(), a2.hash()]))
            .unwrap(),
        bytes
    );
    sigs.used(inspected.hashes());
    assert!(sigs.is_empty());

    // Anna's contributions, relayed by Bram: Anna may write there, Bram may not.
    let cdoc_id = w.contributions_id(&w.anna);
    let mut cdoc = w.contributions(&w.anna);
    let c = edit(&mut cdoc, ANNA_PHONE, "comment");
    let sigs = signatures(vec![(c.hash(), key(ANNA_PHONE).sign(&c.hash()))]);
    let bytes = frame(&cdoc_id, &[&c], MessageVersion::V1);
    let judged = w.judge(&bytes, &w.bram, false, &sigs, &HashSet::new());
    assert_eq!(
        judged.accepted,
        vec![(c.hash(), Author::Signed(w.anna.clone()))]
    );
    assert!(judged.refused.is_empty());
    // Contrast: Bram's own change to Anna's contributions is not allowed.
    let mut cdoc = w.contributions(&w.anna);
    let b = edit(&mut cdoc, BRAM_PHONE, "comment");
    let bytes = frame(&cdoc_id, &[&b], MessageVersion::V1);
    assert_eq!(
        w.judge_plain(&bytes, &w.bram).refused,
        vec![(
            b.hash(),
            hex(BRAM_PHONE),
            Refusal::NotAllowed {
                author: w.bram.clone(),
                access: Access::ReadOnly(ReadOnlyReason::AnotherMembersContributions),
            }
        )]
    );
}

// 4. Only the device's own key over this very change proves a relay: another
//    member's key, another device's key, a signature over another change, a
//    tampered signature, or a device without a key are all bad signatures.
#[test]
fn signatures_that_do_not_prove_the_device_are_refused() {
    let w = World::new();
    let mut doc = w.text.fork();
    let a = edit(&mut doc, ANNA_PHONE, "a");
    let other = edit(&mut doc, ANNA_PHONE, "other");
    let mut doc2 = w.text.fork();
    let old = edit(&mut doc2, ANNA_OLD, "old");
    let h = a.hash();
    let mut tampered = key(ANNA_PHONE).sign(&h);
    tampered[10] ^= 0x01;
    // (case, the change, the device that wrote it, the signature sent with it)
    let cases: Vec<(&str, &Change, u8, Signature)> = vec![
        (
            "another member's key",
            &a,
            ANNA_PHONE,
            key(BRAM_PHONE).sign(&h),
        ),
        (
            "the owner's other device",
            &a,
            ANNA_PHONE,
            key(ANNA_TABLET).sign(&h),
        ),
        (
            "a signature over another change",
            &a,
            ANNA_PHONE,
            key(ANNA_PHONE).sign(&other.hash()),
        ),
        ("a tampered signature", &a, ANNA_PHONE, tampered),
        ("all zeros", &a, ANNA_PHONE, [0; 64]),
        (
            "a device without a key",
            &old,
            ANNA_OLD,
            key(ANNA_OLD).sign(&old.hash()),
        ),
    ];
    for (case, change, device, sig) in cases {
        let bytes = frame(&w.text_id, &[change], MessageVersion::V1);
        let sigs = signatures(vec![(change.hash(), sig)]);
        let judged = w.judge(&bytes, &w.bram, false, &sigs, &HashSet::new());
        assert!(judged.accepted.is_empty(), "{case}");
        let refusal = (
            change.hash(),
            hex(device),
            Refusal::BadSignature {
                owner: w.anna.clone(),
            },
        );
        assert_eq!(judged.refused, vec![refusal.clone()], "{case}");
        assert_eq!(judged.forgery(), Some(&refusal), "{case}");
        assert_eq!(refusal.2.label(), "bad_signature");
    }
}

// 5. An actor nobody has registered becomes the sender's device where this side
//    may register devices (listed once, however many changes it wrote, and
//    only when something of it is accepted); elsewhere it is an unknown device.
#[test]
fn unregistered_actors_are_new_devices_or_unknown() {
    let w = World::new();
    let mut doc = w.text.fork();
    let s1 = edit(&mut doc, STRANGER, "1");
    let s2 = edit(&mut doc, STRANGER_2, "2");
    let s3 = edit(&mut doc, STRANGER, "3");
    let s4 = edit(&mut doc, STRANGER, "4");
    let bytes = frame(&w.text_id, &[&s1, &s2, &s3, &s4], MessageVersion::V1);
    let none = Signatures::default();
    let no_known = HashSet::new();

    let judged = w.judge(&bytes, &w.anna, true, &none, &no_known);
    assert_eq!(
        judged.accepted,
        [&s1, &s2, &s3, &s4]
            .iter()
            .map(|c| (c.hash(), Author::NewDevice))
            .collect::<Vec<_>>()
    );
    assert_eq!(judged.new_devices, vec![actor(STRANGER), actor(STRANGER_2)]);
    assert!(judged.refused.is_empty());

    let judged = w.judge(&bytes, &w.anna, false, &none, &no_known);
    assert!(judged.accepted.is_empty());
    assert!(judged.new_devices.is_empty());
    assert_eq!(
        judged.refused,
        vec![
            (s1.hash(), hex(STRANGER), Refusal::UnknownDevice),
            (s2.hash(), hex(STRANGER_2), Refusal::UnknownDevice),
            (s3.hash(), hex(STRANGER), Refusal::UnknownDevice),
            (s4.hash(), hex(STRANGER), Refusal::UnknownDevice),
        ]
    );
    assert!(judged.forgery().is_none());
    assert_eq!(Refusal::UnknownDevice.label(), "unknown_device");

    // An observer's new device writes nothing, and is not registered.
    let judged = w.judge(&bytes, &w.otto, true, &none, &no_known);
    assert!(judged.accepted.is_empty());
    assert!(judged.new_devices.is_empty());
    assert_eq!(judged.refused.len(), 4);
    assert_eq!(
        judged.refused[0].2,
        Refusal::NotAllowed {
            author: w.otto.clone(),
            access: Access::ReadOnly(ReadOnlyReason::Observer),
        }
    );

    // A new device whose only change depends on a refused one is not registered.
    let mut doc = w.text.fork();
    let forged = edit(&mut doc, BRAM_PHONE, "forged");
    let after = edit(&mut doc, STRANGER, "after");
    let bytes = frame(&w.text_id, &[&forged, &after], MessageVersion::V1);
    let judged = w.judge(&bytes, &w.anna, true, &none, &no_known);
    assert!(judged.accepted.is_empty());
    assert!(judged.new_devices.is_empty());
    assert_eq!(
        judged.refused,
        vec![
            (
                forged.hash(),
                hex(BRAM_PHONE),
                Refusal::Unsigned {
                    owner: w.bram.clone()
                }
            ),
            (after.hash(), hex(STRANGER), Refusal::DependsOnRefused),
        ]
    );
}

// 6. Access is decided for the author, not the relay: an official may not
//    write the text (own or relayed), may relay a drafter's signed text
//    change, and writes their own contributions. The phase and the process
//    document are respected too.
#[test]
fn access_is_the_authors() {
    let mut w = World::new();
    let mut doc = w.text.fork();
    let o = edit(&mut doc, OLGA_PHONE, "o");
    let bytes = frame(&w.text_id, &[&o], MessageVersion::V1);
    let olga_text = Refusal::NotAllowed {
        author: w.olga.clone(),
        access: Access::ReadOnly(ReadOnlyReason::TextNotADrafter),
    };
    let judged = w.judge_plain(&bytes, &w.olga);
    assert!(judged.accepted.is_empty());
    assert_eq!(
        judged.refused,
        vec![(o.hash(), hex(OLGA_PHONE), olga_text.clone())]
    );
    assert!(judged.forgery().is_none());
    assert!(!olga_text.is_forgery());
    assert_eq!(olga_text.label(), "text_not_a_drafter");

    // Olga relays Anna's signed text change.
    let mut doc = w.text.fork();
    let a = edit(&mut doc, ANNA_PHONE, "a");
    let sigs = signatures(vec![(a.hash(), key(ANNA_PHONE).sign(&a.hash()))]);
    let bytes = frame(&w.text_id, &[&a], MessageVersion::V1);
    let judged = w.judge(&bytes, &w.olga, false, &sigs, &HashSet::new());
    assert_eq!(
        judged.accepted,
        vec![(a.hash(), Author::Signed(w.anna.clone()))]
    );
    assert!(judged.refused.is_empty());

    // Anna relays Olga's signed text change: Olga may not write the text.
    let sigs = signatures(vec![(o.hash(), key(OLGA_PHONE).sign(&o.hash()))]);
    let bytes = frame(&w.text_id, &[&o], MessageVersion::V1);
    let judged = w.judge(&bytes, &w.anna, false, &sigs, &HashSet::new());
    assert!(judged.accepted.is_empty());
    assert_eq!(judged.refused, vec![(o.hash(), hex(OLGA_PHONE), olga_text)]);

    // Olga writes her own contributions.
    let mut cdoc = w.contributions(&w.olga);
    let c = edit(&mut cdoc, OLGA_PHONE, "answer");
    let bytes = frame(&w.contributions_id(&w.olga), &[&c], MessageVersion::V1);
    assert_eq!(
        w.judge_plain(&bytes, &w.olga).accepted,
        vec![(c.hash(), Author::Sender)]
    );

    // Nobody but the server writes the process document.
    let mut pdoc = w.process.automerge().clone();
    let p = edit(&mut pdoc, ANNA_PHONE, "title");
    let bytes = frame(w.pid.as_str(), &[&p], MessageVersion::V1);
    assert_eq!(
        w.judge_plain(&bytes, &w.anna).refused,
        vec![(
            p.hash(),
            hex(ANNA_PHONE),
            Refusal::NotAllowed {
                author: w.anna.clone(),
                access: Access::ReadOnly(ReadOnlyReason::ProcessDocument),
            }
        )]
    );

    // After drafting, even a drafter's own text change is refused.
    w.set_phase(Phase::Consultation);
    let mut doc = w.text.fork();
    let late = edit(&mut doc, ANNA_PHONE, "late");
    let bytes = frame(&w.text_id, &[&late], MessageVersion::V1);
    assert_eq!(
        w.judge_plain(&bytes, &w.anna).refused,
        vec![(
            late.hash(),
            hex(ANNA_PHONE),
            Refusal::NotAllowed {
                author: w.anna.clone(),
                access: Access::ReadOnly(ReadOnlyReason::TextOutsideDrafting),
            }
        )]
    );
}

// 7. Whatever depends on a refused change is refused too (transitively, in
//    any message order), and `retain` rewrites the frame to carry exactly the
//    accepted changes, in the form of the message's version.
#[test]
fn dependents_of_refused_changes_are_refused_and_cut_from_the_frame() {
    let w = World::new();
    let mut doc = w.text.fork();
    let z1 = edit(&mut doc, ANNA_PHONE, "z1");
    let z2 = edit(&mut doc, ANNA_PHONE, "z2");
    let x = edit(&mut doc, BRAM_PHONE, "x"); // unsigned: refused
    let y = edit(&mut doc, ANNA_TABLET, "y"); // depends on x
    let y2 = edit(&mut doc, ANNA_PHONE, "y2"); // depends on y
    assert!(y.deps().contains(&x.hash()));
    assert!(y2.deps().contains(&y.hash()));
    let forged = (
        x.hash(),
        hex(BRAM_PHONE),
        Refusal::Unsigned {
            owner: w.bram.clone(),
        },
    );
    let dep_y = (y.hash(), hex(ANNA_TABLET), Refusal::DependsOnRefused);
    let dep_y2 = (y2.hash(), hex(ANNA_PHONE), Refusal::DependsOnRefused);
    assert_eq!(Refusal::DependsOnRefused.label(), "depends_on_refused");
    assert!(!Refusal::DependsOnRefused.is_forgery());

    for version in VERSIONS {
        let bytes = frame(&w.text_id, &[&z1, &z2, &x, &y, &y2], version.clone());
        let judged = w.judge_plain(&bytes, &w.anna);
        assert_eq!(
            judged.accepted,
            vec![(z1.hash(), Author::Sender), (z2.hash(), Author::Sender)]
        );
        assert_eq!(
            judged.refused,
            vec![forged.clone(), dep_y.clone(), dep_y2.clone()]
        );
        assert_eq!(judged.forgery(), Some(&forged));

        let inspected = authorship::inspect(&bytes).unwrap().unwrap();
        let keep: HashSet<_> = judged.accepted.iter().map(|(h, _)| *h).collect();
        let out = inspected.retain(&bytes, &keep).unwrap();
        assert_ne!(out, bytes);
        let (msg, raw, hashes) = carried(&out);
        assert_eq!(msg.version, version);
        assert_eq!(hashes, vec![z1.hash(), z2.hash()]);
        match version {
            MessageVersion::V1 => {
                assert_eq!(raw, vec![z1.raw_bytes().to_vec(), z2.raw_bytes().to_vec()])
            }
            MessageVersion::V2 => {
                assert_eq!(raw, vec![[z1.raw_bytes(), z2.raw_bytes()].concat()])
            }
        }
        // Everything but the changes is as the sender wrote it.
        assert_eq!(msg.heads, vec![y2.hash()]);
        assert_eq!(header_fields(&out), header_fields(&bytes));
        // What goes on passes the check whole.
        let again = w.judge_plain(&out, &w.anna);
        assert_eq!(again.accepted, judged.accepted);
        assert!(again.refused.is_empty());

        // Keeping nothing leaves a sync message without changes.
        let empty = inspected.retain(&bytes, &HashSet::new()).unwrap();
        assert!(passes(&empty));
        let (msg, raw, _) = carried(&empty);
        assert!(raw.is_empty());
        assert_eq!(msg.heads, vec![y2.hash()]);

        // In reverse order, the chain is still found (refusals in message order).
        let bytes = frame(&w.text_id, &[&y2, &y, &x, &z2, &z1], version.clone());
        let judged = w.judge_plain(&bytes, &w.anna);
        assert_eq!(
            judged.accepted,
            vec![(z2.hash(), Author::Sender), (z1.hash(), Author::Sender)]
        );
        assert_eq!(
            judged.refused,
            vec![dep_y2.clone(), dep_y.clone(), forged.clone()]
        );
        let inspected = authorship::inspect(&bytes).unwrap().unwrap();
        let out = inspected.retain(&bytes, &keep).unwrap();
        assert_eq!(carried(&out).2, vec![z2.hash(), z1.hash()]);
    }
}

// 8. Changes the recipient already has are counted as known and judged
//    neither way, so they never make a frame (or its dependents) refused.
#[test]
fn known_changes_are_not_judged_again() {
    let w = World::new();
    let mut doc = w.text.fork();
    let b = edit(&mut doc, BRAM_PHONE, "b"); // Bram's, unsigned
    let o = edit(&mut doc, OLGA_PHONE, "o"); // not allowed in the text
    let a = edit(&mut doc, ANNA_PHONE, "a"); // Anna's own, after both
    let bytes = frame(&w.text_id, &[&b, &o, &a], MessageVersion::V1);
    let known = set([b.hash(), o.hash()]);
    let judged = w.judge(&bytes, &w.anna, false, &Signatures::default(), &known);
    assert_eq!(judged.known, 2);
    assert_eq!(judged.accepted, vec![(a.hash(), Author::Sender)]);
    assert!(judged.refused.is_empty());
    assert!(judged.forgery().is_none());
    // Keeping what was accepted and what is known keeps the frame as it is.
    let inspected = authorship::inspect(&bytes).unwrap().unwrap();
    let keep = set([a.hash(), b.hash(), o.hash()]);
    assert_eq!(inspected.retain(&bytes, &keep).unwrap(), bytes);
    // Without the known set, the same frame is a forgery.
    let judged = w.judge_plain(&bytes, &w.anna);
    assert_eq!(judged.known, 0);
    assert_eq!(judged.refused.len(), 3);
    assert!(judged.forgery().is_some());
}

// 9. A document that is not one of the process's, or no process at all,
//    accepts nothing from anyone.
#[test]
fn documents_outside_the_process_accept_nothing() {
    let w = World::new();
    let elsewhere = doc_id(0x77);
    let mut doc = w.text.fork();
    let a = edit(&mut doc, ANNA_PHONE, "a");
    let b = edit(&mut doc, BRAM_PHONE, "b");
    let s = edit(&mut doc, STRANGER, "s");
    let sigs = signatures(vec![(b.hash(), key(BRAM_PHONE).sign(&b.hash()))]);
    let bytes = frame(&elsewhere, &[&a, &b, &s], MessageVersion::V1);
    let no_access = |author: &MemberId| Refusal::NotAllowed {
        author: author.clone(),
        access: Access::None,
    };
    let judged = w.judge(&bytes, &w.anna, true, &sigs, &HashSet::new());
    assert!(judged.accepted.is_empty());
    assert!(judged.new_devices.is_empty());
    assert_eq!(
        judged.refused,
        vec![
            (a.hash(), hex(ANNA_PHONE), no_access(&w.anna)),
            (b.hash(), hex(BRAM_PHONE), no_access(&w.bram)),
            (s.hash(), hex(STRANGER), no_access(&w.anna)),
        ]
    );
    assert_eq!(no_access(&w.anna).label(), "no_access");
    assert!(judged.forgery().is_none());

    // No registry: the document belongs to no process here.
    let bytes = frame(&w.text_id, &[&a, &b, &s], MessageVersion::V2);
    let judged = authorship::inspect(&bytes).unwrap().unwrap().judge(
        None,
        Sender {
            member: &w.anna,
            may_register: true,
        },
        &sigs,
        &HashSet::new(),
    );
    assert!(judged.accepted.is_empty());
    assert!(judged.new_devices.is_empty());
    assert_eq!(judged.refused.len(), 3);
    for (_, _, r) in &judged.refused {
        assert_eq!(r, &no_access(&w.anna));
    }

    // Someone who is not a member writes nothing, even on a fresh device.
    let outsider = MemberId::from("mallory");
    let bytes = frame(&w.text_id, &[&s], MessageVersion::V1);
    let judged = w.judge(
        &bytes,
        &outsider,
        true,
        &Signatures::default(),
        &HashSet::new(),
    );
    assert_eq!(
        judged.refused,
        vec![(s.hash(), hex(STRANGER), no_access(&outsider))]
    );
    assert!(judged.new_devices.is_empty());
}

// 10. A V2 message carrying a whole document (`save()`), as Automerge sends
//     when it sends much of a document, is decoded into its single changes and
//     each is judged; `retain` turns it into the accepted changes.
#[test]
fn whole_documents_in_v2_messages_are_judged_change_by_change() {
    let w = World::new();
    let base: Vec<ChangeHash> = w.text.get_heads();
    let mut doc = w.text.fork();
    let c1 = edit(&mut doc, ANNA_PHONE, "c1");
    let c2 = edit(&mut doc, ANNA_TABLET, "c2");
    let b = edit(&mut doc, BRAM_PHONE, "b");
    let c3 = edit(&mut doc, ANNA_PHONE, "c3");
    let saved = doc.save();
    let bytes = sync_frame(
        &w.text_id,
        message(ChunkList::from(saved), doc.get_heads(), MessageVersion::V2),
    );
    let inspected = authorship::inspect(&bytes).unwrap().unwrap();
    let mut all = inspected.hashes();
    all.sort();
    let mut expected: Vec<ChangeHash> = doc.get_changes(&[]).iter().map(Change::hash).collect();
    expected.sort();
    assert_eq!(all, expected);
    assert_eq!(all.len(), 5);

    let known: HashSet<ChangeHash> = base.iter().copied().collect();
    let judged = w.judge(&bytes, &w.anna, false, &Signatures::default(), &known);
    assert_eq!(judged.known, 1);
    let accepted: HashSet<_> = judged.accepted.iter().map(|(h, _)| *h).collect();
    assert_eq!(accepted, set([c1.hash(), c2.hash()]));
    assert!(judged.accepted.iter().all(|(_, a)| *a == Author::Sender));
    assert_eq!(judged.refused.len(), 2);
    assert!(judged.refused.contains(&(
        b.hash(),
        hex(BRAM_PHONE),
        Refusal::Unsigned {
            owner: w.bram.clone()
        }
    )));
    assert!(
        judged
            .refused
            .contains(&(c3.hash(), hex(ANNA_PHONE), Refusal::DependsOnRefused))
    );

    let mut keep = accepted.clone();
    keep.extend(known.iter().copied());
    let out = inspected.retain(&bytes, &keep).unwrap();
    let (msg, raw, hashes) = carried(&out);
    assert_eq!(msg.version, MessageVersion::V2);
    assert_eq!(raw.len(), 1);
    assert_eq!(hashes.iter().copied().collect::<HashSet<_>>(), keep);
    assert_eq!(hashes.len(), 3);
}

// 10b. The same through Automerge's own sync protocol: the message it really
//      sends (a V2 whole document) is judged change by change.
#[test]
fn a_real_automerge_v2_message_is_judged() {
    let w = World::new();
    let mut source = w.text.fork();
    let c1 = edit(&mut source, ANNA_PHONE, "c1");
    let c2 = edit(&mut source, ANNA_PHONE, "c2");
    let c3 = edit(&mut source, ANNA_TABLET, "c3");
    let mut peer = w.text.fork();
    let (mut source_state, mut peer_state) = (SyncState::new(), SyncState::new());
    let mut sent = None;
    for _ in 0..10 {
        if let Some(m) = peer.generate_sync_message(&mut peer_state) {
            source.receive_sync_message(&mut source_state, m).unwrap();
        }
        match source.generate_sync_message(&mut source_state) {
            Some(m) if !m.changes.is_empty() => {
                sent = Some(m);
                break;
            }
            Some(m) => peer.receive_sync_message(&mut peer_state, m).unwrap(),
            None => {}
        }
    }
    let msg = sent.expect("automerge sends the changes");
    assert_eq!(msg.version, MessageVersion::V2);
    // The whole document, not the three changes.
    let raw: Vec<&[u8]> = msg.changes.iter().collect();
    assert_eq!(raw, vec![source.save().as_slice()]);
    let bytes = sync_frame(&w.text_id, msg);
    let known: HashSet<ChangeHash> = w.text.get_heads().into_iter().collect();
    let judged = w.judge(&bytes, &w.anna, false, &Signatures::default(), &known);
    let accepted: HashSet<_> = judged.accepted.iter().map(|(h, _)| *h).collect();
    assert_eq!(accepted, set([c1.hash(), c2.hash(), c3.hash()]));
    assert!(judged.refused.is_empty());
    assert_eq!(
        judged.known + judged.accepted.len(),
        source.get_changes(&[]).len()
    );
    // Sent by Bram, none of it is his.
    let judged = w.judge(&bytes, &w.bram, false, &Signatures::default(), &known);
    assert!(judged.accepted.is_empty());
    assert_eq!(judged.refused.len(), 3);
    assert!(judged.forgery().is_some());
}

// 11. Frames without changes pass untouched (`Ok(None)`); sync data or
//     changes that cannot be read, and malformed signature lists, are errors.
#[test]
fn frames_without_changes_pass_and_garbage_is_an_error() {
    let w = World::new();
    let doc = w.text_id.as_str();
    // No changes.
    assert!(passes(&repo_frame("join", None, None)));
    assert!(passes(&repo_frame(
        "ephemeral",
        Some(doc),
        Some(b"anything".to_vec())
    )));
    assert!(passes(&repo_frame("sync", Some(doc), None)));
    for version in VERSIONS {
        for kind in ["sync", "request"] {
            let msg = message(ChunkList::empty(), w.text.get_heads(), version.clone());
            let bytes = repo_frame(kind, Some(doc), Some(msg.encode()));
            assert!(passes(&bytes), "{kind}");
        }
    }
    // Garbage.
    assert_eq!(
        authorship::inspect(b"\xff\x00not cbor").unwrap_err(),
        FrameError::NotAMessage
    );
    assert_eq!(
        authorship::inspect(&repo_frame("sync", Some(doc), Some(b"garbage".to_vec()))).unwrap_err(),
        FrameError::BadSyncData
    );
    let mut d = w.text.fork();
    let a = edit(&mut d, ANNA_PHONE, "a");
    let bad = |chunk: Vec<u8>| {
        let msg = message(ChunkList::from(vec![chunk]), vec![], MessageVersion::V1);
        authorship::inspect(&sync_frame(doc, msg)).unwrap_err()
    };
    let e = bad(vec![1, 2, 3]);
    assert!(matches!(e, FrameError::BadChanges(_)), "{e:?}");
    assert_eq!(e.label(), "bad_changes");
    let mut flipped = a.raw_bytes().to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    assert!(matches!(bad(flipped), FrameError::BadChanges(_)));
    let truncated = a.raw_bytes()[..a.raw_bytes().len() - 3].to_vec();
    assert!(matches!(bad(truncated), FrameError::BadChanges(_)));
    // Changes without a document.
    let msg = message(
        chunks(&[&a], MessageVersion::V1),
        vec![],
        MessageVersion::V1,
    );
    assert_eq!(
        authorship::inspect(&repo_frame("sync", None, Some(msg.encode()))).unwrap_err(),
        FrameError::BadDocumentId
    );
    let msg = message(
        chunks(&[&a], MessageVersion::V1),
        vec![],
        MessageVersion::V1,
    );
    assert_eq!(
        authorship::inspect(&repo_frame(
            "sync",
            Some("not-a-document"),
            Some(msg.encode())
        ))
        .unwrap_err(),
        FrameError::BadDocumentId
    );

    // Signature lists.
    let h = a.hash();
    let sig = key(ANNA_PHONE).sign(&h);
    let sig_frame = |list: Value| {
        cbor(&Value::Map(vec![
            (text("type"), text(SIGNATURES)),
            (text("documentId"), text(doc)),
            (text("signatures"), list),
        ]))
    };
    let pair = |h: Vec<u8>, s: Vec<u8>| Value::Array(vec![Value::Bytes(h), Value::Bytes(s)]);
    assert_eq!(
        authorship::parse_signatures(&sig_frame(Value::Array(vec![]))),
        Ok(vec![])
    );
    assert_eq!(
        authorship::parse_signatures(&sig_frame(Value::Array(vec![pair(
            h.as_ref().to_vec(),
            sig.to_vec()
        )]))),
        Ok(vec![(h, sig)])
    );
    let malformed = [
        ("not a list", sig_frame(Value::Bytes(sig.to_vec()))),
        (
            "an item that is not a pair",
            sig_frame(Value::Array(vec![Value::Bytes(h.as_ref().to_vec())])),
        ),
        (
            "a short hash",
            sig_frame(Value::Array(vec![pair(
                h.as_ref()[..31].to_vec(),
                sig.to_vec(),
            )])),
        ),
        (
            "a short signature",
            sig_frame(Value::Array(vec![pair(
                h.as_ref().to_vec(),
                sig[..63].to_vec(),
            )])),
        ),
        (
            "a long signature",
            sig_frame(Value::Array(vec![pair(
                h.as_ref().to_vec(),
                [0; 65].to_vec(),
            )])),
        ),
        (
            "a triple",
            sig_frame(Value::Array(vec![Value::Array(vec![
                Value::Bytes(h.as_ref().to_vec()),
                Value::Bytes(sig.to_vec()),
                Value::Bytes(vec![]),
            ])])),
        ),
        (
            "text instead of bytes",
            sig_frame(Value::Array(vec![Value::Array(vec![
                text("hash"),
                Value::Bytes(sig.to_vec()),
            ])])),
        ),
        (
            "a good pair after a bad one",
            sig_frame(Value::Array(vec![
                pair(vec![0; 5], sig.to_vec()),
                pair(h.as_ref().to_vec(), sig.to_vec()),
            ])),
        ),
        (
            "no list",
            cbor(&Value::Map(vec![(text("type"), text(SIGNATURES))])),
        ),
    ];
    for (case, bytes) in malformed {
        assert_eq!(
            authorship::parse_signatures(&bytes),
            Err(FrameError::BadSignatures),
            "{case}"
        );
    }
    assert_eq!(FrameError::BadSignatures.label(), "bad_signatures");
    assert_eq!(
        authorship::parse_signatures(b"\xff garbage"),
        Err(FrameError::NotAMessage)
    );
    assert_eq!(
        authorship::parse_signatures(&cbor(&Value::Array(vec![]))),
        Err(FrameError::NotAMessage)
    );
}

// 12. A device's signature verifies with its public key over exactly that
//     change, and with nothing else.
#[test]
fn signatures_verify_only_for_their_key_and_change() {
    let w = World::new();
    let mut doc = w.text.fork();
    let a = edit(&mut doc, ANNA_PHONE, "a");
    let b = edit(&mut doc, ANNA_PHONE, "b");
    let k = key(ANNA_PHONE);
    let pk = k.public_key();
    let sig = k.sign(&a.hash());
    assert!(authorship::verify(&pk, &a.hash(), &sig));
    assert_eq!(sig, key(ANNA_PHONE).sign(&a.hash()), "deterministic");
    assert!(!authorship::verify(&pk, &b.hash(), &sig));
    assert!(!authorship::verify(
        &key(BRAM_PHONE).public_key(),
        &a.hash(),
        &sig
    ));
    for i in [0, 31, 32, 63] {
        let mut tampered = sig;
        tampered[i] ^= 0x80;
        assert!(!authorship::verify(&pk, &a.hash(), &tampered), "byte {i}");
    }

    // The signed bytes are the documented context then the 32-byte hash, so
    // any Ed25519 implementation can produce them (checked with the crate
    // directly); a signature over the bare hash is not a change signature.
    let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([ANNA_PHONE; 32]));
    assert_eq!(*pair.pk, pk);
    let signed = [b"klad-change-signature-v1:".as_slice(), a.hash().as_ref()].concat();
    assert_eq!(*pair.sk.sign(&signed, None), sig);
    let bare = *pair.sk.sign(a.hash().as_ref(), None);
    assert!(!authorship::verify(&pk, &a.hash(), &bare));

    // Keys as the process document records them (hex) parse back.
    let recorded = &w.registry.info().members[&w.anna].device_keys[&hex(ANNA_PHONE)];
    assert_eq!(authorship::parse_key(recorded), Some(pk));
    assert_eq!(authorship::parse_key(&recorded.to_uppercase()), Some(pk));
    for bad in [
        "",
        "abc",
        &recorded[..62],
        &format!("{recorded}00"),
        &"zz".repeat(32),
    ] {
        assert_eq!(authorship::parse_key(bad), None, "{bad:?}");
    }
}

// The registry indexes devices by actor, with their member and key.
#[test]
fn the_registry_knows_every_device() {
    let w = World::new();
    let r = &w.registry;
    assert_eq!(
        r.device(&hex(ANNA_PHONE)),
        Some(&Device {
            member: w.anna.clone(),
            key: Some(key(ANNA_PHONE).public_key()),
        })
    );
    assert_eq!(
        r.device(&hex(ANNA_TABLET)).map(|d| d.key),
        Some(Some(key(ANNA_TABLET).public_key()))
    );
    assert_eq!(
        r.device(&hex(ANNA_OLD)),
        Some(&Device {
            member: w.anna.clone(),
            key: None,
        })
    );
    assert_eq!(
        r.device(&hex(OLGA_PHONE)).map(|d| d.member.clone()),
        Some(w.olga.clone())
    );
    assert_eq!(r.device(&hex(STRANGER)), None);
    assert_eq!(r.name(&w.bram), "Bram");
    assert_eq!(r.name(&MemberId::from("ghost")), "ghost");
    assert_eq!(r.info(), &w.process.info().unwrap());
}

// A signature for a change of the sender's own device changes nothing (the
// connection attributes it); signatures are kept per change until used.
#[test]
fn own_changes_need_no_signature_and_signatures_wait_until_used() {
    let w = World::new();
    let mut doc = w.text.fork();
    let a = edit(&mut doc, ANNA_PHONE, "a");
    let bogus = signatures(vec![(a.hash(), [7; 64])]);
    let bytes = frame(&w.text_id, &[&a], MessageVersion::V1);
    let judged = w.judge(&bytes, &w.anna, false, &bogus, &HashSet::new());
    assert_eq!(judged.accepted, vec![(a.hash(), Author::Sender)]);

    let mut sigs = Signatures::default();
    assert!(sigs.is_empty());
    let sig = key(ANNA_PHONE).sign(&a.hash());
    sigs.add(vec![(a.hash(), sig)]);
    assert_eq!(sigs.get(&a.hash()), Some(&sig));
    sigs.used([a.hash()]);
    assert_eq!(sigs.get(&a.hash()), None);
    assert!(sigs.is_empty());
    // Once used, a relay of the same change is no longer signed.
    assert_eq!(
        w.judge(&bytes, &w.bram, false, &sigs, &HashSet::new())
            .refused[0]
            .2,
        Refusal::Unsigned {
            owner: w.anna.clone()
        }
    );
}

// A sender that floods signatures loses the waiting ones: its relayed changes
// are then refused, never wrongly accepted, and the store stays bounded.
#[test]
fn flooding_signatures_loses_waiting_ones() {
    let w = World::new();
    let mut doc = w.text.fork();
    let a = edit(&mut doc, ANNA_PHONE, "a");
    let mut sigs = signatures(vec![(a.hash(), key(ANNA_PHONE).sign(&a.hash()))]);
    let filler = |n: usize| -> Vec<(ChangeHash, Signature)> {
        (0..n)
            .map(|i| {
                let mut h = [0u8; 32];
                h[..8].copy_from_slice(&(i as u64).to_le_bytes());
                (ChangeHash(h), [0; 64])
            })
            .collect()
    };
    sigs.add(filler(MAX_WAITING_SIGNATURES));
    assert!(sigs.len() <= MAX_WAITING_SIGNATURES);
    assert_eq!(sigs.get(&a.hash()), None);
    let bytes = frame(&w.text_id, &[&a], MessageVersion::V1);
    assert_eq!(
        w.judge(&bytes, &w.bram, false, &sigs, &HashSet::new())
            .refused[0]
            .2,
        Refusal::Unsigned {
            owner: w.anna.clone()
        }
    );
}

// The first forgery of a message is the first in message order, whatever
// other refusals come before it.
#[test]
fn the_first_forgery_is_reported() {
    let w = World::new();
    let mut doc = w.text.fork();
    let o = edit(&mut doc, OLGA_PHONE, "o"); // not allowed
    let bad = edit(&mut doc, BRAM_PHONE, "bad"); // bad signature
    let unsigned = edit(&mut doc, BRAM_PHONE, "unsigned"); // unsigned
    let sigs = signatures(vec![
        (o.hash(), key(OLGA_PHONE).sign(&o.hash())),
        (bad.hash(), key(ANNA_PHONE).sign(&bad.hash())),
    ]);
    let bytes = frame(&w.text_id, &[&o, &bad, &unsigned], MessageVersion::V1);
    let judged = w.judge(&bytes, &w.anna, false, &sigs, &HashSet::new());
    assert!(judged.accepted.is_empty());
    let kinds: Vec<_> = judged.refused.iter().map(|(_, _, r)| r.label()).collect();
    assert_eq!(
        kinds,
        ["text_not_a_drafter", "bad_signature", "forged_author"]
    );
    assert_eq!(
        judged.forgery(),
        Some(&(
            bad.hash(),
            hex(BRAM_PHONE),
            Refusal::BadSignature {
                owner: w.bram.clone()
            }
        ))
    );
}

// A change sent as a compressed chunk (as `Change::bytes` makes of a large
// one) is judged like any other and survives `retain`.
#[test]
fn compressed_changes_are_judged_and_kept() {
    let w = World::new();
    let mut doc = w.text.fork();
    doc.set_actor(actor(ANNA_PHONE));
    let mut tx = doc.transaction();
    tx.put(ROOT, "long", "an article body ".repeat(200))
        .unwrap();
    let (hash, _) = tx.commit();
    let mut a = doc.get_change_by_hash(&hash.unwrap()).unwrap();
    let compressed = a.bytes().into_owned();
    assert!(
        compressed.len() < a.raw_bytes().len(),
        "the chunk is compressed"
    );
    let mut other = w.text.fork();
    let x = edit(&mut other, BRAM_PHONE, "x");
    let msg = message(
        ChunkList::from(vec![compressed, x.raw_bytes().to_vec()]),
        vec![a.hash(), x.hash()],
        MessageVersion::V1,
    );
    let bytes = sync_frame(&w.text_id, msg);
    let inspected = authorship::inspect(&bytes).unwrap().unwrap();
    assert_eq!(inspected.hashes(), vec![a.hash(), x.hash()]);
    let judged = w.judge_plain(&bytes, &w.anna);
    assert_eq!(judged.accepted, vec![(a.hash(), Author::Sender)]);
    assert_eq!(judged.refused.len(), 1);
    let out = inspected.retain(&bytes, &set([a.hash()])).unwrap();
    assert_eq!(carried(&out).2, vec![a.hash()]);
}
