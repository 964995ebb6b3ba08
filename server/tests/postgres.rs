//! klad-server on PostgreSQL (`--store postgres://...`): a real server
//! process writes what a client sends into a fresh database, is killed with
//! SIGKILL, starts again on the same database, and still has every write it
//! acknowledged. Also: a malformed or unreachable address stops the start
//! with a sentence.
//!
//! The database server comes from `KLAD_TEST_POSTGRES` (start one with
//! `eval "$(bash scripts/postgres.sh)"`); each run creates a database of its
//! own there (the role may CREATEDB) and drops it at the end. Without
//! `KLAD_TEST_POSTGRES` the test fails under CI and is skipped with a loud
//! note elsewhere.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::pg::{TempDatabase, postgres_url, sql};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_on_postgres() {
    let Some(admin_url) = postgres_url() else {
        return;
    };
    let db = TempDatabase::create(&admin_url).await;
    // The storage delay widens the window in which an acknowledgement sent
    // before the COMMIT returned would be lost by the kill.
    let mut server = Server::start(&["--store", &db.url, "--fault-put-delay-ms", "20"]).await;
    // The command line names the store too (as an operator would with
    // KLAD_STORE), then finds the running server and goes through it.
    let store = ["--store", db.url.as_str()];
    let v = cli(
        &server.data,
        &[
            &store[..],
            &["process", "create", "--title", "Op PostgreSQL", "--json"],
        ]
        .concat(),
    );
    let process = v["process"]["process_id"].as_str().unwrap().to_owned();
    let invite = |name: &str, role: &str| {
        let args = [
            &store[..],
            &[
                "invite",
                "--process",
                &process,
                "--name",
                name,
                "--role",
                role,
                "--json",
            ],
        ]
        .concat();
        Member::from_json(&cli(&server.data, &args))
    };
    let writer = invite("Schrijver", "drafter");
    let reader = invite("Lezer", "observer");

    let client = Client::connect(&server, &writer).await;
    let doc = client.must_find(&writer.contributions_doc).await;
    let mut acked = BTreeSet::new();
    for i in 0..40 {
        let key = format!("w{i:03}");
        raw_put(&doc, &key, "x");
        let (peers, _) = doc.peers();
        let conn = *peers.keys().next().expect("connected to the server");
        tokio::time::timeout(Duration::from_secs(10), doc.they_have_our_changes(conn))
            .await
            .expect("the server acknowledges the write");
        acked.insert(key);
    }
    // Unacknowledged writes in flight at the kill may or may not survive.
    for i in 0..20 {
        raw_put(&doc, &format!("late{i:03}"), "x");
    }
    server.kill9();
    client.never_reconnect();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(2), client.repo.stop()).await;
    });

    // Nothing went to sled: the data directory has no store, the database
    // has the documents, the process record and the signing key.
    assert!(
        !server.data.join("store").exists(),
        "with --store postgres the data directory holds no sled store"
    );
    let rows = sql(&db.url, "SELECT count(*) FROM klad_kv").await;
    let entries: i64 = rows[0].get(0);
    assert!(entries >= 5, "only {entries} entries in klad_kv");
    let keys = sql(
        &db.url,
        "SELECT k FROM klad_kv WHERE k = 'klad-server'::bytea || '\\x00'::bytea || 'signing-key'::bytea || '\\x00'::bytea",
    )
    .await;
    assert_eq!(keys.len(), 1, "the signing key is in the database");

    // The reader's token was signed before the kill: the restarted server
    // verifies it with the key from the database, not a new one.
    server.launch().await;
    let check = Client::connect(&server, &reader).await;
    let doc = check.must_find(&writer.contributions_doc).await;
    let missing = eventually(Duration::from_secs(20), "the reader to sync", || {
        let have: BTreeSet<String> = doc.with_document(|d| root_keys(d).into_iter().collect());
        let missing: Vec<String> = acked.difference(&have).cloned().collect();
        missing.is_empty().then_some(missing)
    })
    .await;
    assert!(missing.is_empty());
    check.stop().await;
    server.kill9();
    drop(db);
}

#[test]
fn a_malformed_store_address_stops_the_start_with_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--data"])
        .arg(dir.path())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--store",
            "mysql://klad:geheim@host/db",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--store takes `sled`"), "{err}");
    assert!(
        !err.contains("geheim"),
        "the password is never shown: {err}"
    );
    assert!(!dir.path().join("store").exists());
}

#[test]
fn an_unreachable_database_stops_the_start_with_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--data"])
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .env("KLAD_STORE", "postgres://klad:geheim@127.0.0.1:1/klad")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "Could not connect to the PostgreSQL database postgres://klad@127.0.0.1:1/klad"
        ),
        "{err}"
    );
    assert!(err.contains("Check that the database server runs"), "{err}");
    assert!(
        !err.contains("geheim"),
        "the password is never shown: {err}"
    );
}

/// A server that started on sled moves to PostgreSQL: `migrate --to`
/// copies the store, the signing key and the admin secret, and the server
/// started on the database has every document, and takes the tokens it
/// issued before. A second copy into the same database is refused, and so is
/// a copy while the server runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sled_server_moves_to_postgres() {
    let Some(admin_url) = postgres_url() else {
        return;
    };
    let db = TempDatabase::create(&admin_url).await;
    let mut server = Server::start(&[]).await;
    let process = server.create_process("Verhuisd");
    let anna = server.invite(&process, "Anna", "drafter");
    let client = Client::connect(&server, &anna).await;
    let doc = client.must_find(&anna.contributions_doc).await;
    for key in ["een", "twee", "drie"] {
        raw_put(&doc, key, "x");
    }
    let (peers, _) = doc.peers();
    let conn = *peers.keys().next().expect("connected to the server");
    tokio::time::timeout(Duration::from_secs(10), doc.they_have_our_changes(conn))
        .await
        .expect("the server acknowledges the writes");
    client.stop().await;

    // While the server runs, sled's lock refuses the copy.
    let out = cli_output(&server.data, &["migrate", "--to", &db.url]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stop it first"), "{err}");

    assert!(server.terminate());
    let v = cli(&server.data, &["migrate", "--to", &db.url, "--json"]);
    assert!(v["entries"].as_u64().unwrap() >= 5, "{v}");
    assert!(v["documents"].as_u64().unwrap() >= 3, "{v}");
    // Not twice into one database.
    let out = cli_output(&server.data, &["migrate", "--to", &db.url]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already holds a Klad store"), "{err}");

    // The same data directory, now on PostgreSQL: Anna's old token works and
    // her words are there; the command line (shared admin secret) too.
    let mut moved = Server::start_in(server.data.clone(), &["--store", &db.url]).await;
    let again = Client::connect(&moved, &anna).await;
    let doc = again.must_find(&anna.contributions_doc).await;
    eventually(
        Duration::from_secs(20),
        "Anna's words after the move",
        || {
            ["een", "twee", "drie"]
                .iter()
                .all(|k| has_key(&doc, k))
                .then_some(())
        },
    )
    .await;
    let shown = cli(
        &moved.data,
        &[
            "--store",
            &db.url,
            "process",
            "show",
            "--process",
            &process.id,
            "--json",
        ],
    );
    assert_eq!(shown["title"], "Verhuisd", "{shown}");
    again.stop().await;
    moved.kill9();
}
