//! What must be shown, item 3: missing, forged and expired tokens get HTTP
//! 401 with a reason before the upgrade; a token for another process gives
//! no access to this one's documents; a connection cannot claim another
//! member's peer id.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use klad_core::{MemberId, ProcessId, Role};
use klad_server::auth::Keys;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_before_the_upgrade_with_a_reason() {
    let server = Server::start(&[]).await;
    let process = server.create_process("Kapverordening");
    let anna = server.invite(&process, "Anna", "drafter");
    let base = format!("ws://{}/sync", server.addr);

    let (status, body) = refusal(&base, None).await;
    assert_eq!(status, 401);
    assert!(error_of(&body).contains("No token"), "{body}");

    let (status, body) = refusal(&format!("{base}?token=not-a-token"), None).await;
    assert_eq!(status, 401);
    assert!(error_of(&body).contains("malformed"), "{body}");

    // Signed by another key: forged.
    let other = tempfile::tempdir().unwrap();
    let forger = Keys::load_or_create(other.path()).unwrap();
    let (forged, _) = forger
        .issue_for(
            &MemberId(anna.id.clone()),
            &ProcessId(process.id.clone()),
            Role::Facilitator,
            Duration::from_secs(3600),
            0,
        )
        .unwrap();
    let (status, body) = refusal(&format!("{base}?token={forged}"), None).await;
    assert_eq!(status, 401);
    assert!(
        error_of(&body).contains("not signed by this server"),
        "{body}"
    );

    // Signed by the server's key, but expired.
    let keys = Keys::load(&server.data).unwrap();
    let expired = keys
        .issue(
            &MemberId(anna.id.clone()),
            &ProcessId(process.id.clone()),
            Role::Drafter,
            SystemTime::now() - Duration::from_secs(60),
            0,
        )
        .unwrap();
    let (status, body) = refusal(&base, Some(&expired)).await;
    assert_eq!(status, 401);
    assert!(error_of(&body).contains("expired"), "{body}");

    // A valid signature for a member the server does not know.
    let (stranger, _) = keys
        .issue_for(
            &MemberId::from("nobody"),
            &ProcessId(process.id.clone()),
            Role::Drafter,
            Duration::from_secs(3600),
            0,
        )
        .unwrap();
    let (status, body) = refusal(&base, Some(&stranger)).await;
    assert_eq!(status, 401);
    assert!(error_of(&body).contains("does not know"), "{body}");

    // The facilitation API refuses the same way.
    let resp = server
        .http(
            "GET",
            &format!("/api/processes/{}", process.id),
            Some(&forged),
            None,
        )
        .await;
    assert_eq!(resp.status, 401);
    assert!(error_of(&resp.body).contains("not signed by this server"));
    assert_eq!(server.metric("klad_connections_total").await, 0);
    assert!(
        server
            .metric("klad_rejected_connections_total{reason=\"token_expired\"}")
            .await
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_process_gives_no_access() {
    let server = Server::start(&[]).await;
    let ours = server.create_process("Kapverordening");
    let theirs = server.create_process("Marktverordening");
    let anna = server.invite(&ours, "Anna", "drafter");
    let mallory = server.invite(&theirs, "Mallory", "facilitator");

    let m = Client::connect(&server, &mallory).await;
    // Mallory's own process is there...
    assert!(m.find(&theirs.text_doc).await.is_some());
    // ...but every document of the other process appears not to exist.
    for doc in [&ours.id, &ours.text_doc, &anna.contributions_doc] {
        let id: samod::DocumentId = doc.parse().unwrap();
        let found = tokio::time::timeout(Duration::from_secs(10), m.repo.find(id))
            .await
            .expect("the search ends");
        assert!(
            matches!(found, Ok(None)),
            "{doc} was visible to another process's member"
        );
    }
    // The facilitation API says so too.
    let resp = server
        .http(
            "GET",
            &format!("/api/processes/{}", ours.id),
            Some(&mallory.token),
            None,
        )
        .await;
    assert_eq!(resp.status, 403, "{}", resp.body);
    m.stop().await;

    // Claiming someone else's peer id with one's own token is disconnected.
    let impostor = Client::connect_as(&server, &mallory, &anna.peer_id).await;
    let id: samod::DocumentId = ours.text_doc.parse().unwrap();
    let found = tokio::time::timeout(Duration::from_secs(3), impostor.repo.find(id)).await;
    assert!(
        !matches!(found, Ok(Ok(Some(_)))),
        "an impostor read Anna's text"
    );
}
