//! Several klad-server nodes on one PostgreSQL database (real server
//! processes on loopback ports, one fresh database per test):
//! - three nodes serve one process together: clients of one process on
//!   different nodes see each other's edits, the API and the command line
//!   work through any node, refusals and phase changes behave as on one node;
//! - failover: the owner of the process is killed with SIGKILL at random
//!   moments while writers on every node write; every change a writer saw
//!   acknowledged is stored, writers reconnect and converge, and the time
//!   until another node serves the process is printed (`KLAD_FAILOVER_ROUNDS`
//!   rounds, 20 by default; `scripts/failover.sh` runs 100);
//! - fencing: an owner paused with SIGSTOP past its lease, and resumed,
//!   cannot write.
//!
//! Lease time 1 s here (the default is 10 s), so that failover is quick.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::pg::{TempDatabase, postgres_url, sql};
use common::*;
use samod::DocHandle;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(30);

/// Starts `n` nodes on `db` at the same moment (they race to create the
/// signing key, the store's id and the admin secret on an empty database).
async fn start_nodes(db: &TempDatabase, n: usize, extra: &[&str]) -> Vec<Server> {
    let mut args = vec!["--store", db.url.as_str(), "--lease-secs", "1"];
    args.extend_from_slice(extra);
    futures::future::join_all((0..n).map(|_| Server::start(&args))).await
}

/// The command line of `node` (it names the shared store, as an operator
/// would with KLAD_STORE, and reaches the running node through its data
/// directory).
fn cli_on(node: &Server, db: &TempDatabase, args: &[&str]) -> Value {
    cli(
        &node.data,
        &[&["--store", db.url.as_str()][..], args].concat(),
    )
}

fn create_on(node: &Server, db: &TempDatabase, title: &str) -> Process {
    let v = cli_on(node, db, &["process", "create", "--title", title, "--json"]);
    Process {
        id: v["process"]["process_id"].as_str().unwrap().into(),
        text_doc: v["process"]["text_doc"].as_str().unwrap().into(),
    }
}

fn invite_on(node: &Server, db: &TempDatabase, p: &Process, name: &str, role: &str) -> Member {
    Member::from_json(&cli_on(
        node,
        db,
        &[
            "invite",
            "--process",
            &p.id,
            "--name",
            name,
            "--role",
            role,
            "--json",
        ],
    ))
}

/// The address of the node whose lease of `process` is valid now, if any.
async fn owner_address(db: &TempDatabase, process: &str) -> Option<String> {
    let rows = sql(
        &db.url,
        &format!(
            "SELECT address FROM klad_kv_lease WHERE process = '{process}' AND expires > now()"
        ),
    )
    .await;
    rows.first().map(|r| r.get::<_, String>(0))
}

async fn metric_sum(nodes: &[Server], series: &str) -> u64 {
    let mut sum = 0;
    for n in nodes {
        if n.child.is_some() {
            sum += n.metric(series).await;
        }
    }
    sum
}

