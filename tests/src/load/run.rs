//! One run: one server, one step (a number of clients), from a fresh server
//! to its stop, every phase bounded in time.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tokio::sync::watch;

use super::clients::{
    self, Client, Counters, GroupLog, Origin, Received, Rng, TypingStats, connect_first,
    connect_other,
};
use super::procfs::{self, ProcSample};
use super::report::{LatencySummary, RunResult};
use super::servers::{self, Kind, Server};
use super::soak;

/// What every run does; the same for both servers.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Clients per document (one document per klad-server process).
    pub per_doc: usize,
    /// Time between two edits of one client.
    pub interval: Duration,
    /// Steady load after every client is connected.
    pub steady: Duration,
    /// The longest wait for the last deliveries after the load stops.
    pub drain: Duration,
    /// The longest the connect phase of one step may take.
    pub connect_limit: Duration,
    /// Clients connecting at the same time.
    pub connect_parallelism: usize,
    /// The release klad-server binary.
    pub klad_server: PathBuf,
    /// The directory of the JavaScript server (`server.mjs`, `node_modules`).
    pub js_dir: PathBuf,
    /// Sample the server this often during the steady load (the soak).
    pub sample_every: Option<Duration>,
}

/// Who a client is: its group, index in the group, peer id and URL.
struct Seat {
    group: usize,
    index: usize,
    peer_id: String,
    url: url::Url,
}

