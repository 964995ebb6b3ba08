//! A device that names its Automerge actor id when it connects is registered
//! under its member, so blame and history name the person behind its changes;
//! so is an actor nobody had registered that first shows up in a change on a
//! member's own connection.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_with_an_actor_registers_the_device() {
    let server = Server::start(&[]).await;
    let process = server.create_process("Parkeerverordening");
    let anna = server.invite(&process, "Anna", "drafter");
    let bram = server.invite(&process, "Bram", "drafter");
    let actor = "a1b2c3d4e5f60718293a4b5c6d7e8f90";

    let url = format!("{}&actor={actor}", server.ws_url(&anna.token));
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    drop(ws);
    let summary = server
        .http(
            "GET",
            &format!("/api/processes/{}", process.id),
            Some(&anna.token),
            None,
        )
        .await
        .json()
        .unwrap();
    let devices = &summary["members"][&anna.id]["devices"];
    assert_eq!(devices, &serde_json::json!([actor]), "{summary}");

    // Bram cannot claim Anna's device; a malformed actor is refused. Both before the upgrade.
    for (token, bad) in [(&bram.token, actor), (&bram.token, "xyz")] {
        let url = format!("{}&actor={bad}", server.ws_url(token));
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 400);
                let body = String::from_utf8(resp.body().clone().unwrap_or_default()).unwrap();
                assert!(body.contains("error"), "{body}");
            }
            other => panic!("expected a 400 refusal, got {other:?}"),
        }
    }
    assert_eq!(
        server
            .http(
                "GET",
                &format!("/api/processes/{}", process.id),
                Some(&bram.token),
                None
            )
            .await
            .json()
            .unwrap()["members"][&bram.id]["devices"],
        serde_json::json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_first_seen_in_a_change_becomes_the_senders() {
    let server = Server::start(&[]).await;
    let process = server.create_process("Nieuw apparaat");
    let anna = server.invite(&process, "Anna", "drafter");
    let olga = server.invite(&process, "Olga", "official");

    // Anna's samod client names no actor when it connects; its first change
    // carries one nobody has registered.
    let a = Client::connect(&server, &anna).await;
    let doc = a.must_find(&anna.contributions_doc).await;
    let actor = doc.with_document(|d| d.get_actor().to_hex_string());
    raw_put(&doc, "note", "x");

    let devices = || async {
        server
            .http(
                "GET",
                &format!("/api/processes/{}", process.id),
                Some(&anna.token),
                None,
            )
            .await
            .json()
            .unwrap()["members"][&anna.id]["devices"]
            .clone()
    };
    let start = std::time::Instant::now();
    loop {
        let d = devices().await;
        if d.as_array()
            .is_some_and(|l| l.iter().any(|v| v.as_str() == Some(actor.as_str())))
        {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the actor was never registered: {d}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // The change itself was accepted and reaches another member.
    let o = Client::connect(&server, &olga).await;
    let seen = o.must_find(&anna.contributions_doc).await;
    eventually(
        std::time::Duration::from_secs(30),
        "Anna's note at Olga",
        || {
            seen.with_document(|d| {
                use automerge::ReadDoc;
                d.get(automerge::ROOT, "note").ok().flatten().map(|_| ())
            })
        },
    )
    .await;
    drop((doc, seen));
    a.stop().await;
    o.stop().await;
}