async fn wait_refused(nodes: &[Server], reason: &str) {
    let series = format!("klad_refused_writes_total{{reason=\"{reason}\"}}");
    for _ in 0..400 {
        if metric_sum(nodes, &series).await >= 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no node counted a refused write for {reason}");
}

/// One HTTP/1.1 exchange over a fresh connection: status, head (header
/// names in lower case) and body.
async fn raw_http(addr: &str, request: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(LIMIT, stream.read_to_end(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let head: String = head
        .lines()
        .map(|l| match l.split_once(':') {
            Some((name, value)) => format!("{}:{value}\n", name.to_ascii_lowercase()),
            None => format!("{l}\n"),
        })
        .collect();
    (status, head, body.to_owned())
}

/// Waits until the node `doc` syncs with has every change of `doc` (the
/// hub says so only once they are stored), across reconnections.
async fn acknowledged(doc: &DocHandle, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        let (peers, _) = doc.peers();
        match peers.keys().next().copied() {
            Some(conn) => {
                if tokio::time::timeout(Duration::from_millis(300), doc.they_have_our_changes(conn))
                    .await
                    .is_ok()
                {
                    return true;
                }
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_serve_one_process_together() {
    let Some(admin_url) = postgres_url() else {
        return;
    };
    let db = TempDatabase::create(&admin_url).await;
    let nodes = start_nodes(&db, 3, &[]).await;
    // One signing key for all, though they started together on an empty database.
    let mut keys = BTreeSet::new();
    for n in &nodes {
        keys.insert(n.http("GET", "/public-key", None, None).await.body);
    }
    assert_eq!(keys.len(), 1, "every node signs with the same key");

    // The command line of any node works on the process, wherever it is served.
    let process = create_on(&nodes[0], &db, "Parkeerverordening");
    let anna = invite_on(&nodes[1], &db, &process, "Anna", "drafter");
    let bram = invite_on(&nodes[2], &db, &process, "Bram", "drafter");
    let otto = invite_on(&nodes[1], &db, &process, "Otto", "observer");
    let fien = invite_on(&nodes[2], &db, &process, "Fien", "facilitator");
    let owner = owner_address(&db, &process.id)
        .await
        .expect("a node serves the process");
    assert_eq!(
        owner,
        format!("http://{}", nodes[0].addr),
        "the creating node serves it"
    );

    let a = Client::connect(&nodes[1], &anna).await;
    let b = Client::connect(&nodes[2], &bram).await;
    let o = Client::connect(&nodes[0], &otto).await;
    let a_process = a.must_find(&process.id).await;
    let a_text = a.must_find(&process.text_doc).await;
    let b_process = b.must_find(&process.id).await;
    let b_text = b.must_find(&process.text_doc).await;
    let o_text = o.must_find(&process.text_doc).await;

    let first = edit_text(&a_process, &a_text, &anna.id, |s| {
        s.create_article(
            1_000,
            None,
            "Artikel 1",
            "Bewoners parkeren in hun eigen wijk.",
        )
    });
    let second = edit_text(&b_process, &b_text, &bram.id, |s| {
        s.create_article(2_000, None, "Artikel 2", "Bezoekers krijgen een dagkaart.")
    });
    for (who, text) in [("Anna", &a_text), ("Bram", &b_text), ("Otto", &o_text)] {
        eventually(LIMIT, &format!("{who} to see both articles"), || {
            let ids: Vec<_> = articles(text).into_iter().map(|(id, _)| id).collect();
            (ids.contains(&first) && ids.contains(&second)).then_some(())
        })
        .await;
    }
    assert!(
        metric_sum(&nodes, "klad_relayed_total").await >= 2,
        "connections to nodes 1 and 2 were relayed to node 0"
    );

    // The web desk through any node: Fien signs in on node 1, and her
    // session (kept in the database) shows the articles on node 2.
    let form = format!("token={}", fien.token);
    let (status, head, _) = raw_http(
        &nodes[1].addr,
        &format!(
            "POST /desk/in HTTP/1.1\r\nHost: {}\r\nSec-Fetch-Site: same-origin\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            nodes[1].addr,
            form.len()
        ),
    )
    .await;
    assert_eq!(status, 303, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: klad_desk="))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let (status, _, body) = raw_http(
        &nodes[2].addr,
        &format!(
            "GET /desk/articles HTTP/1.1\r\nHost: {}\r\nCookie: klad_desk={cookie}\r\nConnection: close\r\n\r\n",
            nodes[2].addr
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.contains("Artikel 1") && body.contains("Artikel 2"),
        "the desk on node 2 shows both articles"
    );

    // Refusals as on one node: an observer's change, pushed through node 2.
    let mut otto_raw = RawPeer::connect(&nodes[2], &otto, Some("raw")).await;
    otto_raw
        .push_change(&process.text_doc, &o_text, "observer_was_here")
        .await;
    wait_refused(&nodes, "observer").await;
    // A phase change through node 2 applies to Anna's connection on node 1.
    let resp = nodes[2]
        .http(
            "POST",
            &format!("/api/processes/{}/phase", process.id),
            Some(&fien.token),
            Some(json!({ "phase": "consultation" })),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let mut anna_raw = RawPeer::connect(&nodes[1], &anna, Some("raw")).await;
    anna_raw
        .push_change(&process.text_doc, &a_text, "after_the_phase_change")
        .await;
    wait_refused(&nodes, "text_outside_drafting").await;
    // An official may not move the phase; the refusal reads the same through any node.
    let olga = invite_on(&nodes[0], &db, &process, "Olga", "official");
    let resp = nodes[1]
        .http(
            "POST",
            &format!("/api/processes/{}/phase", process.id),
            Some(&olga.token),
            Some(json!({ "phase": "final" })),
        )
        .await;
    assert_eq!(resp.status, 403, "{}", resp.body);
    for n in &nodes {
        let resp = n
            .http(
                "GET",
                &format!("/api/processes/{}", process.id),
                Some(&fien.token),
                None,
            )
            .await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(resp.json().unwrap()["phase"], "consultation");
    }
    // An id that names no process is refused as on one node (Fien's token
    // is for another process) and takes no lease.
    let resp = nodes[1]
        .http(
            "GET",
            "/api/processes/2ZZZZZZZZZZZZZZZZZZZZZZZZZZZ",
            Some(&fien.token),
            None,
        )
        .await;
    assert_eq!(resp.status, 401, "{}", resp.body);
    let leases = sql(&db.url, "SELECT count(*) FROM klad_kv_lease").await;
    assert_eq!(
        leases[0].get::<_, i64>(0),
        1,
        "one lease: the one process's"
    );
    // A token that does not verify is refused by the node it reaches.
    let (status, _) = refusal(&nodes[1].ws_url("v4.public.bogus"), None).await;
    assert_eq!(status, 401);

    // Nothing refused spread: a fresh client on node 2 reads the stored text.
    drop((otto_raw, anna_raw));
    for c in [a, b, o] {
        c.stop().await;
    }
    let fresh = Client::connect(&nodes[2], &otto).await;
    let text = fresh.must_find(&process.text_doc).await;
    eventually(LIMIT, "the stored text", || {
        (articles(&text).len() == 2).then_some(())
    })
    .await;
    assert!(!has_key(&text, "observer_was_here"));
    assert!(!has_key(&text, "after_the_phase_change"));
    fresh.stop().await;
    for mut n in nodes {
        assert!(n.terminate(), "a node exits cleanly on SIGTERM");
    }
    // A clean stop gave the lease back.
    assert_eq!(owner_address(&db, &process.id).await, None);
}

/// A small deterministic generator (the seed is printed, to replay a run).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_loses_no_acknowledged_change() {
    let Some(admin_url) = postgres_url() else {
        return;
    };
    let rounds: usize = std::env::var("KLAD_FAILOVER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed = std::env::var("KLAD_FAILOVER_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("failover: {rounds} rounds, KLAD_FAILOVER_SEED={seed}");
    let mut rng = Rng(seed);
    let db = TempDatabase::create(&admin_url).await;
    let mut nodes = start_nodes(&db, 3, &[]).await;
    let process = create_on(&nodes[0], &db, "Failover");
    let members: Vec<Member> = (0..3)
        .map(|i| {
            invite_on(
                &nodes[i],
                &db,
                &process,
                &format!("Schrijver {i}"),
                "drafter",
            )
        })
        .collect();
    let mut writers = Vec::new();
    let mut docs = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let c = Client::connect(&nodes[i], m).await;
        docs.push(c.must_find(&m.contributions_doc).await);
        writers.push(c);
    }
    let mut written: Vec<Vec<String>> = vec![Vec::new(); 3];
    let mut acked: Vec<BTreeSet<String>> = vec![BTreeSet::new(); 3];
    let mut ack = |i: usize, written: &mut Vec<Vec<String>>| {
        acked[i].extend(written[i].drain(..));
    };
    let mut serve_ms = Vec::new();
    for round in 0..rounds {
        // Every writer is served before the kill.
        for (i, doc) in docs.iter().enumerate() {
            let key = format!("r{round:03}w{i}a");
            raw_put(doc, &key, "x");
            written[i].push(key);
            assert!(
                acknowledged(doc, LIMIT).await,
                "round {round}: writer {i} is not served"
            );
            ack(i, &mut written);
        }
        let owner = owner_address(&db, &process.id)
            .await
            .expect("a node serves the process");
        let victim = nodes
            .iter()
            .position(|n| format!("http://{}", n.addr) == owner)
            .expect("the owner is one of the nodes");
        // Writes in flight, and the kill at a random moment among them.
        for j in 0..3 {
            for (i, doc) in docs.iter().enumerate() {
                let key = format!("r{round:03}w{i}b{j}");
                raw_put(doc, &key, "x");
                written[i].push(key);
            }
            tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
        }
        nodes[victim].kill9();
        let killed = Instant::now();
        // A writer on a surviving node is served again: by a new owner.
        let survivor = (victim + 1 + rng.below(2) as usize) % 3;
        let key = format!("r{round:03}w{survivor}c");
        raw_put(&docs[survivor], &key, "x");
        written[survivor].push(key);
        assert!(
            acknowledged(&docs[survivor], LIMIT).await,
            "round {round}: no node took the process over within {LIMIT:?}"
        );
        serve_ms.push(killed.elapsed().as_millis() as u64);
        ack(survivor, &mut written);
        nodes[victim].launch().await;
        // Everyone is served again (the victim's writer reconnects to the
        // restarted node, which relays it to the new owner).
        for (i, doc) in docs.iter().enumerate() {
            assert!(
                acknowledged(doc, LIMIT).await,
                "round {round}: writer {i} is not served after the failover"
            );
            ack(i, &mut written);
        }
    }
    // Every acknowledged change is stored: a fresh reader on each node has them all.
    let reader = invite_on(&nodes[0], &db, &process, "Lezer", "observer");
    for node in &nodes {
        let r = Client::connect(node, &reader).await;
        for (i, m) in members.iter().enumerate() {
            let doc = r.must_find(&m.contributions_doc).await;
            let missing = eventually(
                LIMIT,
                "the reader to have every acknowledged change",
                || {
                    let have: BTreeSet<String> =
                        doc.with_document(|d| root_keys(d).into_iter().collect());
                    let missing: Vec<String> = acked[i].difference(&have).cloned().collect();
                    missing.is_empty().then_some(missing)
                },
            )
            .await;
            assert!(missing.is_empty(), "writer {i} lost {missing:?}");
            // And the writers converged with what is stored.
            let heads = docs[i].with_document(|d| d.get_heads());
            eventually(LIMIT, "the stored document to match its writer", || {
                (doc.with_document(|d| d.get_heads()) == heads).then_some(())
            })
            .await;
        }
        r.stop().await;
    }
    serve_ms.sort_unstable();
    let total: usize = acked.iter().map(BTreeSet::len).sum();
    eprintln!(
        "failover: {rounds} kills of the owner, {total} acknowledged changes, none lost; another node served the process {}-{} ms after the kill (median {} ms), lease 1 s",
        serve_ms[0],
        serve_ms[serve_ms.len() - 1],
        serve_ms[serve_ms.len() / 2]
    );
    for w in writers {
        w.stop().await;
    }
    for n in &mut nodes {
        n.kill9();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_cannot_write_after_losing_its_lease() {
    let Some(admin_url) = postgres_url() else {
        return;
    };
    let db = TempDatabase::create(&admin_url).await;
    // Node 0 stores slowly, so a store is on its way when it is paused.
    let mut paused = Server::start(&[
        "--store",
        &db.url,
        "--lease-secs",
        "1",
        "--fault-put-delay-ms",
        "1500",
    ])
    .await;
    let mut other = Server::start(&["--store", &db.url, "--lease-secs", "1"]).await;
    let process = create_on(&paused, &db, "Gepauzeerd");
    let anna = invite_on(&paused, &db, &process, "Anna", "drafter");
    let bram = invite_on(&paused, &db, &process, "Bram", "drafter");

    let a = Client::connect(&paused, &anna).await;
    let a_doc = a.must_find(&anna.contributions_doc).await;
    raw_put(&a_doc, "before_the_pause", "x");
    assert!(acknowledged(&a_doc, LIMIT).await);
    // A change reaches node 0, whose store waits; node 0 stops.
    raw_put(&a_doc, "during_the_pause", "x");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = paused.child.as_ref().unwrap().id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    a.never_reconnect();
    // Its lease runs out; node 1 takes the process over and writes.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let b = Client::connect(&other, &bram).await;
    let b_doc = b.must_find(&bram.contributions_doc).await;
    raw_put(&b_doc, "new_owner_writes", "x");
    assert!(acknowledged(&b_doc, LIMIT).await);
    assert_eq!(
        owner_address(&db, &process.id).await,
        Some(format!("http://{}", other.addr))
    );
    // Node 0 resumes: its store is refused, nothing of it is written.
    assert!(
        std::process::Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let resumed = Instant::now();
    while paused.metric("klad_fenced_writes_total").await == 0 {
        assert!(
            resumed.elapsed() < LIMIT,
            "the resumed node never refused its store"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let check = Client::connect(&other, &bram).await;
    let stored = check.must_find(&anna.contributions_doc).await;
    eventually(LIMIT, "Anna's earlier change", || {
        has_key(&stored, "before_the_pause").then_some(())
    })
    .await;
    assert!(
        !has_key(&stored, "during_the_pause"),
        "a node that lost its lease wrote after resuming"
    );
    // The resumed node still serves clients, through the new owner.
    let c = Client::connect(&paused, &anna).await;
    let c_doc = c.must_find(&bram.contributions_doc).await;
    eventually(
        LIMIT,
        "a client of the resumed node to read through it",
        || has_key(&c_doc, "new_owner_writes").then_some(()),
    )
    .await;
    for client in [a, b, check, c] {
        client.stop().await;
    }
    paused.kill9();
    other.kill9();
}
