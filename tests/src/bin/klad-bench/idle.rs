//! `klad-bench idle --connections 1000,5000,10000`: the memory an idle
//! connection costs the server (goal: ≤ 64 KiB each).
//!
//! One release `klad-server` gets 100 processes of 10 drafters each, so the
//! documents in memory are the same at every step (12 per process: process,
//! text and 10 contributions). First one connection per process opens it as
//! a phone does (that loads every process's hub and documents, and tells the
//! generator the heads of each document); after 2 s idle the server's RSS
//! (`VmRSS`) is the baseline. Then connections are added step by step
//! (cumulatively, in one server run) until the step's total is reached:
//! connection j belongs to member j mod 1,000 on device `d<j div 1,000>`
//! (each connection its own device and so its own peer id), opens its
//! process (12 documents, all synced to the server's heads) and then sits
//! idle, reading whatever comes. When all of a step's connections are idle
//! for 2 s, the RSS is read again. Reported: RSS, KiB per connection over the
//! baseline, and the slope between steps. The file-descriptor soft limit is
//! raised to the hard limit first (the server inherits it); a step that does
//! not fit is reported, not run. With `--join-only` the added connections
//! join and open no document, which separates what a bare connection costs
//! from what its sync states cost. With `--js` (and `--js-connections`), the
//! same against the JavaScript automerge-repo server with copies of the same
//! 1,200 documents under the same ids.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use automerge::Automerge;
use futures::StreamExt as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::rawclient::servers::{Kind, KladProcess, Server, create_processes};
use crate::rawclient::{
    Client, Heads, JS_SERVER_PEER_ID, Memo, Until, procfs, raise_fd_limit, sorted, summarize_errors,
};
use crate::start::server_bin;
use crate::storm::{klad_peer, klad_url};

struct Options {
    steps: Vec<usize>,
    processes: usize,
    drafters: usize,
    idle: Duration,
    /// Bound of one step (connecting and syncing its connections).
    step_limit: Duration,
    js_dir: Option<PathBuf>,
    /// The steps against the JS server (the same as klad-server's unless given).
    js_steps: Option<Vec<usize>>,
    /// Added connections only join and open no document (what a bare
    /// connection costs, without its sync states).
    join_only: bool,
}

fn parse(args: &[&str]) -> anyhow::Result<Options> {
    let mut o = Options {
        steps: vec![1000, 5000, 10000],
        processes: 100,
        drafters: 10,
        idle: Duration::from_secs(2),
        step_limit: Duration::from_secs(240),
        js_dir: None,
        js_steps: None,
        join_only: false,
    };
    let numbers = |v: &str| -> anyhow::Result<Vec<usize>> {
        v.split(',')
            .map(|n| n.trim().parse())
            .collect::<Result<_, _>>()
            .context("connections are numbers separated by commas, e.g. 1000,5000")
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().copied().context(format!("{a} needs a value"));
        match *a {
            "--connections" => o.steps = numbers(value()?)?,
            "--js-connections" => o.js_steps = Some(numbers(value()?)?),
            "--processes" => o.processes = value()?.parse()?,
            "--drafters" => o.drafters = value()?.parse()?,
            "--step-limit-secs" => o.step_limit = Duration::from_secs(value()?.parse()?),
            "--idle-secs" => o.idle = Duration::from_secs(value()?.parse()?),
            "--join-only" => o.join_only = true,
            "--js" => {
                o.js_dir = Some(PathBuf::from(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/bench/js-server"
                )))
            }
            "--js-server-dir" => o.js_dir = Some(PathBuf::from(value()?)),
            other => bail!(
                "unknown option {other}; idle takes --connections 1000,5000,10000 --processes 100 --drafters 10 --step-limit-secs 240 --idle-secs 2 --join-only --js --js-server-dir DIR --js-connections 1000,5000"
            ),
        }
    }
    if o.processes == 0 || o.drafters == 0 {
        bail!("--processes and --drafters must be at least 1");
    }
    Ok(o)
}

/// Where connection j goes, as whom, and which process (by index) it opens.
type Who = dyn Fn(usize) -> anyhow::Result<(String, String, usize)> + Send + Sync;

