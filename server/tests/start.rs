//! Start-up is lazy: the server rebuilds its directory from the process
//! records in the store without loading any process, loads a process when it
//! is first used, and if a record lags its process document (a server killed
//! between writing the one and the other), the document wins at first use.

mod common;

use std::time::Duration;

use common::*;
use klad_core::ProcessInfo;
use klad_store::{Key, KvStore, SledStore};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loads_no_process_until_a_member_uses_it() {
    let mut server = Server::start(&[]).await;
    let process = server.create_process("Lui opstarten");
    let anna = server.invite(&process, "Anna", "drafter");
    let a = Client::connect(&server, &anna).await;
    let a_process = a.must_find(&process.id).await;
    let a_text = a.must_find(&process.text_doc).await;
    edit_text(&a_process, &a_text, &anna.id, |s| {
        s.create_article(1_000, None, "Artikel 1", "Fietsen mogen overal staan.")
    });
    eventually(LIMIT, "the article to be stored", || {
        let (peers, _) = a_text.peers();
        peers
            .values()
            .any(|p| p.their_heads.as_ref() == Some(&a_text.with_document(|d| d.get_heads())))
            .then_some(())
    })
    .await;
    a.stop().await;

    server.restart().await;
    assert_eq!(
        server.metric("klad_processes_loaded").await,
        0,
        "nothing is loaded at start"
    );
    let summary = server
        .http(
            "GET",
            &format!("/api/processes/{}", process.id),
            Some(&anna.token),
            None,
        )
        .await;
    assert_eq!(summary.status, 200, "{}", summary.body);
    assert!(
        summary.body.contains("Lui opstarten"),
        "the directory knows the process"
    );

    let b = Client::connect(&server, &anna).await;
    let text = b.must_find(&process.text_doc).await;
    eventually(LIMIT, "the text after the restart", || {
        (articles(&text).first()?.1 == "Fietsen mogen overal staan.").then_some(())
    })
    .await;
    assert_eq!(
        server.metric("klad_processes_loaded").await,
        1,
        "loaded on first use"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_lags_its_document_is_corrected_at_first_use() {
    let mut server = Server::start(&[]).await;
    let process = server.create_process("Achterstand");
    let anna = server.invite(&process, "Anna", "drafter");
    let fien = server.invite(&process, "Fien", "facilitator");
    let key = Key::new(["klad-server", "process", process.id.as_str()]).unwrap();
    let store = server.data.join("store");
    let drafting = {
        assert!(server.terminate());
        let kv = SledStore::open(&store).unwrap();
        kv.get(&key).unwrap().expect("the process record")
    };
    let info: ProcessInfo = serde_json::from_slice(&drafting).unwrap();
    assert_eq!(info.phase, klad_core::Phase::Drafting);

    // The phase moves on; then the record is put back as it was, as if the
    // server had died between writing the document and the record.
    server.launch().await;
    let r = server
        .http(
            "POST",
            &format!("/api/processes/{}/phase", process.id),
            Some(&fien.token),
            Some(json!({ "phase": "consultation" })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(server.terminate());
    SledStore::open(&store)
        .unwrap()
        .put(&key, &drafting)
        .unwrap();
    server.launch().await;

    // Anna connects: her process is loaded, its document says consultation,
    // and the text is read-only for her, whatever the record said.
    let a = Client::connect(&server, &anna).await;
    let text = a.must_find(&process.text_doc).await;
    let mut peer = RawPeer::connect(&server, &anna, Some("raw")).await;
    peer.push_change(&process.text_doc, &text, "typed_after_the_phase_change")
        .await;
    let summary = server
        .http(
            "GET",
            &format!("/api/processes/{}", process.id),
            Some(&anna.token),
            None,
        )
        .await;
    assert!(
        summary.body.contains("\"consultation\""),
        "{}",
        summary.body
    );
    let refused = {
        let start = std::time::Instant::now();
        loop {
            let n = server
                .metric("klad_refused_writes_total{reason=\"text_outside_drafting\"}")
                .await;
            if n > 0 || start.elapsed() > LIMIT {
                break n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_eq!(
        refused, 1,
        "the text edit is refused: the document's phase wins"
    );
    assert!(!has_key(&text, "typed_after_the_phase_change"));
    a.stop().await;
}
