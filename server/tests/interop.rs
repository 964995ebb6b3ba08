//! What must be shown, item 4: interop with a client none of us wrote. A Node
//! script using `@automerge/automerge-repo` and its websocket adapter from npm
//! (pinned in server/interop/package-lock.json) connects with a drafter's
//! token, reads the process and text documents and edits an article; a Rust
//! client sees the edit. With an official's token its edit is refused.

mod common;

use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_automerge_repo_reads_edits_and_is_refused_where_it_should_be() {
    assert!(node_available(), "node is required for the interop test");
    let mut server = Server::start(&[]).await;
    let process = server.create_process("Interop-verordening");
    let anna = server.invite(&process, "Anna (JS)", "drafter");
    let olga = server.invite(&process, "Olga (JS)", "official");
    let bram = server.invite(&process, "Bram (Rust)", "drafter");

    let b = Client::connect(&server, &bram).await;
    let b_process = b.must_find(&process.id).await;
    let b_text = b.must_find(&process.text_doc).await;
    let article = edit_text(&b_process, &b_text, &bram.id, |s| {
        s.create_article(1, None, "Artikel 1", "Honden worden aangelijnd.")
    });

    // A drafter in JavaScript reads both documents and edits the article.
    let mut js = Node::client(&server, &anna, &process, "JS: ");
    let read: serde_json::Value = serde_json::from_str(&js.expect("READ").await).unwrap();
    assert_eq!(read["title"], "Interop-verordening");
    assert_eq!(read["phase"], "drafting");
    assert_eq!(read["members"], 3);
    assert_eq!(read["articles"][0]["body"], "Honden worden aangelijnd.");
    assert_eq!(js.expect("EDITED").await, article.to_string());
    eventually(LIMIT, "the Rust client to see the JavaScript edit", || {
        articles(&b_text)
            .iter()
            .any(|(id, body)| id == &article && body == "JS: Honden worden aangelijnd.")
            .then_some(())
    })
    .await;
    js.finish().await;

    // An official in JavaScript: the edit is refused.
    let mut js = Node::client(&server, &olga, &process, "OFFICIAL: ");
    js.expect("READ").await;
    js.expect("EDITED").await;
    // The JS client either sends the change (then the server counts the
    // refusal) or honours the server's read-only flag and keeps it local.
    let mut counted = 0;
    for _ in 0..40 {
        counted = server
            .metric("klad_refused_writes_total{reason=\"text_not_a_drafter\"}")
            .await;
        if counted > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("refused official writes counted: {counted}");
    // A later drafter edit reaches Bram; the official's never does.
    let mut js2 = Node::client(&server, &anna, &process, "NA: ");
    js2.expect("EDITED").await;
    eventually(LIMIT, "the second drafter edit", || {
        articles(&b_text)
            .iter()
            .any(|(_, body)| body.starts_with("NA: "))
            .then_some(())
    })
    .await;
    assert!(
        articles(&b_text)
            .iter()
            .all(|(_, body)| !body.contains("OFFICIAL")),
        "the official's edit reached another client"
    );
    js.finish().await;
    js2.finish().await;
    drop((b_process, b_text));
    b.stop().await;

    server.restart().await;
    let check = Client::connect(&server, &bram).await;
    let text = check.must_find(&process.text_doc).await;
    let body = eventually(LIMIT, "the text after a restart", || {
        articles(&text)
            .into_iter()
            .find(|(id, _)| id == &article)
            .map(|(_, b)| b)
    })
    .await;
    assert!(body.contains("JS: "), "{body}");
    assert!(!body.contains("OFFICIAL"), "{body}");
    check.stop().await;
}