/// The server a run connects to.
struct Target {
    label: &'static str,
    /// (url, peer id, process index) of connection `j`.
    who: Box<Who>,
    server_peer: &'static str,
    /// The process document of each process.
    process_docs: Vec<String>,
    /// The heads of each process's documents, when known beforehand (the
    /// JS server's documents are copies of klad-server's).
    expected: Option<Vec<Heads>>,
    /// Connections in all after each step.
    steps: Vec<usize>,
}

/// One measurement.
struct Step {
    connections: usize,
    rss_kib: u64,
    /// klad-server's sync states and open connections (from /metrics).
    sync_states: Option<f64>,
    open: Option<f64>,
    /// Connections the generator still held open when the RSS was read.
    alive: usize,
    secs: f64,
}

/// The machine's 1-minute load average (`/proc/loadavg`).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// The median of five RSS samples 100 ms apart.
async fn rss_kib(pid: u32) -> u64 {
    let ticks = procfs::clock_ticks();
    let mut v = Vec::new();
    for _ in 0..5 {
        v.push(procfs::sample(Some(pid), ticks).map_or(0, |s| s.rss_kib));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    v.sort();
    v[2]
}

async fn gauges(server: &Server) -> (Option<f64>, Option<f64>) {
    let Ok(m) = server.metrics().await else {
        return (None, None);
    };
    let get = |k: &str| m.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
    (get("klad_sync_states"), get("klad_connections_open"))
}

/// What a run against one server measured.
struct Run {
    label: &'static str,
    /// RSS once the server is up and the documents exist, before any connection.
    before_kib: u64,
    baseline: Step,
    steps: Vec<Step>,
    /// Why the run stopped before its last step, if it did.
    stopped: Option<String>,
    /// Frames idle connections received after having everything.
    idle_frames: u64,
    /// Connections lost while idle.
    lost: Vec<String>,
    /// The machine's 1-minute load average at the start and at the end.
    load: (String, String),
}

/// The idle connections of a run, and what they share.
struct Fleet {
    target: Arc<Target>,
    expected: Arc<Vec<Heads>>,
    stop: watch::Receiver<bool>,
    memo: Arc<Memo>,
    holders: Vec<JoinHandle<anyhow::Result<u64>>>,
    /// Held connections close at the latest then.
    hold_deadline: Instant,
    /// Added connections open no document.
    join_only: bool,
}

impl Fleet {
    /// Opens connections `from..to` (connection j by the target), at most
    /// 32 at a time; each opens its process and is then held idle. Returns
    /// the errors.
    async fn add(&mut self, from: usize, to: usize, deadline: Instant) -> Vec<String> {
        let results: Vec<anyhow::Result<Client>> = futures::stream::iter(from..to)
            .map(|j| {
                let target = self.target.clone();
                let expected = self.expected.clone();
                let memo = self.memo.clone();
                let join_only = self.join_only;
                async move {
                    let (url, me, p) = (target.who)(j)?;
                    let mut c = Client::connect(&url, &me, target.server_peer, deadline)
                        .await?
                        .with_memo(memo);
                    if join_only {
                        return anyhow::Ok(c);
                    }
                    c.open_process(
                        &target.process_docs[p],
                        Until::Heads(&expected[p]),
                        deadline,
                    )
                    .await?;
                    anyhow::Ok(c)
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let mut errors = Vec::new();
        for r in results {
            match r {
                Ok(c) => self.hold(c),
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        errors
    }

    /// Connections still open.
    fn alive(&self) -> usize {
        self.holders.iter().filter(|h| !h.is_finished()).count()
    }

    fn hold(&mut self, c: Client) {
        let stop = self.stop.clone();
        self.holders
            .push(tokio::spawn(c.hold(stop, self.hold_deadline, true)));
    }
}

/// Runs the steps against `server`, whose processes' documents are opened
/// first by one baseline connection per process.
async fn measure(
    server: &Server,
    target: Target,
    o: &Options,
    fd_room: usize,
) -> anyhow::Result<(Run, Vec<HashMap<String, Automerge>>)> {
    let processes = target.process_docs.len();
    let load_before = load_average();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut holders = Vec::new();
    let before_kib = rss_kib(server.pid).await;
    let hold_deadline = Instant::now() + Duration::from_secs(3600);
    // Baseline: one connection per process; it learns the heads (klad) or
    // checks them (JS, whose documents are copies).
    let t = Instant::now();
    let deadline = t + o.step_limit;
    let mut learned = Vec::with_capacity(processes);
    let mut copies = Vec::with_capacity(processes);
    for p in 0..processes {
        let (url, me, _) = (target.who)(usize::MAX - p)?;
        let mut c = Client::connect(&url, &me, target.server_peer, deadline)
            .await
            .with_context(|| format!("the baseline connection of process {p}"))?;
        let until = match &target.expected {
            Some(e) => Until::Heads(&e[p]),
            None => Until::Quiet,
        };
        c.open_process(&target.process_docs[p], until, deadline)
            .await
            .with_context(|| format!("the baseline connection of process {p}"))?;
        let heads: Heads = c
            .docs
            .iter()
            .map(|(id, d)| (id.clone(), sorted(d.doc.get_heads())))
            .collect();
        if target.expected.is_none() {
            copies.push(
                c.docs
                    .iter()
                    .map(|(id, d)| (id.clone(), d.doc.clone()))
                    .collect(),
            );
        }
        learned.push(heads);
        holders.push(tokio::spawn(c.hold(stop_rx.clone(), hold_deadline, true)));
    }
    let label = target.label;
    let mut target = target;
    let expected = Arc::new(target.expected.take().unwrap_or(learned));
    let mut fleet = Fleet {
        target: Arc::new(target),
        expected,
        stop: stop_rx,
        memo: Arc::new(Memo::default()),
        holders,
        hold_deadline,
        join_only: o.join_only,
    };
    let secs = t.elapsed().as_secs_f64();
    tokio::time::sleep(o.idle).await;
    let (sync_states, open) = gauges(server).await;
    let baseline = Step {
        connections: processes,
        rss_kib: rss_kib(server.pid).await,
        sync_states,
        open,
        alive: fleet.alive(),
        secs,
    };
    let mut run = Run {
        label,
        before_kib,
        baseline,
        steps: Vec::new(),
        stopped: None,
        idle_frames: 0,
        lost: Vec::new(),
        load: (load_before, String::new()),
    };
    // Connection numbers 0.. are the added ones; the baseline ones count too.
    let mut have = processes;
    for &k in &fleet.target.steps.clone() {
        if k <= have {
            continue;
        }
        if k > fd_room {
            run.stopped = Some(format!(
                "stopped before {k} connections: open files are limited to about {fd_room} connections per process (raise ulimit -Hn)"
            ));
            break;
        }
        eprintln!("idle: {label}, {k} connections");
        let t = Instant::now();
        let errors = fleet
            .add(have - processes, k - processes, t + o.step_limit)
            .await;
        let secs = t.elapsed().as_secs_f64();
        have = k;
        if !errors.is_empty() {
            let summary = summarize_errors(&errors)
                .into_iter()
                .take(3)
                .map(|(n, e)| format!("{n} × {e}"))
                .collect::<Vec<_>>()
                .join("; ");
            run.stopped = Some(format!(
                "at {k} connections, {} could not open their process: {summary}",
                errors.len()
            ));
            break;
        }
        tokio::time::sleep(o.idle).await;
        let (sync_states, open) = gauges(server).await;
        let rss_kib = rss_kib(server.pid).await;
        run.steps.push(Step {
            connections: k,
            rss_kib,
            sync_states,
            open,
            alive: fleet.alive(),
            secs,
        });
    }
    run.load.1 = load_average();
    let _ = stop_tx.send(true);
    // Every connection closes; those still open after 30 s are cut off.
    let holders = std::mem::take(&mut fleet.holders);
    let aborts: Vec<_> = holders.iter().map(|h| h.abort_handle()).collect();
    match tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(holders)).await {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(Ok(n)) => run.idle_frames += n,
                    Ok(Err(e)) => run.lost.push(format!("{e:#}")),
                    Err(e) => run.lost.push(format!("{e}")),
                }
            }
        }
        Err(_) => {
            let open = aborts.iter().filter(|a| !a.is_finished()).count();
            run.lost
                .push(format!("{open} connections did not close within 30 s"));
            for a in aborts {
                a.abort();
            }
        }
    }
    Ok((run, copies))
}

fn report(run: &Run, processes: usize, drafters: usize) {
    let b = &run.baseline;
    println!(
        "**{}** — {processes} processes × (2 + {drafters}) documents; RSS with the documents created and no connection: {:.1} MiB.\n",
        run.label,
        run.before_kib as f64 / 1024.0
    );
    println!(
        "| connections | open when measured | server RSS MiB | over the baseline MiB | KiB per connection over the baseline | KiB per connection since the previous row | sync states | connect and sync s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let opt = |x: Option<f64>| x.map_or("–".to_owned(), |v| format!("{v:.0}"));
    let open = |s: &Step| match s.open {
        Some(o) if o as usize != s.alive => format!("{} (server: {o:.0})", s.alive),
        _ => s.alive.to_string(),
    };
    println!(
        "| {} (baseline: one per process) | {} | {:.1} | – | – | – | {} | {:.1} |",
        b.connections,
        open(b),
        b.rss_kib as f64 / 1024.0,
        opt(b.sync_states),
        b.secs
    );
    let mut prev = b;
    for s in &run.steps {
        let over = s.rss_kib as f64 - b.rss_kib as f64;
        // Per connection actually open (all of them, unless some were lost).
        let per = over / s.alive.saturating_sub(b.alive).max(1) as f64;
        let slope = (s.rss_kib as f64 - prev.rss_kib as f64)
            / s.alive.saturating_sub(prev.alive).max(1) as f64;
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.1} |",
            s.connections,
            open(s),
            s.rss_kib as f64 / 1024.0,
            over / 1024.0,
            per,
            slope,
            opt(s.sync_states),
            s.secs
        );
        prev = s;
    }
    println!();
    if let Some(last) = run.steps.last() {
        let per = (last.rss_kib as f64 - b.rss_kib as f64)
            / last.alive.saturating_sub(b.alive).max(1) as f64;
        if run.label == Kind::Klad.label() {
            println!(
                "- Goal: ≤ 64 KiB per idle connection (over the baseline, at {} connections): {per:.1} KiB — {}.",
                last.connections,
                if per <= 64.0 { "met" } else { "not met" }
            );
        }
        if last.alive < last.connections {
            println!(
                "- Only {} of the {} connections were still open at the last measurement (the others were lost, see below); the KiB per connection are per connection still open.",
                last.alive, last.connections
            );
        }
    }
    if let Some(why) = &run.stopped {
        println!("- The run {why}.");
    }
    println!(
        "- Idle connections received {} frame(s) in all after they had everything (answers to their last sync message, and anything later).",
        run.idle_frames
    );
    println!(
        "- The machine's load average (1 min) was {} at the start of this run and {} at its end.",
        run.load.0, run.load.1
    );
    for (n, e) in summarize_errors(&run.lost).into_iter().take(3) {
        println!("- {n} idle connection(s) were lost: {e}");
    }
    println!();
}

pub async fn run(args: &[&str]) -> anyhow::Result<()> {
    let o = parse(args)?;
    let bin = server_bin()?;
    let (soft, hard) = raise_fd_limit();
    // Each connection is one socket here and one in the server; leave room
    // for the server's files and this process's own.
    let fd_room = (soft as usize).saturating_sub(200);
    let max = o
        .steps
        .iter()
        .chain(o.js_steps.iter().flatten())
        .copied()
        .max()
        .unwrap_or(0);
    let (p, d) = (o.processes, o.drafters);
    let server = Server::start_klad(&bin, max + p + 100).await?;
    let t = Instant::now();
    let procs: Vec<KladProcess> = create_processes(&server, p, d).await?;
    let setup = t.elapsed().as_secs_f64();
    let mut process_docs = Vec::with_capacity(p);
    for k in &procs {
        let token = &k
            .drafters
            .first()
            .context("a process without drafters")?
            .token;
        let (_, pid) = klad_sync::token::unverified_claims(token)
            .map_err(|e| anyhow::anyhow!("a member token: {e}"))?;
        process_docs.push(pid.to_string());
    }
    let addr = server.addr.clone();
    let tokens: Vec<Vec<String>> = procs
        .iter()
        .map(|k| k.drafters.iter().map(|x| x.token.clone()).collect())
        .collect();
    let members = p * d;
    let klad_target = Target {
        label: Kind::Klad.label(),
        process_docs: process_docs.clone(),
        expected: None,
        steps: o.steps.clone(),
        who: Box::new(move |j| {
            // Baseline connections are numbered from usize::MAX down.
            let (m, device) = if j > usize::MAX / 2 {
                ((usize::MAX - j) * d, "base".to_owned())
            } else {
                (j % members, format!("d{}", j / members))
            };
            let token = &tokens[m / d][m % d];
            Ok((
                klad_url(&addr, token, &device),
                klad_peer(token, &device)?,
                m / d,
            ))
        }),
        server_peer: klad_sync::access::SERVER_PEER_ID,
    };
    let (klad, copies) = measure(&server, klad_target, &o, fd_room).await?;
    let (problems, samples) = server.log_problems(5);
    server.stop().await;
    let mut js = None;
    if let Some(dir) = &o.js_dir {
        let server = Server::start_js(dir).await?;
        let url = format!("ws://{}/", server.addr);
        // The same documents, uploaded under the same ids.
        let mut up = Client::connect_retrying(
            &url,
            "idle-seeder",
            JS_SERVER_PEER_ID,
            Instant::now() + o.step_limit,
        )
        .await
        .context("the uploading client could not join the JS server")?;
        let all: Vec<(String, Automerge)> = copies
            .iter()
            .flat_map(|m| m.iter().map(|(id, doc)| (id.clone(), doc.clone())))
            .collect();
        let ids: Vec<String> = all.iter().map(|(id, _)| id.clone()).collect();
        up.open(all.into_iter().map(|(id, doc)| (id, Some(doc))))
            .await?;
        up.sync_until(&ids, Until::Quiet, Instant::now() + o.step_limit)
            .await
            .context("uploading the documents to the JS server")?;
        up.close().await;
        let expected: Vec<Heads> = copies
            .iter()
            .map(|m| {
                m.iter()
                    .map(|(id, doc)| (id.clone(), sorted(doc.get_heads())))
                    .collect()
            })
            .collect();
        let js_target = Target {
            label: "js automerge-repo",
            process_docs,
            expected: Some(expected),
            steps: o.js_steps.clone().unwrap_or_else(|| o.steps.clone()),
            who: Box::new(move |j| {
                let p = if j > usize::MAX / 2 {
                    usize::MAX - j
                } else {
                    (j % members) / d
                };
                Ok((url.clone(), format!("idle-{j}"), p))
            }),
            server_peer: JS_SERVER_PEER_ID,
        };
        let (run, _) = measure(&server, js_target, &o, fd_room).await?;
        server.stop().await;
        js = Some(run);
    }
    let what = if o.join_only {
        "each joins, opens no document and sits idle (a bare connection; the baseline connections open their process)".to_owned()
    } else {
        format!("each opens its process (2 + {d} documents) and sits idle")
    };
    println!(
        "Setup: {p} processes with {d} drafters each ({members} members) created in {setup:.1} s; connection j is member j mod {members} on device d<j div {members}>; {what}. RSS is VmRSS, the median of five samples after {} s idle. Open files: soft limit {soft}, hard {hard}.\n",
        o.idle.as_secs()
    );
    report(&klad, p, d);
    if problems > 0 {
        println!(
            "klad-server logged {problems} problem line(s), e.g.: {}\n",
            samples
                .iter()
                .map(|s| format!("`{}`", s.chars().take(200).collect::<String>()))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    if let Some(js) = &js {
        report(js, p, d);
    }
    Ok(())
}
