//! What must be shown, item 6: malformed frames, oversized messages, unknown
//! document ids and a flood of connections: the server stays up, other
//! clients are unaffected, and each bad connection gets a reason.

mod common;

use std::time::Duration;

use common::*;
use futures::SinkExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_reason_and_hurts_no_one_else() {
    let server = Server::start(&["--max-message-bytes", "65536", "--max-connections", "8"]).await;
    let process = server.create_process("Verordening tegen slechte invoer");
    let anna = server.invite(&process, "Anna", "drafter");
    let bram = server.invite(&process, "Bram", "drafter");

    // Two good clients, connected throughout.
    let a = Client::connect(&server, &anna).await;
    let b = Client::connect(&server, &bram).await;
    let a_process = a.must_find(&process.id).await;
    let a_text = a.must_find(&process.text_doc).await;
    let b_text = b.must_find(&process.text_doc).await;
    let first = edit_text(&a_process, &a_text, &anna.id, |s| {
        s.create_article(1, None, "Artikel 1", "Voor de storm.")
    });
    eventually(LIMIT, "Bram to see the first article", || {
        articles(&b_text)
            .iter()
            .any(|(id, _)| id == &first)
            .then_some(())
    })
    .await;

    // Garbage bytes.
    let mut p = RawPeer::connect(&server, &anna, Some("garbage")).await;
    p.send(b"\xff\x00 this is not CBOR".to_vec()).await;
    let (code, reason) = p.close_reason().await.expect("a close frame");
    assert_eq!(code, 1007);
    assert!(reason.contains("not an automerge-repo message"), "{reason}");

    // A text frame.
    let mut p = RawPeer::connect(&server, &anna, Some("text")).await;
    p.ws.send(WsMessage::Text("hello".into())).await.unwrap();
    let (code, reason) = p.close_reason().await.expect("a close frame");
    assert_eq!(code, 1003);
    assert!(reason.contains("binary"), "{reason}");

    // An oversized message.
    let mut p = RawPeer::connect(&server, &anna, Some("big")).await;
    p.send(vec![0u8; 100_000]).await;
    let (code, reason) = p.close_reason().await.expect("a close frame");
    assert_eq!(code, 1009);
    assert!(
        reason.contains("larger than this server accepts"),
        "{reason}"
    );

    // Far above the limit, past axum's own hard limit (twice ours plus
    // 64 KiB): the same close frame, though the frame is never read whole.
    let mut p = RawPeer::connect(&server, &anna, Some("huge")).await;
    p.send(vec![0u8; 400_000]).await;
    let (code, reason) = p.close_reason().await.expect("a close frame");
    assert_eq!(code, 1009);
    assert!(
        reason.contains("larger than this server accepts"),
        "{reason}"
    );

    // A document id that is not one.
    let mut p = RawPeer::connect(&server, &anna, Some("baddoc")).await;
    p.send(cbor(vec![
        ("type", ciborium::Value::Text("request".into())),
        (
            "senderId",
            ciborium::Value::Text(format!("{}:baddoc", anna.id)),
        ),
        ("targetId", ciborium::Value::Text("klad-server".into())),
        (
            "documentId",
            ciborium::Value::Text("../../etc/passwd".into()),
        ),
        ("data", ciborium::Value::Bytes(vec![])),
    ]))
    .await;
    let (code, reason) = p.close_reason().await.expect("a close frame");
    assert_eq!(code, 1007);
    assert!(reason.contains("document id"), "{reason}");

    // An unknown (well-formed) document id: it simply does not exist.
    let unknown = samod::DocumentId::try_from(vec![42u8; 16])
        .unwrap()
        .to_string();
    let found = tokio::time::timeout(
        Duration::from_secs(10),
        a.repo.find(unknown.parse().unwrap()),
    )
    .await
    .expect("the search ends");
    assert!(matches!(found, Ok(None)));

    // A flood: unauthenticated attempts are refused with 401, and beyond the
    // connection limit authenticated ones get 503 with a reason.
    for _ in 0..50 {
        let url = format!("ws://{}/sync?token=nonsense", server.addr);
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
            other => panic!("expected a 401, got {:?}", other.map(|_| ())),
        }
    }
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..12 {
        let url = format!(
            "ws://{}/sync?token={}&device=flood{i}",
            server.addr, anna.token
        );
        match tokio_tungstenite::connect_async(url).await {
            Ok((ws, _)) => held.push(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status(), 503);
                let body =
                    String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).into_owned();
                assert!(body.contains("limit of 8 open connections"), "{body}");
                refused += 1;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(refused >= 4, "only {refused} connections were refused");
    drop(held);

    // Through all of it, the good clients kept syncing.
    let second = edit_text(&a_process, &a_text, &anna.id, |s| {
        s.create_article(2, Some(&first), "Artikel 2", "Na de storm.")
    });
    eventually(LIMIT, "Bram to see the second article", || {
        articles(&b_text)
            .iter()
            .any(|(id, _)| id == &second)
            .then_some(())
    })
    .await;
    assert_eq!(server.http("GET", "/healthz", None, None).await.status, 200);
    assert_eq!(
        server
            .metric("klad_server_closed_connections_total{reason=\"message_too_large\"}")
            .await,
        2
    );
    for reason in ["malformed_frame", "text_frame", "bad_document_id"] {
        let n = server
            .metric(&format!(
                "klad_server_closed_connections_total{{reason=\"{reason}\"}}"
            ))
            .await;
        assert_eq!(n, 1, "{reason}");
    }
    assert!(
        server
            .metric("klad_rejected_connections_total{reason=\"too_many_connections\"}")
            .await
            >= 4
    );
}

/// Sends a raw HTTP request (the body need not be JSON a test can build);
/// returns the status line.
async fn raw_post(server: &Server, path: &str, bearer: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {bearer}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.addr,
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_api_body_is_refused_and_the_server_stays_up() {
    let server = Server::start(&[]).await;
    let secret = std::fs::read_to_string(server.data.join("admin-secret")).unwrap();
    let depth = 30_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    for body in [
        format!("{{\"title\": \"Diep\", \"extra\": {nested}}}"),
        format!("{{\"title\": {nested}}}"),
        nested.clone(),
    ] {
        let status = raw_post(&server, "/api/processes", secret.trim(), &body).await;
        assert!(status.contains(" 400 "), "{status}");
    }
    assert_eq!(server.http("GET", "/healthz", None, None).await.status, 200);
    server.create_process("Diep");
}
