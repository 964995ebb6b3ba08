//! Idle processes are unloaded from memory (issue 3): each process runs on a
//! samod repo of its own, which the server stops once the process has had no
//! connection and no facilitation for the idle period (`--idle-unload-secs`,
//! 1 s here). Unloading loses nothing, and a connection that arrives while
//! its process is being unloaded waits and gets the process loaded afresh.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(30);

/// Polls the metrics until `series` satisfies `ok` (bounded).
async fn metric_until(server: &Server, series: &str, ok: impl Fn(u64) -> bool) -> u64 {
    let start = std::time::Instant::now();
    loop {
        let v = server.metric(series).await;
        if ok(v) {
            return v;
        }
        assert!(
            start.elapsed() < LIMIT,
            "timed out waiting for {series} (last {v})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the server has everything `doc` has (bounded).
async fn acknowledged(doc: &samod::DocHandle) {
    tokio::time::timeout(LIMIT, async {
        loop {
            let (peers, _) = doc.peers();
            if let Some(conn) = peers.keys().next() {
                if tokio::time::timeout(Duration::from_secs(1), doc.they_have_our_changes(*conn))
                    .await
                    .is_ok()
                {
                    return;
                }
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
    .await
    .expect("the server acknowledges the change");
}

/// Waits until `doc` holds every key in `keys` (bounded).
async fn has_keys(doc: &samod::DocHandle, keys: &BTreeSet<String>, what: &str) {
    eventually(LIMIT, what, || {
        let have: BTreeSet<String> = doc.with_document(|d| root_keys(d).into_iter().collect());
        keys.is_subset(&have).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_process_is_unloaded_and_comes_back_with_every_edit() {
    let server = Server::start(&["--idle-unload-secs", "1"]).await;
    let process = server.create_process("Uitladen");
    let anna = server.invite(&process, "Anna", "drafter");
    let bram = server.invite(&process, "Bram", "drafter");
    let olga = server.invite(&process, "Olga", "official");

    // Two drafters write the text and their own contributions, then leave.
    let a = Client::connect(&server, &anna).await;
    let b = Client::connect(&server, &bram).await;
    let a_process = a.must_find(&process.id).await;
    let a_text = a.must_find(&process.text_doc).await;
    let a_contrib = a.must_find(&anna.contributions_doc).await;
    let article = edit_text(&a_process, &a_text, &anna.id, |s| {
        s.create_article(1_000, None, "Artikel 1", "De gemeente regelt het parkeren.")
    });
    raw_put(&a_contrib, "anna-note", "x");
    acknowledged(&a_text).await;
    acknowledged(&a_contrib).await;
    let b_process = b.must_find(&process.id).await;
    let b_text = b.must_find(&process.text_doc).await;
    eventually(LIMIT, "Bram to see Anna's article", || {
        articles(&b_text)
            .iter()
            .any(|(id, _)| id == &article)
            .then_some(())
    })
    .await;
    edit_text(&b_process, &b_text, &bram.id, |s| {
        s.splice_body(2_000, &article, 23, 0, "betaald ")
    });
    acknowledged(&b_text).await;
    let expected = "De gemeente regelt het betaald parkeren.";
    assert!(server.metric("klad_processes_loaded").await >= 1);
    assert!(server.metric("klad_documents_loaded").await >= 3);
    drop((a_process, a_text, a_contrib, b_process, b_text));
    a.stop().await;
    b.stop().await;

    // Nobody is connected: the process is unloaded, its documents with it.
    metric_until(&server, "klad_process_unloads_total", |v| v >= 1).await;
    metric_until(&server, "klad_processes_loaded", |v| v == 0).await;
    metric_until(&server, "klad_documents_loaded", |v| v == 0).await;

    // A new client finds every edit: the process is loaded again from the store.
    let o = Client::connect(&server, &olga).await;
    let text = o.must_find(&process.text_doc).await;
    eventually(LIMIT, "the text after the unload", || {
        articles(&text)
            .iter()
            .any(|(id, body)| id == &article && body == expected)
            .then_some(())
    })
    .await;
    let contrib = o.must_find(&anna.contributions_doc).await;
    has_keys(
        &contrib,
        &BTreeSet::from(["anna-note".to_owned()]),
        "Anna's note after the unload",
    )
    .await;
    assert_eq!(server.metric("klad_processes_loaded").await, 1);

    // Facilitation on an unloaded process loads it too.
    drop((text, contrib));
    o.stop().await;
    metric_until(&server, "klad_process_unloads_total", |v| v >= 2).await;
    let dirk = server.invite(&process, "Dirk", "drafter");
    let d = Client::connect(&server, &dirk).await;
    let p = d.must_find(&process.id).await;
    eventually(LIMIT, "Dirk in the process document", || {
        p.with_document(|doc| {
            let info = klad_core::ProcessDoc::from_automerge(doc.clone())
                .ok()?
                .info()
                .ok()?;
            info.members
                .contains_key(&klad_core::MemberId::from(dirk.id.as_str()))
                .then_some(())
        })
    })
    .await;
    drop(p);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_arriving_while_the_process_unloads_are_kept() {
    // Every unload holds the process for 300 ms before stopping it, and every
    // storage write is delayed, so connections arrive in the middle of unloads.
    let server = Server::start(&[
        "--idle-unload-secs",
        "1",
        "--fault-unload-delay-ms",
        "300",
        "--fault-put-delay-ms",
        "20",
    ])
    .await;
    let process = server.create_process("Wisselen");
    let anna = server.invite(&process, "Anna", "drafter");
    let reader = server.invite(&process, "Lezer", "observer");

    let mut acked = BTreeSet::new();
    let rounds = 8;
    for round in 0..rounds {
        // Each round connects a little later after the process went idle
        // (idle period 1 s, unloader tick 250 ms, unload delay 300 ms).
        let c = Client::connect(&server, &anna).await;
        let doc = c.must_find(&anna.contributions_doc).await;
        let key = format!("round-{round}");
        raw_put(&doc, &key, "x");
        acknowledged(&doc).await;
        acked.insert(key);
        drop(doc);
        c.stop().await;
        tokio::time::sleep(Duration::from_millis(950 + 70 * round)).await;
    }
    let unloads = server.metric("klad_process_unloads_total").await;
    assert!(unloads >= 1, "the process was never unloaded");

    let r = Client::connect(&server, &reader).await;
    let doc = r.must_find(&anna.contributions_doc).await;
    has_keys(&doc, &acked, "every acknowledged edit").await;
    eprintln!(
        "eviction: {rounds} rounds, {unloads} unloads, all {} edits found",
        acked.len()
    );
    drop(doc);
    r.stop().await;
}
