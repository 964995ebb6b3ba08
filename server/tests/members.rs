//! Members from the command line and the API: a name invited twice is
//! refused unless `--again`; a lost token is reissued (the earlier one keeps
//! working, or is revoked); revoked tokens are refused at /sync and on the
//! API with a sentence, open connections that came with them are closed,
//! and revocations survive a restart; token lifetimes are at most a year.
//! Bad input changes nothing.

mod common;

use common::*;
use serde_json::{Value, json};

/// Runs the command line, expecting it to fail; returns its stderr.
fn refused(server: &Server, args: &[&str]) -> String {
    let out = cli_output(&server.data, args);
    assert!(!out.status.success(), "klad-server {args:?} was accepted");
    assert!(out.stdout.is_empty(), "a refusal prints nothing on stdout");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn member_names(server: &Server, process: &Process) -> Vec<String> {
    let list = server.cli(&["members", "list", "--process", &process.id, "--json"]);
    list.as_array()
        .expect("a JSON list of members")
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The status of a GET of the process with `token`, and its error sentence if any.
async fn api_with(server: &Server, process: &Process, token: &str) -> (u16, String) {
    let r = server
        .http(
            "GET",
            &format!("/api/processes/{}", process.id),
            Some(token),
            None,
        )
        .await;
    let sentence = if r.status == 200 {
        String::new()
    } else {
        error_of(&r.body)
    };
    (r.status, sentence)
}

fn token_of(v: &Value) -> String {
    v["token"].as_str().expect("a token").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_invited_twice_is_refused_unless_again() {
    let server = Server::start(&[]).await;
    let process = server.create_process("Dubbel");
    server.invite(&process, "Anna de Vries", "drafter");

    // Case and spacing do not make another person.
    let err = refused(
        &server,
        &[
            "invite",
            "--process",
            &process.id,
            "--name",
            "anna  de vries",
            "--role",
            "official",
        ],
    );
    assert!(err.contains("already a member"), "{err}");
    assert!(
        err.contains("--again") && err.contains("members reissue"),
        "{err}"
    );
    assert_eq!(member_names(&server, &process), ["Anna de Vries"]);

    // The API says the same, with 409.
    let secret = std::fs::read_to_string(server.data.join("admin-secret")).unwrap();
    let r = server
        .http(
            "POST",
            &format!("/api/processes/{}/members", process.id),
            Some(secret.trim()),
            Some(json!({"name": "Anna de Vries", "role": "drafter"})),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(error_of(&r.body).contains("already a member"));
    // A misspelt field is an error, not silently ignored.
    let r = server
        .http(
            "POST",
            &format!("/api/processes/{}/members", process.id),
            Some(secret.trim()),
            Some(json!({"name": "Anna de Vries", "role": "drafter", "agian": true})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(error_of(&r.body).contains("agian"), "{}", r.body);

    // Another person of the same name, on purpose.
    server.cli(&[
        "invite",
        "--process",
        &process.id,
        "--name",
        "Anna de Vries",
        "--role",
        "drafter",
        "--again",
        "--json",
    ]);
    assert_eq!(
        member_names(&server, &process),
        ["Anna de Vries", "Anna de Vries"]
    );
    // Now the name is ambiguous: reissue asks for a member id.
    let err = refused(
        &server,
        &[
            "members",
            "reissue",
            "--process",
            &process.id,
            "--member",
            "Anna de Vries",
        ],
    );
    assert!(
        err.contains("2 members") && err.contains("member id"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_lifetimes_are_at_most_a_year() {
    let server = Server::start(&[]).await;
    let process = server.create_process("Looptijd");
    for ttl in ["400d", "2y", "0s", "soon"] {
        let err = refused(
            &server,
            &[
                "invite",
                "--process",
                &process.id,
                "--name",
                "Bram",
                "--role",
                "drafter",
                "--ttl",
                ttl,
            ],
        );
        assert!(err.starts_with("klad-server: "), "{err}");
        assert!(
            err.contains("at most a year")
                || err.contains("longer than zero")
                || err.contains("not understood"),
            "{ttl}: {err}"
        );
    }
    assert!(member_names(&server, &process).is_empty());
    // The longest allowed is a year.
    server.cli(&[
        "invite",
        "--process",
        &process.id,
        "--name",
        "Bram",
        "--role",
        "drafter",
        "--ttl",
        "1y",
        "--json",
    ]);
    assert_eq!(member_names(&server, &process), ["Bram"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reissued_and_revoked_tokens() {
    let mut server = Server::start(&[]).await;
    let process = server.create_process("Intrekken");
    let anna = server.invite(&process, "Anna de Vries", "drafter");
    let first = anna.token.clone();
    assert_eq!(api_with(&server, &process, &first).await.0, 200);

    // A reissue by name keeps the earlier token working.
    let second = server.cli(&[
        "members",
        "reissue",
        "--process",
        &process.id,
        "--member",
        "Anna de Vries",
        "--json",
    ]);
    assert_eq!(second["member_id"], anna.id.as_str());
    assert_eq!(second["earlier_tokens_revoked"], false);
    let second = token_of(&second);
    assert_ne!(second, first);
    assert_eq!(api_with(&server, &process, &first).await.0, 200);
    assert_eq!(api_with(&server, &process, &second).await.0, 200);

    // A connection that came with the first token.
    let mut open = RawPeer::connect(&server, &anna, Some("old-phone")).await;

    // A reissue that revokes the earlier ones (by member id).
    let third = server.cli(&[
        "members",
        "reissue",
        "--process",
        &process.id,
        "--member",
        &anna.id,
        "--revoke-earlier",
        "--json",
    ]);
    assert_eq!(third["earlier_tokens_revoked"], true);
    let third = token_of(&third);
    let (code, reason) = open
        .close_reason()
        .await
        .expect("the revoked connection is closed with a reason");
    assert_eq!(code, 1008);
    assert!(reason.contains("withdrawn"), "{reason}");
    for old in [&first, &second] {
        let (status, sentence) = api_with(&server, &process, old).await;
        assert_eq!(status, 401);
        assert!(sentence.contains("withdrawn"), "{sentence}");
        let (status, body) = refusal(&server.ws_url(old), None).await;
        assert_eq!(status, 401);
        assert!(error_of(&body).contains("withdrawn"), "{body}");
    }
    assert_eq!(api_with(&server, &process, &third).await.0, 200);
    let mut newer = Member {
        token: third.clone(),
        ..anna.clone()
    };
    drop(RawPeer::connect(&server, &newer, Some("new-phone")).await);

    // Revoke everything; the revocation survives a restart (the command
    // line goes through the running server, then the store after the stop).
    let revoked = server.cli(&[
        "members",
        "revoke",
        "--process",
        &process.id,
        "--member",
        "Anna de Vries",
        "--json",
    ]);
    assert_eq!(revoked["member_id"], anna.id.as_str());
    assert_eq!(api_with(&server, &process, &third).await.0, 401);
    server.restart().await;
    assert_eq!(api_with(&server, &process, &third).await.0, 401);
    let (status, body) = refusal(&server.ws_url(&third), None).await;
    assert_eq!(status, 401);
    assert!(error_of(&body).contains("withdrawn"), "{body}");
    assert!(
        server
            .metric("klad_rejected_connections_total{reason=\"token_revoked\"}")
            .await
            >= 1
    );

    // Reissued with the server stopped: the store keeps the revocation and
    // the new token works once it runs again.
    assert!(server.terminate());
    let fourth = cli(
        &server.data,
        &[
            "members",
            "reissue",
            "--process",
            &process.id,
            "--member",
            "Anna de Vries",
            "--json",
        ],
    );
    server.launch().await;
    newer.token = token_of(&fourth);
    assert_eq!(api_with(&server, &process, &newer.token).await.0, 200);
    assert_eq!(api_with(&server, &process, &third).await.0, 401);
    drop(RawPeer::connect(&server, &newer, Some("new-phone")).await);

    // Naming nobody changes nothing.
    let err = refused(
        &server,
        &[
            "members",
            "revoke",
            "--process",
            &process.id,
            "--member",
            "Nobody",
        ],
    );
    assert!(
        err.contains("no member") && err.contains("members list"),
        "{err}"
    );
    assert_eq!(api_with(&server, &process, &newer.token).await.0, 200);
}
