//! Graceful shutdown: SIGTERM with clients connected closes their
//! connections with a reason, keeps what they wrote, and exits cleanly.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_open_connections_flushes_and_exits_cleanly() {
    let mut server = Server::start(&[]).await;
    let process = server.create_process("Afsluiten");
    let anna = server.invite(&process, "Anna", "drafter");
    let a = Client::connect(&server, &anna).await;
    let p = a.must_find(&process.id).await;
    let t = a.must_find(&process.text_doc).await;
    let article = edit_text(&p, &t, &anna.id, |s| {
        s.create_article(1, None, "Artikel 1", "Tot slot.")
    });
    let (peers, _) = t.peers();
    let conn = *peers.keys().next().expect("a connection to the server");
    tokio::time::timeout(Duration::from_secs(30), t.they_have_our_changes(conn))
        .await
        .expect("the server acknowledges the article");
    let mut raw = RawPeer::connect(&server, &anna, Some("raw")).await;

    assert!(
        server.terminate(),
        "the server exits 0 on SIGTERM with clients connected"
    );
    let (code, reason) = raw.close_reason().await.expect("a close frame");
    assert_eq!(code, 1001);
    assert!(reason.contains("shutting down"), "{reason}");

    server.launch().await;
    drop((p, t));
    a.stop().await;
    let b = Client::connect(&server, &anna).await;
    let t = b.must_find(&process.text_doc).await;
    eventually(
        Duration::from_secs(30),
        "the article after the restart",
        || {
            articles(&t)
                .iter()
                .any(|(id, _)| id == &article)
                .then_some(())
        },
    )
    .await;
}
