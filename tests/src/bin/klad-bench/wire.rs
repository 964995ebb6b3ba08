//! `klad-bench wire`: what sync costs on the wire, measured at the client's
//! websocket against a real release `klad-server` on loopback.
//!
//! 1. A fresh peer fetches the trace document (the 259,778-edit paper, typed
//!    into an article through klad-core, 100 edits per change): bytes and
//!    frames, against the size of `automerge::save()` of the same document.
//! 2. Offline catch-up: a phone with 1,000 local edits (one change each)
//!    reconnects to a server that has 1,000 other edits: frames each way until
//!    both have everything (round trips).
//! 3. Typing live: bytes on the wire per keystroke, one change per keystroke
//!    against keystrokes coalesced into 75 ms windows (what klad-ffi does),
//!    with the bytes of the Automerge changes themselves as the baseline.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, ROOT, ReadDoc};
use klad_core::document::KladDocument;
use klad_core::{MemberId, ProcessDoc, ProcessDocs, Session, TextDoc};
use samod::DocHandle;
use serde_json::{Value, json};

use crate::samod_client::{Client, Counts};
use crate::start::server_bin;

const LIMIT: Duration = Duration::from_secs(120);
/// The one-way network delay the catching-up clients see (simulated at the
/// client), so that round trips show as time: a round trip is 2 × this.
const LATENCY: Duration = Duration::from_millis(50);

fn round_trips(secs: f64) -> f64 {
    secs / (2.0 * LATENCY.as_secs_f64())
}

