//! A device that names its Automerge actor id when it connects is registered
//! under its member, so blame and history name the person behind its changes.

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
