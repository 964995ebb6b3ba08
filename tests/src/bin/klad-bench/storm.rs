//! `klad-bench storm --members 200,1000`: the evening meeting. N members of
//! one process open the app at the same moment; how long until the last of
//! them has every document of the process?
//!
//! For each N a fresh release `klad-server` (temporary data directory,
//! loopback port 0, `--max-connections` above N) gets one process with N
//! drafters through the facilitation API. One observer client (drafter 0 on
//! a device of its own) opens the process as a phone does and learns the
//! heads the server has for each of its 2 + N documents (the process
//! document, the text and every member's contributions, each created with
//! content by the server); it disconnects before the storm. Then all N
//! clients start at once, one per drafter ([`rawclient`]: a websocket each,
//! all in this process): connect, join, sync the process document, read the
//! document list from it with klad-core, sync every document on it. A client
//! has its process when each document's heads equal the server's. Measured:
//! the time from the start until each client has everything (p50, p99 and
//! the last), the server's CPU seconds and peak RSS during the storm, this
//! generator's CPU seconds (it shares the machine's cores with the server),
//! and errors (clients that failed or did not finish within the bound).
//!
//! The reference is the JavaScript automerge-repo server
//! (`tests/bench/js-server`), which has no processes and no tokens, in two
//! rows per N: (a) every client asks for one document (a copy of the klad
//! text document), and (b) like for like: the generator first uploads copies
//! of the 2 + N klad documents (same ids, same changes) and every client
//! opens the process as against klad-server. Goals (< 1 s for 200 members,
//! < 3 s for 1,000) are reported, never asserted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use automerge::Automerge;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::rawclient::servers::{Kind, Server, create_processes};
use crate::rawclient::{
    Client, Heads, JS_SERVER_PEER_ID, Memo, Until, percentile, procfs, raise_fd_limit, sorted,
    summarize_errors,
};
use crate::start::server_bin;

struct Options {
    members: Vec<usize>,
    limit: Duration,
    js_dir: Option<PathBuf>,
}

fn parse(args: &[&str]) -> anyhow::Result<Options> {
    let mut o = Options {
        members: vec![200, 1000],
        limit: Duration::from_secs(120),
        js_dir: Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/bench/js-server"
        ))),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().copied().context(format!("{a} needs a value"));
        match *a {
            "--members" => {
                o.members = value()?
                    .split(',')
                    .map(|n| n.trim().parse())
                    .collect::<Result<_, _>>()
                    .context("--members takes numbers separated by commas, e.g. 200,1000")?
            }
            "--limit-secs" => o.limit = Duration::from_secs(value()?.parse()?),
            "--js-server-dir" => o.js_dir = Some(PathBuf::from(value()?)),
            "--no-js" => o.js_dir = None,
            other => bail!(
                "unknown option {other}; storm takes --members 200,1000 --limit-secs 120 --js-server-dir DIR --no-js"
            ),
        }
    }
    Ok(o)
}

/// One client of a storm: where it connects and as whom.
struct Who {
    url: String,
    me: String,
}

/// What every client of a storm syncs.
#[derive(Clone)]
enum Plan {
    /// Opens the process as a phone does (process document first).
    Process(String),
    /// Asks for this one document.
    One(String),
}

/// What one storm measured.
struct Storm {
    /// Seconds until each client had everything; `None` for a client that failed.
    done: Vec<Option<f64>>,
    /// Seconds until each client's `peer` arrived (clients that got one).
    connected: Vec<f64>,
    errors: Vec<String>,
    /// Clients whose connection failed after they had everything.
    lost_after: Vec<String>,
    server_cpu: f64,
    server_peak_kib: u64,
    server_rss_before_kib: u64,
    generator_cpu: f64,
    /// CPU seconds the rest of the machine used meanwhile.
    others_cpu: f64,
    /// Frames the clients that had everything received until then.
    frames: u64,
    /// Seconds from the start until the last outcome.
    wall: f64,
    documents: usize,
}

