//! What must be shown, item 1: two drafters and an official as samod clients;
//! a drafter's edit reaches the others live, and both drafters editing the
//! same sentence at once converge.

mod common;

use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_reach_everyone_live_and_concurrent_edits_converge() {
    let server = Server::start(&[]).await;
    let process = server.create_process("Parkeerverordening");
    let anna = server.invite(&process, "Anna", "drafter");
    let bram = server.invite(&process, "Bram", "drafter");
    let olga = server.invite(&process, "Olga", "official");

    let a = Client::connect(&server, &anna).await;
    let b = Client::connect(&server, &bram).await;
    let o = Client::connect(&server, &olga).await;
    let a_process = a.must_find(&process.id).await;
    let a_text = a.must_find(&process.text_doc).await;
    let b_process = b.must_find(&process.id).await;
    let b_text = b.must_find(&process.text_doc).await;
    let o_text = o.must_find(&process.text_doc).await;

    // A live edit by Anna reaches Bram and Olga.
    let article = edit_text(&a_process, &a_text, &anna.id, |s| {
        s.create_article(1_000, None, "Artikel 1", "De gemeente regelt het parkeren.")
    });
    for (who, text) in [("Bram", &b_text), ("Olga", &o_text)] {
        eventually(LIMIT, &format!("{who} to see Anna's article"), || {
            articles(text)
                .iter()
                .any(|(id, body)| id == &article && body == "De gemeente regelt het parkeren.")
                .then_some(())
        })
        .await;
    }

    // Both drafters edit the same sentence at once.
    edit_text(&a_process, &a_text, &anna.id, |s| {
        s.replace_range(2_000, &article, 3, 11, "raad")
    });
    edit_text(&b_process, &b_text, &bram.id, |s| {
        s.splice_body(2_000, &article, 23, 0, "betaald ")
    });
    let expected = "De raad regelt het betaald parkeren.";
    for (who, text) in [("Anna", &a_text), ("Bram", &b_text), ("Olga", &o_text)] {
        eventually(LIMIT, &format!("{who} to converge"), || {
            articles(text)
                .iter()
                .any(|(id, body)| id == &article && body == expected)
                .then_some(())
        })
        .await;
    }
    assert!(server.metric("klad_connections_total").await >= 3);

    // And the text survives a restart.
    drop((a_process, a_text, b_process, b_text, o_text));
    for c in [a, b, o] {
        c.stop().await;
    }
    let mut server = server;
    server.restart().await;
    let o = Client::connect(&server, &olga).await;
    let text = o.must_find(&process.text_doc).await;
    eventually(LIMIT, "the text after a restart", || {
        articles(&text)
            .iter()
            .any(|(_, b)| b == expected)
            .then_some(())
    })
    .await;
}
