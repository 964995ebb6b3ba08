//! What must be shown, item 2: an official (and an observer) writing to the
//! text, and a member writing to another member's contributions: the change
//! is refused, not stored (restart and check), never seen by any other
//! client, and counted in /metrics. Phase changes apply to open connections.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(30);

async fn refused(server: &Server, reason: &str) -> u64 {
    server
        .metric(&format!("klad_refused_writes_total{{reason=\"{reason}\"}}"))
        .await
}

async fn wait_refused(server: &Server, reason: &str, at_least: u64) {
    for _ in 0..600 {
        if refused(server, reason).await >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server never counted a refused write for {reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_writes_are_not_stored_not_forwarded_and_counted() {
    let mut server = Server::start(&[]).await;
    let process = server.create_process("Afvalstoffenverordening");
    let anna = server.invite(&process, "Anna", "drafter");
    let bram = server.invite(&process, "Bram", "drafter");
    let olga = server.invite(&process, "Olga", "official");
    let otto = server.invite(&process, "Otto", "observer");
    let fien = server.invite(&process, "Fien", "facilitator");

    let a = Client::connect(&server, &anna).await;
    let b = Client::connect(&server, &bram).await;
    let o = Client::connect(&server, &olga).await;
    let obs = Client::connect(&server, &otto).await;

    let a_process = a.must_find(&process.id).await;
    let a_text = a.must_find(&process.text_doc).await;
    let b_text = b.must_find(&process.text_doc).await;
    let b_own = b.must_find(&bram.contributions_doc).await;
    let o_text = o.must_find(&process.text_doc).await;
    let o_process = o.must_find(&process.id).await;
    let obs_text = obs.must_find(&process.text_doc).await;
    let a_on_brams = a.must_find(&bram.contributions_doc).await;

    // Well-behaved samod clients do not even send changes to a peer that
    // advertises read-only sync; a modified client does. Both are covered:
    // samod clients write locally (their changes must never spread), and raw
    // peers push the changes over the wire (they must be refused and counted).
    raw_put(&o_text, "official_was_here", "x");
    raw_put(&obs_text, "observer_was_here", "x");
    raw_put(&a_on_brams, "anna_was_here", "x");
    raw_put(&o_process, "official_in_process_doc", "x");
    let mut olga_raw = RawPeer::connect(&server, &olga, Some("raw")).await;
    olga_raw
        .push_change(&process.text_doc, &o_text, "official_was_here_raw")
        .await;
    wait_refused(&server, "text_not_a_drafter", 1).await;
    olga_raw
        .push_change(&process.id, &o_process, "official_in_process_doc_raw")
        .await;
    wait_refused(&server, "process_document", 1).await;
    let mut otto_raw = RawPeer::connect(&server, &otto, Some("raw")).await;
    otto_raw
        .push_change(&process.text_doc, &obs_text, "observer_was_here_raw")
        .await;
    wait_refused(&server, "observer", 1).await;
    let mut anna_raw = RawPeer::connect(&server, &anna, Some("raw")).await;
    anna_raw
        .push_change(&bram.contributions_doc, &a_on_brams, "anna_was_here_raw")
        .await;
    wait_refused(&server, "another_members_contributions", 1).await;

    // A legitimate edit made afterwards reaches Bram; the refused ones never do.
    let article = edit_text(&a_process, &a_text, &anna.id, |s| {
        s.create_article(1_000, None, "Artikel 1", "Afval wordt gescheiden.")
    });
    eventually(LIMIT, "Bram to see Anna's article", || {
        articles(&b_text)
            .iter()
            .any(|(id, _)| id == &article)
            .then_some(())
    })
    .await;
    eventually(LIMIT, "Otto to see Anna's article", || {
        articles(&obs_text)
            .iter()
            .any(|(id, _)| id == &article)
            .then_some(())
    })
    .await;
    for key in [
        "official_was_here",
        "observer_was_here",
        "official_was_here_raw",
        "observer_was_here_raw",
    ] {
        assert!(!has_key(&b_text, key), "Bram saw {key}");
        assert!(!has_key(&a_text, key), "Anna saw {key}");
    }
    assert!(!has_key(&obs_text, "official_was_here"));
    assert!(!has_key(&b_own, "anna_was_here"));
    assert!(!has_key(&b_own, "anna_was_here_raw"));

    // Moving to consultation freezes the text on Anna's open connection.
    let resp = server
        .http(
            "POST",
            &format!("/api/processes/{}/phase", process.id),
            Some(&fien.token),
            Some(json!({ "phase": "consultation" })),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    anna_raw
        .push_change(&process.text_doc, &a_text, "after_the_phase_change")
        .await;
    wait_refused(&server, "text_outside_drafting", 1).await;

    // An official cannot move the phase on.
    let resp = server
        .http(
            "POST",
            &format!("/api/processes/{}/phase", process.id),
            Some(&olga.token),
            Some(json!({ "phase": "final" })),
        )
        .await;
    assert_eq!(resp.status, 403, "{}", resp.body);
    assert!(
        resp.json().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("facilitators")
    );

    // Nothing refused was stored: check after a restart with a fresh client.
    drop((
        a_process, a_text, b_text, b_own, o_text, o_process, obs_text, a_on_brams,
    ));
    drop((olga_raw, otto_raw, anna_raw));
    for c in [a, b, o, obs] {
        c.stop().await;
    }
    server.restart().await;
    let fresh = Client::connect(&server, &otto).await;
    let text = fresh.must_find(&process.text_doc).await;
    eventually(LIMIT, "the text after a restart", || {
        articles(&text)
            .iter()
            .any(|(id, _)| id == &article)
            .then_some(())
    })
    .await;
    for key in [
        "official_was_here",
        "observer_was_here",
        "official_was_here_raw",
        "observer_was_here_raw",
        "after_the_phase_change",
    ] {
        assert!(!has_key(&text, key), "{key} was stored");
    }
    let brams = fresh.must_find(&bram.contributions_doc).await;
    assert!(!has_key(&brams, "anna_was_here"));
    assert!(!has_key(&brams, "anna_was_here_raw"));
    let p = fresh.must_find(&process.id).await;
    assert!(!has_key(&p, "official_in_process_doc"));
    assert!(!has_key(&p, "official_in_process_doc_raw"));
}
