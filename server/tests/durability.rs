//! What must be shown, item 5: a restart keeps everything, and a server
//! killed with SIGKILL at random moments loses nothing it acknowledged.
//!
//! Each round, two drafters write continuously into their own contributions
//! documents. After each write a client waits (briefly) until the server's
//! sync messages say it has everything the client has
//! (`they_have_our_changes`); only then are the writes so far recorded as
//! acknowledged. At a random moment the server is killed with SIGKILL; the
//! writers are cut off for good (so they cannot re-send what the server
//! lost), the server is restarted on the same data directory, and a fresh
//! reader checks that every acknowledged write is there. `KLAD_KILL_ROUNDS`
//! rounds (default 20) with `KLAD_KILL_WRITERS` writers (default 2);
//! `KLAD_KILL_SEED` replays a run's kill moments. `scripts/kill-rounds.sh`
//! runs the long campaign (100 rounds under 50 writers).
//!
//! The server runs with a test-only storage delay (`--fault-put-delay-ms`):
//! every write waits before it reaches sled, which widens the window in which
//! an acknowledgement sent before the flush would be lost by a kill. Without
//! the durability barrier this test fails.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::*;

/// A count from the environment, or `default`; a value that is not a
/// number stops the test with a sentence rather than being ignored.
fn env_count(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            panic!("{name}={v:?} is not a whole number; give one, or unset it")
        }),
        Err(_) => default,
    }
}

/// A tiny pseudo random sequence (no extra dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

struct Writer {
    client: Client,
    acked: Arc<Mutex<BTreeSet<String>>>,
    task: tokio::task::JoinHandle<usize>,
}

async fn start_writer(
    server: &Server,
    member: &Member,
    round: usize,
    stop: Arc<AtomicBool>,
) -> Writer {
    let client = Client::connect(server, member).await;
    let doc = client.must_find(&member.contributions_doc).await;
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let task = {
        let acked = acked.clone();
        tokio::spawn(async move {
            let mut written: Vec<String> = Vec::new();
            // Bounded: at most 10_000 writes a round, and the test stops it.
            while !stop.load(Ordering::Relaxed) && written.len() < 10_000 {
                let key = format!("r{round:02}-{:06}", written.len());
                raw_put(&doc, &key, "x");
                written.push(key);
                let (peers, _) = doc.peers();
                for conn in peers.keys() {
                    let ack = doc.they_have_our_changes(*conn);
                    if tokio::time::timeout(Duration::from_millis(300), ack)
                        .await
                        .is_ok()
                    {
                        acked.lock().unwrap().extend(written.iter().cloned());
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            written.len()
        })
    };
    Writer {
        client,
        acked,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_when_the_server_is_killed() {
    let mut server = Server::start(&["--fault-put-delay-ms", "40"]).await;
    let process = server.create_process("Kill -9");
    let rounds = env_count("KLAD_KILL_ROUNDS", 20);
    let writers_per_round = env_count("KLAD_KILL_WRITERS", 2);
    let members: Vec<Member> = (0..writers_per_round)
        .map(|i| server.invite(&process, &format!("Writer {i}"), "drafter"))
        .collect();
    let reader = server.invite(&process, "Reader", "observer");

    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let seed = env_count("KLAD_KILL_SEED", now);
    let mut rng = Lcg(seed);
    let (mut total_written, mut total_acked) = (0, 0);
    for round in 0..rounds as usize {
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for m in &members {
            writers.push(start_writer(&server, m, round, stop.clone()).await);
        }
        tokio::time::sleep(Duration::from_millis(100 + rng.next(400))).await;
        // What was acknowledged up to the kill (the writers keep going until then).
        server.kill9();
        for w in &writers {
            w.client.never_reconnect();
        }
        stop.store(true, Ordering::Relaxed);
        let mut acked_sets = Vec::new();
        for (w, m) in writers.into_iter().zip(&members) {
            total_written += w.task.await.unwrap();
            let acked = w.acked.lock().unwrap().clone();
            total_acked += acked.len();
            acked_sets.push((m.contributions_doc.clone(), acked));
            // Dropped without stopping: it can no longer connect anyway.
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(2), w.client.repo.stop()).await;
            });
        }

        server.launch().await;
        let check = Client::connect(&server, &reader).await;
        for (doc_id, acked) in &acked_sets {
            let doc = check.must_find(doc_id).await;
            // The reader's first sync may arrive in parts; wait for the
            // server's copy, then compare.
            let result = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    let keys: BTreeSet<String> =
                        doc.with_document(|d| root_keys(d).into_iter().collect());
                    let missing: Vec<String> = acked.difference(&keys).cloned().collect();
                    if missing.is_empty() {
                        return Ok(());
                    }
                    let (peers, _) = doc.peers();
                    let synced = match peers.keys().next() {
                        Some(c) => tokio::time::timeout(
                            Duration::from_millis(500),
                            doc.we_have_their_changes(*c),
                        )
                        .await
                        .is_ok(),
                        None => false,
                    };
                    if synced {
                        let keys: BTreeSet<String> =
                            doc.with_document(|d| root_keys(d).into_iter().collect());
                        let missing: Vec<String> = acked.difference(&keys).cloned().collect();
                        if !missing.is_empty() {
                            return Err(missing);
                        }
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(missing)) => panic!(
                    "round {round} (KLAD_KILL_SEED={seed}): {} acknowledged writes are missing after the kill, e.g. {:?}",
                    missing.len(),
                    &missing[..missing.len().min(5)]
                ),
                Err(_) => {
                    panic!("round {round}: the reader never synced with the restarted server")
                }
            }
        }
        check.stop().await;
    }
    eprintln!(
        "kill -9: {rounds} rounds under {writers_per_round} writers (KLAD_KILL_SEED={seed}), {total_written} writes, {total_acked} acknowledged, 0 lost; the store opened after every kill"
    );
    assert!(total_acked > 0, "no write was ever acknowledged");
}