/// Runs `clients` clients against a fresh server of `kind`.
pub async fn run(kind: Kind, clients: usize, plan: &Plan) -> anyhow::Result<RunResult> {
    let ticks = procfs::clock_ticks();
    let groups = clients / plan.per_doc;
    // How busy the machine is before this run starts (other work on it
    // skews every number; the report says so).
    let (busy0, total0) = procfs::machine_cpu();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (busy1, total1) = procfs::machine_cpu();
    let busy_before_pct = if total1 > total0 {
        (busy1 - busy0) as f64 * 100.0 / (total1 - total0) as f64
    } else {
        0.0
    };
    let server = match kind {
        Kind::Klad => Server::start_klad(&plan.klad_server, clients + 64).await?,
        Kind::Js => Server::start_js(&plan.js_dir).await?,
    };
    let mut result = RunResult::new(kind, clients, groups);
    result.busy_before_pct = busy_before_pct;

    // Documents and seats.
    let setup_started = Instant::now();
    let mut seats: Vec<Vec<Seat>> = Vec::with_capacity(groups);
    let mut origins: Vec<Origin> = Vec::with_capacity(groups);
    match kind {
        Kind::Klad => {
            for (g, p) in servers::create_processes(&server, groups, plan.per_doc)
                .await?
                .into_iter()
                .enumerate()
            {
                let mut group = Vec::with_capacity(plan.per_doc);
                for (i, d) in p.drafters.iter().enumerate() {
                    group.push(Seat {
                        group: g,
                        index: i,
                        peer_id: d.peer_id.clone(),
                        url: server.ws_url(Some(&d.token))?,
                    });
                }
                seats.push(group);
                origins.push(Origin::Existing(p.text_doc));
            }
        }
        Kind::Js => {
            for g in 0..groups {
                let mut group = Vec::with_capacity(plan.per_doc);
                for i in 0..plan.per_doc {
                    group.push(Seat {
                        group: g,
                        index: i,
                        peer_id: format!("load-{clients}-{g}-{i}"),
                        url: server.ws_url(None)?,
                    });
                }
                seats.push(group);
                origins.push(Origin::CreateNew);
            }
        }
    }
    result.setup_secs = setup_started.elapsed().as_secs_f64();

    // Connect: the first client of each group prepares its document, then
    // the others find it. Each attempt gets what is left of the phase's time.
    let counters = Arc::new(Counters::default());
    let connect_started = Instant::now();
    let deadline = connect_started + plan.connect_limit;
    let left = move || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut errors: Vec<String> = Vec::new();
    let firsts: Vec<(usize, anyhow::Result<(Client, String)>)> =
        futures::stream::iter(seats.iter().zip(&origins))
            .map(|(group, origin)| {
                let counters = counters.clone();
                async move {
                    let s = &group[0];
                    let r =
                        connect_first(&s.peer_id, s.url.clone(), origin, &counters, left()).await;
                    (s.group, r)
                }
            })
            .buffer_unordered(plan.connect_parallelism)
            .collect()
            .await;
    let mut connected: Vec<Vec<Arc<Client>>> = (0..groups).map(|_| Vec::new()).collect();
    let mut doc_ids: Vec<Option<String>> = vec![None; groups];
    for (g, r) in firsts {
        match r {
            Ok((c, id)) => {
                connected[g].push(Arc::new(c));
                doc_ids[g] = Some(id);
            }
            Err(e) => {
                result.failed_connects += plan.per_doc;
                errors.push(format!("{e:#}"));
            }
        }
    }
    let others: Vec<(usize, anyhow::Result<Client>)> = futures::stream::iter(
        seats
            .iter()
            .flat_map(|g| g.iter().skip(1))
            .filter_map(|s| doc_ids[s.group].clone().map(|id| (s, id))),
    )
    .map(|(s, id)| {
        let counters = counters.clone();
        async move {
            let r = connect_other(&s.peer_id, s.url.clone(), &id, s.index, &counters, left()).await;
            (s.group, r)
        }
    })
    .buffer_unordered(plan.connect_parallelism)
    .collect()
    .await;
    for (g, r) in others {
        match r {
            Ok(c) => connected[g].push(Arc::new(c)),
            Err(e) => {
                result.failed_connects += 1;
                errors.push(format!("{e:#}"));
            }
        }
    }
    result.connect_secs = connect_started.elapsed().as_secs_f64();
    result.connected = connected.iter().map(Vec::len).sum();
    errors.sort();
    errors.dedup();
    result.connect_errors = errors.into_iter().take(3).collect();

    // Steady load.
    let logs: Vec<Arc<GroupLog>> = (0..groups)
        .map(|_| Arc::new(GroupLog::new(plan.per_doc)))
        .collect();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut receivers = Vec::new();
    let mut watchers = Vec::new();
    let mut typists = Vec::new();
    let start = tokio::time::Instant::now() + Duration::from_millis(500);
    let end = start + plan.steady;
    for (g, group) in connected.iter().enumerate() {
        for c in group {
            let changes = Box::pin(c.doc.changes());
            let (client, log, shared, stop) = (
                c.clone(),
                logs[g].clone(),
                counters.clone(),
                stop_rx.clone(),
            );
            receivers.push(tokio::spawn(async move {
                clients::receive(&client, &log, &shared, stop, changes).await
            }));
            let (client, shared, stop) = (c.clone(), counters.clone(), stop_rx.clone());
            watchers.push(tokio::spawn(async move {
                clients::watch_connection(&client, &shared, stop).await
            }));
            let (client, log) = (c.clone(), logs[g].clone());
            let seed = (g * plan.per_doc + c.index) as u64;
            let offset =
                Duration::from_micros(Rng::new(!seed).below(plan.interval.as_micros() as u64));
            let interval = plan.interval;
            typists.push(tokio::spawn(async move {
                clients::type_text(&client, &log, seed, start, offset, interval, end).await
            }));
        }
    }
    tokio::time::sleep_until(start).await;
    counters.counting.store(true, Ordering::Relaxed);
    let window_started = Instant::now();
    let server_before = procfs::sample(Some(server.pid), ticks).unwrap_or_default();
    let self_before = procfs::sample(None, ticks).unwrap_or_default();
    let machine_before = procfs::machine_cpu();

    let typing = async {
        let mut all = TypingStats::default();
        for t in typists {
            let stats: TypingStats = t.await.unwrap_or_default();
            all.planned += stats.planned;
            all.sent += stats.sent;
            all.max_lag = all.max_lag.max(stats.max_lag);
        }
        all
    };
    let sampling = async {
        match plan.sample_every {
            Some(every) => {
                soak::sample_until(
                    server.pid,
                    &counters.window,
                    every,
                    start.into_std(),
                    end.into_std(),
                    || server.metrics(),
                )
                .await
            }
            None => Vec::new(),
        }
    };
    let (stats, samples) = tokio::join!(typing, sampling);
    result.planned = stats.planned;
    result.sent = stats.sent;
    result.max_lag = stats.max_lag;
    result.samples = samples;
    // Every edit should reach every other connected client of its document.
    result.expected = connected
        .iter()
        .zip(&logs)
        .map(|(group, log)| (log.edits() * group.len().saturating_sub(1)) as u64)
        .sum();
    let drain_until = Instant::now() + plan.drain;
    while counters.delivered.load(Ordering::Relaxed) < result.expected
        && Instant::now() < drain_until
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    result.window_secs = window_started.elapsed().as_secs_f64();
    let server_after = procfs::sample(Some(server.pid), ticks).unwrap_or_default();
    let self_after = procfs::sample(None, ticks).unwrap_or_default();
    let machine_after = procfs::machine_cpu();
    counters.counting.store(false, Ordering::Relaxed);
    let _ = stop_tx.send(true);

    let mut latencies: Vec<u32> = Vec::new();
    for r in receivers {
        let received: Received = r.await.unwrap_or_default();
        latencies.extend(received.latencies_us);
    }
    for w in watchers {
        let _ = w.await;
    }
    result.delivered = latencies.len() as u64;
    result.latency = LatencySummary::of(latencies);
    result.dial_errors = counters.dial_errors.load(Ordering::Relaxed);
    result.disconnects = counters.disconnects.load(Ordering::Relaxed);
    result.server_cpu_window = server_after.cpu_secs - server_before.cpu_secs;
    result.server_cpu_total = server_after.cpu_secs;
    result.generator_cpu_window = self_after.cpu_secs - self_before.cpu_secs;
    let (busy, total) = (
        machine_after.0.saturating_sub(machine_before.0),
        machine_after.1.saturating_sub(machine_before.1),
    );
    result.machine_busy_pct = if total == 0 {
        0.0
    } else {
        busy as f64 * 100.0 / total as f64
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    result.others_cpu_window = (result.machine_busy_pct / 100.0 * cores * result.window_secs
        - result.server_cpu_window
        - result.generator_cpu_window)
        .max(0.0);
    match server.metrics().await {
        Ok(m) => result.server_metrics = m,
        Err(e) => result.metrics_error = Some(e),
    }
    result.log_problems_during_load = server.log_problems(0).0;
    let ProcSample {
        rss_kib, peak_kib, ..
    } = server_after;
    result.server_rss_end_kib = rss_kib;
    result.server_rss_peak_kib = peak_kib;

    if plan.sample_every.is_some() {
        result.saved_docs = connected
            .iter()
            .filter_map(|g| g.first())
            .map(|c| c.doc.with_document(|d| d.save()))
            .collect();
    }

    // Did every document converge, and is it still a klad-core text document?
    let mut lens = Vec::new();
    for group in &connected {
        let heads: Vec<_> = group.iter().map(|c| c.heads()).collect();
        if heads.windows(2).any(|w| w[0] != w[1]) {
            result.diverged += 1;
        }
        if let Some(c) = group.first() {
            match c.body_len() {
                Ok(n) => lens.push(n),
                Err(e) => result.connect_errors.push(format!(
                    "a document is no longer a valid text document: {e:#}"
                )),
            }
        }
    }
    result.mean_body_chars = if lens.is_empty() {
        0
    } else {
        lens.iter().sum::<usize>() / lens.len()
    };

    // Stop the clients, then the server.
    futures::stream::iter(connected.into_iter().flatten())
        .for_each_concurrent(64, |c| async move { c.stop().await })
        .await;
    result.log_problems = server.log_problems(3);
    result.clean_exit = server.stop().await;
    Ok(result)
}