/// Resets a process's peak RSS (`VmHWM`) by writing 5 to its `clear_refs`.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

async fn storm(
    server: &Server,
    server_peer: &str,
    clients: Vec<Who>,
    plan: Plan,
    expected: Arc<Heads>,
    limit: Duration,
) -> Storm {
    let ticks = procfs::clock_ticks();
    let pid = server.pid;
    let documents = match &plan {
        Plan::Process(_) => expected.len(),
        Plan::One(_) => 1,
    };
    let n = clients.len();
    let before = procfs::sample(Some(pid), ticks).unwrap_or_default();
    let reset = reset_peak(pid);
    let gen_before = procfs::sample(None, ticks).unwrap_or_default();
    let machine_before = procfs::machine_cpu();
    // The server's RSS, sampled until the storm ends (also when the peak
    // cannot be reset).
    let (sampling_tx, mut sampling_rx) = watch::channel(false);
    let sampler = tokio::spawn(async move {
        let mut max = 0;
        loop {
            if let Some(s) = procfs::sample(Some(pid), ticks) {
                max = max.max(s.rss_kib);
            }
            tokio::select! {
                _ = sampling_rx.changed() => break,
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        max
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (tx, mut rx) = mpsc::unbounded_channel::<Result<(f64, f64, u64), String>>();
    let t0 = Instant::now();
    let deadline = t0 + limit;
    // Held connections close at the latest this long after the bound.
    let hold_deadline = deadline + Duration::from_secs(30);
    let memo = Arc::new(Memo::default());
    let mut tasks = Vec::with_capacity(n);
    for who in clients {
        let memo = memo.clone();
        let tx = tx.clone();
        let stop = stop_rx.clone();
        let plan = plan.clone();
        let expected = expected.clone();
        let server_peer = server_peer.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut connected_at = None;
            let r = async {
                let mut c = Client::connect(&who.url, &who.me, &server_peer, deadline)
                    .await?
                    .with_memo(memo);
                connected_at = Some(t0.elapsed().as_secs_f64());
                let until = Until::Heads(&expected);
                match &plan {
                    Plan::Process(p) => {
                        c.open_process(p, until, deadline).await?;
                    }
                    Plan::One(d) => {
                        c.open([(d.clone(), None)]).await?;
                        c.sync_until(std::slice::from_ref(d), until, deadline)
                            .await?;
                    }
                }
                anyhow::Ok(c)
            }
            .await;
            match r {
                Ok(c) => {
                    let done = t0.elapsed().as_secs_f64();
                    let frames = c.frames_in;
                    let _ = tx.send(Ok((connected_at.unwrap_or(done), done, frames)));
                    // Stays connected, as a phone does, until the storm ends.
                    c.hold(stop, hold_deadline, false)
                        .await
                        .err()
                        .map(|e| format!("{e:#}"))
                }
                Err(e) => {
                    let _ = tx.send(Err(format!("{e:#}")));
                    None
                }
            }
        }));
    }
    drop(tx);
    let mut done = Vec::with_capacity(n);
    let mut connected = Vec::new();
    let mut errors = Vec::new();
    // Frames the clients that had everything received until then.
    let mut frames = 0u64;
    while done.len() < n {
        match tokio::time::timeout_at(deadline + Duration::from_secs(2), rx.recv()).await {
            Ok(Some(Ok((c, d, f)))) => {
                connected.push(c);
                frames += f;
                done.push(Some(d));
            }
            Ok(Some(Err(e))) => {
                errors.push(e);
                done.push(None);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let gen_after = procfs::sample(None, ticks).unwrap_or_default();
    let after = procfs::sample(Some(pid), ticks).unwrap_or_default();
    let machine_after = procfs::machine_cpu();
    let wall = t0.elapsed().as_secs_f64();
    let _ = sampling_tx.send(true);
    let sampled = sampler.await.unwrap_or(0);
    let server_peak_kib = if reset {
        sampled.max(after.peak_kib)
    } else {
        sampled
    };
    // Clients that never reported (the bound passed without an answer).
    while done.len() < n {
        errors.push("no outcome before the bound".into());
        done.push(None);
    }
    let _ = stop_tx.send(true);
    // Every client closes its connection; those still busy after 30 s are
    // cut off.
    let mut lost_after = Vec::new();
    let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
    let joined =
        tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(tasks)).await;
    match joined {
        Ok(results) => lost_after.extend(results.into_iter().filter_map(|r| r.ok().flatten())),
        Err(_) => {
            let open = aborts.iter().filter(|a| !a.is_finished()).count();
            lost_after.push(format!(
                "{open} clients were still open 30 s after the storm and were cut off"
            ));
            for a in aborts {
                a.abort();
            }
        }
    }
    let server_cpu = after.cpu_secs - before.cpu_secs;
    let generator_cpu = gen_after.cpu_secs - gen_before.cpu_secs;
    let machine_cpu = machine_after.0.saturating_sub(machine_before.0) as f64 / ticks;
    Storm {
        done,
        connected,
        errors,
        lost_after,
        server_cpu,
        others_cpu: (machine_cpu - server_cpu - generator_cpu).max(0.0),
        frames,
        wall,
        server_peak_kib,
        server_rss_before_kib: before.rss_kib,
        generator_cpu,
        documents,
    }
}

/// A row of the table and the notes under it.
struct Row {
    server: String,
    members: usize,
    storm: Storm,
    notes: Vec<String>,
}

fn secs(x: Option<f64>, limit: Duration) -> String {
    match x {
        Some(s) if s.is_finite() => format!("{s:.2}"),
        _ => format!("> {}", limit.as_secs()),
    }
}

impl Row {
    fn finished(&self) -> usize {
        self.storm.done.iter().flatten().count()
    }

    /// Times of every client, a failed one counting as never.
    fn times(&self) -> Vec<f64> {
        self.storm
            .done
            .iter()
            .map(|d| d.unwrap_or(f64::INFINITY))
            .collect()
    }

    fn last(&self) -> Option<f64> {
        let t = self.times();
        t.iter().copied().reduce(f64::max).filter(|x| x.is_finite())
    }

    fn line(&self, limit: Duration) -> String {
        let t = self.times();
        let s = &self.storm;
        let failed = s.done.len() - self.finished();
        let last = match self.last() {
            Some(l) => format!("{l:.2}"),
            None => format!(
                "not finished ({} of {} had everything)",
                self.finished(),
                s.done.len()
            ),
        };
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.1} | {:.2} |",
            self.server,
            self.members,
            s.documents,
            secs(percentile(&t, 50.0), limit),
            secs(percentile(&t, 99.0), limit),
            last,
            failed,
            s.server_cpu,
            s.server_peak_kib as f64 / 1024.0,
            s.generator_cpu,
        )
    }
}

/// A klad-server sync URL for a member's token on `device`.
pub(crate) fn klad_url(addr: &str, token: &str, device: &str) -> String {
    let q = klad_sync::connect::SyncQuery {
        token: Some(token.to_owned()),
        device: Some(device.to_owned()),
        ..Default::default()
    };
    format!(
        "ws://{addr}{}?{}",
        klad_sync::connect::SYNC_PATH,
        q.to_query()
    )
}

/// The peer id a member's token on `device` must join with.
pub(crate) fn klad_peer(token: &str, device: &str) -> anyhow::Result<String> {
    let (member, _) = klad_sync::token::unverified_claims(token)
        .map_err(|e| anyhow::anyhow!("a member token: {e}"))?;
    Ok(klad_sync::access::peer_id_for(&member, Some(device)))
}

/// The process's documents as klad-server has them: one observer opens the
/// process as a phone does. Returns the list (process document first) and
/// the documents.
async fn observe_klad(
    server: &Server,
    token: &str,
    deadline: Instant,
) -> anyhow::Result<(Vec<String>, HashMap<String, Automerge>)> {
    let device = "observer";
    let (_, pid) = klad_sync::token::unverified_claims(token)
        .map_err(|e| anyhow::anyhow!("a member token: {e}"))?;
    let mut c = Client::connect(
        &klad_url(&server.addr, token, device),
        &klad_peer(token, device)?,
        klad_sync::access::SERVER_PEER_ID,
        deadline,
    )
    .await
    .context("the observer could not connect")?;
    let list = c
        .open_process(pid.as_str(), Until::Quiet, deadline)
        .await
        .context("the observer could not open the process")?;
    let docs = c.docs.drain().map(|(id, d)| (id, d.doc)).collect();
    c.close().await;
    Ok((list, docs))
}

/// Uploads copies of `docs` to the JS server and checks, with a second
/// client, that it serves each with the same heads.
async fn seed_js(
    server: &Server,
    docs: &[(String, Automerge)],
    deadline: Instant,
) -> anyhow::Result<()> {
    let url = format!("ws://{}/", server.addr);
    let mut up = Client::connect_retrying(&url, "storm-seeder", JS_SERVER_PEER_ID, deadline)
        .await
        .context("the uploading client could not join")?;
    up.open(docs.iter().map(|(id, d)| (id.clone(), Some(d.clone()))))
        .await?;
    let ids: Vec<String> = docs.iter().map(|(id, _)| id.clone()).collect();
    up.sync_until(&ids, Until::Quiet, deadline)
        .await
        .context("uploading the documents")?;
    let expected: Heads = docs
        .iter()
        .map(|(id, d)| (id.clone(), sorted(d.get_heads())))
        .collect();
    let mut check = Client::connect(&url, "storm-checker", JS_SERVER_PEER_ID, deadline).await?;
    check.open(ids.iter().map(|id| (id.clone(), None))).await?;
    check
        .sync_until(&ids, Until::Heads(&expected), deadline)
        .await
        .context("reading the uploaded documents back")?;
    check.close().await;
    // The seeder stays until the documents are read back (its copies are
    // the only ones until the server has them); then it goes too.
    up.close().await;
    Ok(())
}

fn problems(server: &Server, notes: &mut Vec<String>) {
    let (count, samples) = server.log_problems(5);
    if count > 0 {
        notes.push(format!(
            "the server logged {count} problem line(s), e.g.: {}",
            samples
                .iter()
                .map(|s| format!("`{}`", s.chars().take(200).collect::<String>()))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
}

fn storm_notes(s: &Storm, notes: &mut Vec<String>) {
    if let (Some(p50), Some(p99)) = (
        percentile(&s.connected, 50.0),
        percentile(&s.connected, 99.0),
    ) {
        notes.push(format!(
            "joined (websocket open, `peer` received): p50 {p50:.2} s, p99 {p99:.2} s"
        ));
    }
    let syncs = s.done.len() * s.documents;
    notes.push(format!(
        "server RSS before the storm {:.1} MiB; server CPU per document sync (client × document) {:.0} µs, generator CPU {:.0} µs",
        s.server_rss_before_kib as f64 / 1024.0,
        s.server_cpu * 1e6 / syncs.max(1) as f64,
        s.generator_cpu * 1e6 / syncs.max(1) as f64,
    ));
    let finished = s.done.iter().flatten().count();
    if finished > 0 {
        notes.push(format!(
            "a client that had everything had received {:.2} frames per document by then",
            s.frames as f64 / (finished * s.documents) as f64
        ));
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    notes.push(format!(
        "the rest of the machine used {:.1} CPU-s of the {:.1} available during the storm",
        s.others_cpu,
        s.wall * cores as f64
    ));
    for (n, e) in summarize_errors(&s.errors).into_iter().take(5) {
        notes.push(format!("{n} client(s) failed: {e}"));
    }
    for (n, e) in summarize_errors(&s.lost_after).into_iter().take(3) {
        notes.push(format!(
            "{n} client(s) lost their connection after having everything: {e}"
        ));
    }
}

async fn klad_metrics(server: &Server, notes: &mut Vec<String>) {
    match server.metrics().await {
        Ok(m) => {
            let pick: Vec<String> = m
                .iter()
                .filter(|(k, v)| {
                    *v != 0.0
                        && [
                            "klad_slow_clients_total",
                            "klad_rejected_connections_total",
                            "klad_server_closed_connections_total",
                            "klad_refused_writes_total",
                        ]
                        .iter()
                        .any(|p| k.starts_with(p))
                })
                .map(|(k, v)| format!("{k} = {v}"))
                .collect();
            if !pick.is_empty() {
                notes.push(format!("server metrics: {}", pick.join(", ")));
            }
        }
        Err(e) => notes.push(format!("no metrics after the storm: {e}")),
    }
}

/// klad-server with `n` members; returns its row and copies of the documents.
async fn klad_row(
    bin: &std::path::Path,
    n: usize,
    limit: Duration,
) -> anyhow::Result<(Row, Vec<String>, HashMap<String, Automerge>)> {
    let server = Server::start_klad(bin, n + 100).await?;
    let t = Instant::now();
    let procs = create_processes(&server, 1, n).await?;
    let p = procs.first().context("no process was created")?;
    let setup = t.elapsed().as_secs_f64();
    let token = &p.drafters.first().context("no drafter")?.token;
    let (list, docs) = observe_klad(&server, token, Instant::now() + limit).await?;
    if list.len() != n + 2 {
        bail!("the process lists {} documents, not 2 + {n}", list.len());
    }
    let empty = list
        .iter()
        .filter(|d| docs.get(*d).is_none_or(|x| x.get_heads().is_empty()))
        .count();
    if empty > 0 {
        bail!("{empty} of the process's documents have no content on the server");
    }
    let expected: Heads = docs
        .iter()
        .map(|(id, d)| (id.clone(), sorted(d.get_heads())))
        .collect();
    let process_doc = list[0].clone();
    let clients = p
        .drafters
        .iter()
        .map(|d| {
            Ok(Who {
                url: klad_url(&server.addr, &d.token, "phone"),
                me: klad_peer(&d.token, "phone")?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let s = storm(
        &server,
        klad_sync::access::SERVER_PEER_ID,
        clients,
        Plan::Process(process_doc),
        Arc::new(expected),
        limit,
    )
    .await;
    let mut notes = vec![format!(
        "setup: {n} drafters invited in {setup:.1} s; the observer disconnected before the storm, so the process's hub was loaded"
    )];
    storm_notes(&s, &mut notes);
    klad_metrics(&server, &mut notes).await;
    problems(&server, &mut notes);
    if !server.stop().await {
        notes.push("the server did not stop cleanly after the storm".into());
    }
    Ok((
        Row {
            server: Kind::Klad.label().into(),
            members: n,
            storm: s,
            notes,
        },
        list,
        docs,
    ))
}

/// The JavaScript server with copies of `docs`: every client asks for `one`
/// only, or opens the process.
async fn js_row(
    js_dir: &std::path::Path,
    n: usize,
    list: &[String],
    docs: &HashMap<String, Automerge>,
    one: Option<&str>,
    limit: Duration,
) -> anyhow::Result<Row> {
    let server = Server::start_js(js_dir).await?;
    let upload: Vec<(String, Automerge)> = match one {
        Some(id) => vec![(id.to_owned(), docs[id].clone())],
        None => list
            .iter()
            .map(|id| (id.clone(), docs[id].clone()))
            .collect(),
    };
    let t = Instant::now();
    if let Err(e) = seed_js(&server, &upload, Instant::now() + limit).await {
        let (_, lines) = server.log_problems(5);
        bail!("{e:#}; the server's log says: {}", lines.join(" | "));
    }
    let setup = t.elapsed().as_secs_f64();
    let expected: Heads = upload
        .iter()
        .map(|(id, d)| (id.clone(), sorted(d.get_heads())))
        .collect();
    let url = format!("ws://{}/", server.addr);
    let clients = (0..n)
        .map(|i| Who {
            url: url.clone(),
            me: format!("storm-{i}"),
        })
        .collect();
    let plan = match one {
        Some(id) => Plan::One(id.to_owned()),
        None => Plan::Process(list[0].clone()),
    };
    let s = storm(
        &server,
        JS_SERVER_PEER_ID,
        clients,
        plan,
        Arc::new(expected),
        limit,
    )
    .await;
    let mut notes = vec![format!(
        "setup: {} document(s) uploaded and read back in {setup:.1} s",
        upload.len()
    )];
    storm_notes(&s, &mut notes);
    problems(&server, &mut notes);
    if !server.stop().await {
        notes.push("the server did not stop cleanly after the storm".into());
    }
    Ok(Row {
        server: match one {
            Some(_) => "js automerge-repo, one document".into(),
            None => "js automerge-repo, the process's documents".into(),
        },
        members: n,
        storm: s,
        notes,
    })
}

pub async fn run(args: &[&str]) -> anyhow::Result<()> {
    let o = parse(args)?;
    let bin = server_bin()?;
    let (soft, hard) = raise_fd_limit();
    // A socket per client here, and one per client in the server (which
    // inherits the limit).
    let need = o.members.iter().copied().max().unwrap_or(0) + 256;
    if soft < need as u64 {
        bail!(
            "open files are limited to {soft} (hard {hard}); the storm needs about {need}: raise the hard limit (ulimit -Hn)"
        );
    }
    let mut rows = Vec::new();
    for &n in &o.members {
        eprintln!("storm: klad-server, {n} members");
        let (row, list, docs) = klad_row(&bin, n, o.limit).await?;
        rows.push(row);
        if let Some(js) = &o.js_dir {
            let text = list.get(1).context("the process lists no text document")?;
            eprintln!("storm: js automerge-repo, {n} clients, one document");
            match js_row(js, n, &list, &docs, Some(text), o.limit).await {
                Ok(r) => rows.push(r),
                Err(e) => eprintln!("storm: the JS run (one document) could not be made: {e:#}"),
            }
            eprintln!(
                "storm: js automerge-repo, {n} clients, {} documents",
                list.len()
            );
            match js_row(js, n, &list, &docs, None, o.limit).await {
                Ok(r) => rows.push(r),
                Err(e) => eprintln!("storm: the JS run (all documents) could not be made: {e:#}"),
            }
        }
    }
    println!(
        "| server | members | documents per client | p50 s | p99 s | last s | errors | server CPU s | server RSS peak MiB | generator CPU s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!("{}", r.line(o.limit));
    }
    println!();
    for r in rows.iter().filter(|r| r.server == Kind::Klad.label()) {
        let goal = if r.members <= 200 { 1.0 } else { 3.0 };
        let verdict = match r.last() {
            Some(l) if l < goal && r.finished() == r.storm.done.len() => {
                format!("met (the last had everything after {l:.2} s)")
            }
            Some(l) => format!("not met (the last had everything after {l:.2} s)"),
            None => format!(
                "not met ({} of {} clients had everything within {} s)",
                r.finished(),
                r.storm.done.len(),
                o.limit.as_secs()
            ),
        };
        println!(
            "- Goal: {} members of one process have everything in < {goal:.0} s on klad-server — {verdict}.",
            r.members
        );
    }
    println!();
    println!("Notes per run:");
    println!();
    for r in &rows {
        println!(
            "- {}, {} members: {}.",
            r.server,
            r.members,
            r.notes.join("; ")
        );
    }
    println!(
        "\nAll clients run in this one generator process on the same machine (its CPU is in the table); the storm is bounded at {} s. Open files: soft limit {soft}, hard {hard}.",
        o.limit.as_secs()
    );
    Ok(())
}