struct Server {
    child: std::process::Child,
    addr: String,
    admin: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_server(bin: &Path) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let child = std::process::Command::new(bin)
        .arg("--data")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let t0 = Instant::now();
    let addr = loop {
        let f: Option<klad_server::server::ServerFile> =
            std::fs::read(data.join(klad_server::server::SERVER_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(f) = f.filter(|f| f.pid == child.id()) {
            break f.listen;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(30),
            "klad-server did not start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let admin = std::fs::read_to_string(klad_server::auth::admin_secret_path(&data))?
        .trim()
        .to_owned();
    Ok(Server {
        child,
        addr,
        admin,
        _dir: dir,
    })
}

impl Server {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let r =
            klad_server::client::request(&self.addr, "POST", path, Some(&self.admin), Some(&body))
                .await?;
        anyhow::ensure!(r.status < 300, "{path}: {} {}", r.status, r.body);
        Ok(serde_json::from_str(&r.body)?)
    }
}

struct Member {
    id: String,
    token: String,
}

async fn process_with(
    server: &Server,
    names: &[&str],
) -> anyhow::Result<(String, String, Vec<Member>)> {
    let p = server
        .post("/api/processes", json!({"title": "Wire"}))
        .await?;
    let pid = p["process"]["process_id"]
        .as_str()
        .context("process id")?
        .to_owned();
    let text = p["process"]["text_doc"]
        .as_str()
        .context("text doc")?
        .to_owned();
    let mut members = Vec::new();
    for n in names {
        let m = server
            .post(
                &format!("/api/processes/{pid}/members"),
                json!({"name": n, "role": "drafter"}),
            )
            .await?;
        members.push(Member {
            id: m["member_id"].as_str().context("member id")?.to_owned(),
            token: m["token"].as_str().context("token")?.to_owned(),
        });
    }
    Ok((pid, text, members))
}

/// Runs klad-core session operations on the text as `me` and applies the
/// changes to samod's copy (as a well-behaved client does).
fn with_session<R>(
    process: &DocHandle,
    text: &DocHandle,
    me: &str,
    f: impl FnOnce(&mut Session) -> klad_core::Result<R>,
) -> anyhow::Result<R> {
    let p = process.with_document(|d| ProcessDoc::from_automerge(d.clone()))?;
    text.with_document(|d| {
        let docs = ProcessDocs {
            process: p,
            text: TextDoc::from_automerge(d.clone())?,
            contributions: BTreeMap::new(),
        };
        let mut s = Session::new(docs, MemberId::from(me), d.get_actor().clone());
        let r = f(&mut s)?;
        let changes = d.get_changes_added(s.docs().text.automerge());
        d.apply_changes(changes)?;
        Ok(r)
    })
}

fn body_obj(d: &automerge::Automerge, article: &str) -> anyhow::Result<ObjId> {
    let (_, articles) = d.get(ROOT, "articles")?.context("articles")?;
    let (_, a) = d.get(&articles, article)?.context("the article")?;
    let (_, body) = d.get(&a, "body")?.context("the body")?;
    anyhow::ensure!(
        d.object_type(&body)? == ObjType::Text,
        "the body is not text"
    );
    Ok(body)
}

fn kib(b: u64) -> String {
    format!("{:.1} KiB", b as f64 / 1024.0)
}

pub async fn run() -> anyhow::Result<()> {
    let bin = server_bin()?;
    fresh_peer(&bin).await?;
    catch_up(&bin).await?;
    typing(&bin).await?;
    Ok(())
}

async fn fresh_peer(bin: &Path) -> anyhow::Result<()> {
    let server = start_server(bin).await?;
    let (pid, text_id, m) = process_with(&server, &["Auteur", "Nieuw"]).await?;
    let writer = Client::connect(&server.addr, &m[0].token, &m[0].id).await?;
    let process = writer.find(&pid).await?;
    let text = writer.find(&text_id).await?;
    let trace = klad_tests::automerge_paper_trace()?;
    let edits = trace.splices();
    with_session(&process, &text, &m[0].id, |s| {
        let a = s.create_article(1, None, "Paper", "")?;
        for (i, chunk) in edits.chunks(100).enumerate() {
            s.edit_body(2 + i as i64, &a, chunk)?;
        }
        Ok(())
    })?;
    writer.wait_server_has(&text, LIMIT).await?;
    let (saved, heads) = text.with_document(|d| (d.save().len() as u64, d.get_heads()));
    writer.stop().await;

    // The same fetch on loopback and with a simulated delay: the difference
    // in time, over one round trip's delay, is the round trips.
    let mut runs = Vec::new();
    for latency in [Duration::ZERO, LATENCY] {
        let reader =
            Client::connect_with_latency(&server.addr, &m[1].token, &m[1].id, latency).await?;
        let before = reader.counter.get();
        let t0 = Instant::now();
        let got = reader.find(&text_id).await?;
        let deadline = Instant::now() + LIMIT;
        while got.with_document(|d| d.get_heads()) != heads {
            anyhow::ensure!(Instant::now() < deadline, "the fresh peer did not catch up");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        runs.push((t0.elapsed().as_secs_f64(), reader.counter.get() - before));
        drop(got);
        reader.stop().await;
    }
    let (fast, (secs, c)) = (runs[0].0, runs[1]);
    println!("### A fresh peer fetches the trace document\n");
    println!("| | bytes | frames | ratio to `save()` |");
    println!("|---|---|---|---|");
    println!(
        "| `automerge::save()` of the document | {} | | 1.00× |",
        kib(saved)
    );
    println!(
        "| received by the fresh peer | {} | {} | {:.2}× |",
        kib(c.received_bytes),
        c.received_frames,
        c.received_bytes as f64 / saved as f64
    );
    println!(
        "| sent by the fresh peer | {} | {} | |",
        kib(c.sent_bytes),
        c.sent_frames
    );
    println!(
        "\nThe fresh peer (its `join` already done) was up to date after {fast:.3} s on loopback and {secs:.3} s with {} ms of simulated latency each way: {:.1} round trip(s). Goal ≤ 1.3× `save()`: {}.\n",
        LATENCY.as_millis(),
        round_trips(secs - fast),
        if c.received_bytes as f64 <= 1.3 * saved as f64 {
            "met"
        } else {
            "not met"
        }
    );
    Ok(())
}

/// Makes `n` edits (one change each) at the start of the article's body.
fn edit_offline(h: &DocHandle, article: &str, who: &str, n: usize) -> anyhow::Result<()> {
    h.with_document(|d| {
        let body = body_obj(d, article)?;
        for i in 0..n {
            let mut tx = d.transaction();
            tx.splice_text(&body, 0, 0, &format!("{who}{i} "))?;
            tx.commit();
        }
        Ok(())
    })
}

/// Waits until `c` has all of `theirs` and the server all of `h`; returns
/// the time it took and the counts at that moment (after it, only trailing
/// acknowledgements follow).
async fn settle(
    c: &Client,
    h: &DocHandle,
    theirs: &[automerge::ChangeHash],
) -> anyhow::Result<(f64, Counts)> {
    let t0 = Instant::now();
    let deadline = t0 + LIMIT;
    loop {
        let have = h.with_document(|d| theirs.iter().all(|x| d.get_change_by_hash(x).is_some()));
        if have {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "catch-up did not finish");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    c.wait_server_has(h, LIMIT).await?;
    Ok((t0.elapsed().as_secs_f64(), c.counter.get()))
}

/// One offline catch-up: the counts and times of the phone that only has
/// edits the server lacks, then of the one that also lacks the server's.
struct CatchUp {
    upload: (Counts, f64),
    both: (Counts, f64),
    trailing: Counts,
}

async fn catch_up_once(bin: &Path, latency: Duration) -> anyhow::Result<CatchUp> {
    const N: usize = 1_000;
    let server = start_server(bin).await?;
    let (pid, text_id, m) = process_with(&server, &["Telefoon", "Ander"]).await?;
    let phone = Client::connect_with_latency(&server.addr, &m[0].token, &m[0].id, latency).await?;
    let process = phone.find(&pid).await?;
    let text = phone.find(&text_id).await?;
    let article = with_session(&process, &text, &m[0].id, |s| {
        s.create_article(1, None, "Artikel 1", "De wijk beslist mee.")
    })?;
    phone.wait_server_has(&text, LIMIT).await?;
    let other = Client::connect_with_latency(&server.addr, &m[1].token, &m[1].id, latency).await?;
    let other_text = other.find(&text_id).await?;
    let deadline = Instant::now() + LIMIT;
    while other_text.with_document(|d| body_obj(d, article.as_str()).is_err()) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the article did not reach the second client"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Both go offline and edit.
    phone.disconnect();
    other.disconnect();
    edit_offline(&text, article.as_str(), "p", N)?;
    edit_offline(&other_text, article.as_str(), "o", N)?;

    // The other phone brings its 1,000 edits to the server first.
    let before = other.counter.get();
    other.reconnect().await?;
    let (up_secs, at) = settle(&other, &other_text, &[]).await?;
    let upload = (at - before, up_secs);
    let server_heads = other_text.with_document(|d| d.get_heads());
    other.stop().await;

    // Then the phone: it has 1,000 the server lacks, and lacks 1,000.
    let before = phone.counter.get();
    phone.reconnect().await?;
    let (secs, at) = settle(&phone, &text, &server_heads).await?;
    let both = (at - before, secs);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let trailing = phone.counter.get() - at;
    phone.stop().await;
    Ok(CatchUp {
        upload,
        both,
        trailing,
    })
}

async fn catch_up(bin: &Path) -> anyhow::Result<()> {
    // The same exchange without and with a simulated network delay: the
    // difference in time, over one round trip's delay, is the round trips.
    let fast = catch_up_once(bin, Duration::ZERO).await?;
    let slow = catch_up_once(bin, LATENCY).await?;
    println!(
        "### Offline catch-up (1,000 local edits against 1,000 on the server, one change each)\n"
    );
    println!(
        "| who reconnects | frames sent | frames received | bytes sent | bytes received | time on loopback | time with {} ms latency each way | round trips |",
        LATENCY.as_millis()
    );
    println!("|---|---|---|---|---|---|---|---|");
    let row = |who: &str, f: (Counts, f64), s: (Counts, f64)| {
        let rounds = round_trips(s.1 - f.1);
        println!(
            "| {who} | {} | {} | {} | {} | {:.3} s | {:.3} s | {:.1} |",
            s.0.sent_frames,
            s.0.received_frames,
            kib(s.0.sent_bytes),
            kib(s.0.received_bytes),
            f.1,
            s.1,
            rounds
        );
        rounds
    };
    row(
        "a phone with 1,000 edits the server lacks",
        fast.upload,
        slow.upload,
    );
    let rounds = row(
        "a phone with 1,000 edits, lacking 1,000 others",
        fast.both,
        slow.both,
    );
    println!(
        "\nCounted from the end of the `join`/`peer` handshake (whose two frames are in the counts) until both sides have everything; {} acknowledgement frame(s) sent and {} received after that are not. Round trips = (time with latency − time on loopback) / (2 × latency). Goal ≤ 2 round trips: {}.\n",
        slow.trailing.sent_frames,
        slow.trailing.received_frames,
        if rounds <= 2.2 { "met" } else { "not met" }
    );
    Ok(())
}

async fn typing(bin: &Path) -> anyhow::Result<()> {
    const KEYS: usize = 300;
    const GAP: Duration = Duration::from_millis(25);
    const WINDOW: Duration = Duration::from_millis(75);
    let server = start_server(bin).await?;
    let (pid, text_id, m) = process_with(&server, &["Typist", "Lezer"]).await?;
    let typist = Client::connect(&server.addr, &m[0].token, &m[0].id).await?;
    let process = typist.find(&pid).await?;
    let text = typist.find(&text_id).await?;
    let article = with_session(&process, &text, &m[0].id, |s| {
        s.create_article(1, None, "Artikel 1", "")
    })?;
    typist.wait_server_has(&text, LIMIT).await?;
    let reader = Client::connect(&server.addr, &m[1].token, &m[1].id).await?;
    let seen = reader.find(&text_id).await?;
    println!(
        "### Typing live: {KEYS} keystrokes, one every {} ms\n",
        GAP.as_millis()
    );
    println!(
        "| how changes are made | changes | bytes of the changes | frames sent | bytes sent per keystroke | bytes the other client received per keystroke |"
    );
    println!("|---|---|---|---|---|---|");
    for coalesce in [false, true] {
        let (b0, r0) = (typist.counter.get(), reader.counter.get());
        let heads0 = text.with_document(|d| d.get_heads());
        let mut pending = 0usize;
        let mut window_start = Instant::now();
        let mut typed = String::new();
        for k in 0..KEYS {
            let ch = char::from(b'a' + (k % 26) as u8);
            typed.push(ch);
            pending += 1;
            let flush = !coalesce || window_start.elapsed() >= WINDOW || k + 1 == KEYS;
            if flush {
                let chunk: String = typed
                    .chars()
                    .skip(typed.chars().count() - pending)
                    .collect();
                text.with_document(|d| -> anyhow::Result<()> {
                    let body = body_obj(d, article.as_str())?;
                    let len = d.length(&body);
                    let mut tx = d.transaction();
                    tx.splice_text(&body, len, 0, &chunk)?;
                    tx.commit();
                    Ok(())
                })?;
                pending = 0;
                window_start = Instant::now();
            }
            tokio::time::sleep(GAP).await;
        }
        typist.wait_server_has(&text, LIMIT).await?;
        let heads = text.with_document(|d| d.get_heads());
        let deadline = Instant::now() + LIMIT;
        while seen.with_document(|d| d.get_heads()) != heads {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the reader did not receive the typing"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (b, r) = (typist.counter.get() - b0, reader.counter.get() - r0);
        let (changes, change_bytes) = text.with_document(|d| {
            let cs = d.get_changes(&heads0);
            (
                cs.len(),
                cs.iter().map(|c| c.raw_bytes().len()).sum::<usize>(),
            )
        });
        println!(
            "| {} | {changes} | {:.1} per keystroke | {} | {:.1} | {:.1} |",
            if coalesce {
                "coalesced, 75 ms windows (klad-ffi)"
            } else {
                "one change per keystroke"
            },
            change_bytes as f64 / KEYS as f64,
            b.sent_frames,
            b.sent_bytes as f64 / KEYS as f64,
            r.received_bytes as f64 / KEYS as f64,
        );
    }
    println!();
    typist.stop().await;
    reader.stop().await;
    drop(server);
    Ok(())
}
