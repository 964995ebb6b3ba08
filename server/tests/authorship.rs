//! Rule 3, change by change, against a client none of us wrote: the
//! JavaScript automerge-repo (server/interop/writer.mjs) writing in another
//! member's name is disconnected with a sentence, its change is neither
//! stored nor forwarded, and the real author's edit at the same sequence
//! number is stored afterwards and reaches the others (before the check, the
//! forged change took the sequence number and the author's was lost).

mod common;

use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(30);

fn body_of(text: &samod::DocHandle, article: &klad_core::ArticleId) -> Option<String> {
    articles(text)
        .into_iter()
        .find(|(id, _)| id == article)
        .map(|(_, b)| b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_client_writing_in_another_members_name_is_refused_and_the_author_keeps_their_sequence_number()
 {
    assert!(node_available(), "node is required for this test");
    let mut server = Server::start(&[]).await;
    let process = server.create_process("Naamvervalsing");
    let anna = server.invite(&process, "Anna", "drafter");
    let bram = server.invite(&process, "Bram", "drafter");
    let cas = server.invite(&process, "Cas", "drafter");
    // Anna's device writes with this actor and declares it when it connects.
    let anna_actor = "a11ce0a11ce0a11ce0a11ce0a11ce0a1";
    let anna_url = format!("{}&actor={anna_actor}", server.ws_url(&anna.token));

    // Cas (Rust) writes the article and watches everything that arrives.
    let c = Client::connect(&server, &cas).await;
    let c_process = c.must_find(&process.id).await;
    let c_text = c.must_find(&process.text_doc).await;
    let article = edit_text(&c_process, &c_text, &cas.id, |s| {
        s.create_article(1, None, "Artikel 1", "Honden worden aangelijnd.")
    });

    // Anna writes once: her actor is registered as hers, at sequence 1.
    let mut a = Node::writer(&anna_url, &anna, &process, anna_actor, "A1 ");
    assert_eq!(a.expect("EDITED").await, "1");
    eventually(LIMIT, "Anna's first edit to reach Cas", || {
        body_of(&c_text, &article).filter(|b| b.starts_with("A1 "))
    })
    .await;
    a.finish().await;

    // Bram, with his own token, writes Anna's next change (sequence 2).
    let mut b = Node::writer(
        &server.ws_url(&bram.token),
        &bram,
        &process,
        anna_actor,
        "FORGED ",
    );
    assert_eq!(b.expect("EDITED").await, "2");
    let closed = b.expect("CLOSED").await;
    assert!(
        closed.starts_with("1008 "),
        "closed with the policy code: {closed}"
    );
    assert!(
        closed.contains("device id of Anna") && closed.contains("without their signature"),
        "the close reason says whose name was used: {closed}"
    );
    assert!(
        server
            .metric("klad_refused_changes_total{reason=\"forged_author\"}")
            .await
            >= 1
    );
    b.finish().await;

    // Anna's real edit at the same sequence number is stored and reaches Cas.
    let mut a = Node::writer(&anna_url, &anna, &process, anna_actor, "A2 ");
    assert_eq!(a.expect("EDITED").await, "2");
    let body = eventually(LIMIT, "Anna's second edit to reach Cas", || {
        body_of(&c_text, &article).filter(|b| b.starts_with("A2 "))
    })
    .await;
    assert!(
        !body.contains("FORGED"),
        "the forged change was forwarded: {body}"
    );
    a.finish().await;
    assert_eq!(
        server
            .metric("klad_unapplied_changes_total{reason=\"duplicate_seq\"}")
            .await,
        0,
        "nothing was left unapplied"
    );

    // Nothing of the forgery was stored; blame names Anna for her words.
    drop((c_process, c_text));
    c.stop().await;
    server.restart().await;
    let check = Client::connect(&server, &cas).await;
    let p = check.must_find(&process.id).await;
    let text = check.must_find(&process.text_doc).await;
    let body = eventually(LIMIT, "the text after a restart", || {
        body_of(&text, &article).filter(|b| b.starts_with("A2 "))
    })
    .await;
    assert_eq!(body, "A2 A1 Honden worden aangelijnd.");
    let info = p.with_document(|d| {
        klad_core::ProcessDoc::from_automerge(d.clone())
            .unwrap()
            .info()
            .unwrap()
    });
    let owner = info
        .member_for_actor(anna_actor)
        .expect("Anna's actor is registered");
    assert_eq!(owner.name, "Anna");
    let bram_devices = &info.members[&klad_core::MemberId::from(bram.id.as_str())].devices;
    assert!(
        !bram_devices.iter().any(|d| d == anna_actor),
        "Anna's actor never became Bram's"
    );
    drop((p, text));
    check.stop().await;
}

/// A sync frame for `doc` carrying one change written by `actor` on a fork
/// of `base` (which is left untouched).
fn change_by(
    peer: &RawPeer,
    doc: &str,
    base: &samod::DocHandle,
    actor: &str,
    key: &str,
) -> Vec<u8> {
    let (heads, change) = base.with_document(|d| {
        use automerge::transaction::Transactable;
        let mut fork = d.fork();
        fork.set_actor(automerge::ActorId::try_from(actor).unwrap());
        let mut tx = fork.transaction();
        tx.put(automerge::ROOT, key, "x").unwrap();
        tx.commit();
        let c = fork.get_last_local_change().unwrap().raw_bytes().to_vec();
        (fork.get_heads(), c)
    });
    let msg = automerge::sync::Message {
        heads,
        need: vec![],
        have: vec![],
        changes: vec![change].into(),
        flags: None,
        version: automerge::sync::MessageVersion::V1,
    };
    cbor(vec![
        ("type", ciborium::Value::Text("sync".into())),
        ("senderId", ciborium::Value::Text(peer.peer_id.clone())),
        ("targetId", ciborium::Value::Text("klad-server".into())),
        ("documentId", ciborium::Value::Text(doc.into())),
        ("data", ciborium::Value::Bytes(msg.encode())),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_the_server_cannot_apply_is_reported_not_left_to_stall() {
    let server = Server::start(&[]).await;
    let process = server.create_process("Dubbel volgnummer");
    let anna = server.invite(&process, "Anna", "drafter");
    let c = Client::connect(&server, &anna).await;
    let contributions = c.must_find(&anna.contributions_doc).await;

    // Anna's device (restored from an old copy, say) writes two different
    // changes with the same sequence number of its actor.
    let actor = "d0d0d0d0d0d0d0d0";
    let mut p = RawPeer::connect(&server, &anna, Some("restored")).await;
    let first = change_by(&p, &anna.contributions_doc, &contributions, actor, "first");
    let second = change_by(&p, &anna.contributions_doc, &contributions, actor, "second");
    p.send(first).await;
    eventually(LIMIT, "the first change to arrive", || {
        has_key(&contributions, "first").then_some(())
    })
    .await;
    p.send(second).await;

    // After the apply deadline the server says so: a metric, a log line and
    // a close frame with the reason (unless the sync engine closed first).
    let mut counted = 0;
    for _ in 0..400 {
        counted = server
            .metric("klad_unapplied_changes_total{reason=\"duplicate_seq\"}")
            .await;
        if counted > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counted, 1, "the duplicate sequence number was reported");
    if let Some((code, reason)) = p.close_reason().await {
        assert_eq!(code, 1008);
        assert!(reason.contains("sequence number"), "{reason}");
    }
    assert!(!has_key(&contributions, "second"));
    drop(contributions);
    c.stop().await;
}
