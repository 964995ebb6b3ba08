//! `nodes`: one klad-server node against two and three on one PostgreSQL
//! database, same workload, same run.
//!
//! For each cluster size a fresh database, `N` release `klad-server`
//! processes on loopback (the binary next to this one), one process with
//! `WRITERS` drafters. Writer `w` connects to node `w % N`; the process is
//! opened through node 0, which serves it, so on two and three nodes the
//! other writers' connections are relayed to node 0. Every writer makes
//! `EDITS` edits to its contributions document, one at a time, each waited
//! for until the server acknowledged it (stored, then confirmed), all
//! writers at once. Prints per cluster size: edits per second, the
//! acknowledgement latency of writers on the serving node and of relayed
//! writers (p50, p99), PostgreSQL transactions per edit, and the memory of
//! each node; ratios against one node.
//!
//! The database server comes from `KLAD_BENCH_POSTGRES` or
//! `KLAD_TEST_POSTGRES` (`eval "$(bash scripts/postgres.sh)"`); the role
//! must be allowed to create databases. Each database is dropped afterwards.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use automerge::transaction::Transactable;
use klad_server::client::request;
use serde_json::{Value, json};

use crate::rawclient::percentile;
use crate::samod_client::Client;
use crate::start::server_bin;

/// Drafters writing at once.
const WRITERS: usize = 12;
/// Edits per drafter.
const EDITS: usize = 100;

struct Node {
    child: Child,
    addr: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn sql(url: &str, statement: &str) -> anyhow::Result<Vec<tokio_postgres::Row>> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {}", url.split('@').next_back().unwrap_or("")))?;
    let task = tokio::spawn(conn);
    let rows = client.query(statement, &[]).await?;
    drop(client);
    let _ = task.await;
    Ok(rows)
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let config: tokio_postgres::Config = url.parse()?;
    let db = config
        .get_dbname()
        .context("the address names no database")?;
    let at = url
        .rfind(db)
        .context("the database name is not in the address")?;
    Ok(format!("{}{name}{}", &url[..at], &url[at + db.len()..]))
}

async fn start_node(bin: &Path, data: &Path, store: &str) -> anyhow::Result<Node> {
    let child = Command::new(bin)
        .arg("--data")
        .arg(data)
        .args(["--listen", "127.0.0.1:0", "--store", store])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting klad-server")?;
    let pid = child.id();
    let file = data.join("server.json");
    let t0 = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Ok(v) = serde_json::from_str::<Value>(&text)
            && v["pid"].as_u64() == Some(u64::from(pid))
            && let Some(addr) = v["listen"].as_str()
        {
            return Ok(Node {
                child,
                addr: addr.to_owned(),
            });
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("klad-server did not start within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn api(addr: &str, admin: &str, path: &str, body: Value) -> anyhow::Result<Value> {
    let r = request(addr, "POST", path, Some(admin), Some(&body)).await?;
    if r.status != 200 && r.status != 201 {
        bail!("POST {path} answered {}: {}", r.status, r.body);
    }
    r.json()
}

struct Figures {
    edits_per_sec: f64,
    direct: Vec<f64>,
    relayed: Vec<f64>,
    transactions_per_edit: f64,
    rss_mib: Vec<f64>,
}

async fn measure(admin_url: &str, n: usize) -> anyhow::Result<Figures> {
    let name = format!("klad_bench_nodes_{}_{n}", std::process::id());
    sql(admin_url, &format!("CREATE DATABASE {name}")).await?;
    let url = with_database(admin_url, &name)?;
    let result = measure_on(&url, n).await;
    sql(
        admin_url,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await?;
    result
}

async fn measure_on(url: &str, n: usize) -> anyhow::Result<Figures> {
    let bin = server_bin()?;
    let dir = tempfile::tempdir()?;
    let mut nodes = Vec::new();
    for i in 0..n {
        nodes.push(start_node(&bin, &dir.path().join(format!("node{i}")), url).await?);
    }
    let admin = std::fs::read_to_string(dir.path().join("node0").join("admin-secret"))?;
    let admin = admin.trim();
    let created = api(
        &nodes[0].addr,
        admin,
        "/api/processes",
        json!({"title": "Bench"}),
    )
    .await?;
    let pid = created["process"]["process_id"]
        .as_str()
        .context("no process id in the answer")?
        .to_owned();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let node = &nodes[w % n];
        let m = api(
            &node.addr,
            admin,
            &format!("/api/processes/{pid}/members"),
            json!({"name": format!("Schrijver {w}"), "role": "drafter"}),
        )
        .await?;
        let token = m["token"].as_str().context("no token")?.to_owned();
        let peer = m["peer_id"].as_str().context("no peer id")?.to_owned();
        let doc = m["contributions_doc"]
            .as_str()
            .context("no document")?
            .to_owned();
        let client = Client::connect(&node.addr, &token, &peer).await?;
        let handle = client.find(&doc).await?;
        writers.push((w % n == 0, client, handle));
    }
    let commits = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()";
    let before: i64 = sql(url, commits).await?[0].get(0);
    let t0 = Instant::now();
    let runs = writers
        .into_iter()
        .enumerate()
        .map(|(w, (direct, client, handle))| async move {
            let mut latencies = Vec::with_capacity(EDITS);
            for e in 0..EDITS {
                handle.with_document(|d| {
                    let mut tx = d.transaction();
                    tx.put(automerge::ROOT, format!("w{w}e{e}"), e as i64)
                        .map(|_| ())
                        .unwrap_or_else(|err| panic!("a local edit failed: {err}"));
                    tx.commit();
                });
                let t = Instant::now();
                client
                    .wait_server_has(&handle, Duration::from_secs(60))
                    .await?;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            client.stop().await;
            anyhow::Ok((direct, latencies))
        });
    let results = futures::future::join_all(runs).await;
    let secs = t0.elapsed().as_secs_f64();
    // pg_stat_database is updated when a backend reports, within a moment.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let after: i64 = sql(url, commits).await?[0].get(0);
    let (mut direct, mut relayed) = (Vec::new(), Vec::new());
    for r in results {
        let (is_direct, l) = r?;
        if is_direct {
            direct.extend(l);
        } else {
            relayed.extend(l);
        }
    }
    let rss_mib = nodes
        .iter()
        .map(|node| crate::proc_status_kib(&node.child.id().to_string(), "VmRSS") as f64 / 1024.0)
        .collect();
    let edits = (WRITERS * EDITS) as f64;
    Ok(Figures {
        edits_per_sec: edits / secs,
        direct,
        relayed,
        transactions_per_edit: (after - before) as f64 / edits,
        rss_mib,
    })
}

fn p(xs: &[f64], q: f64) -> String {
    percentile(xs, q).map_or_else(|| "–".to_owned(), |v| format!("{v:.1} ms"))
}

pub async fn run() -> anyhow::Result<()> {
    let url = std::env::var("KLAD_BENCH_POSTGRES")
        .or_else(|_| std::env::var("KLAD_TEST_POSTGRES"))
        .map_err(|_| {
            anyhow::anyhow!(
                "nodes needs a PostgreSQL database: set KLAD_BENCH_POSTGRES (or run `eval \"$(bash scripts/postgres.sh)\"`, which sets KLAD_TEST_POSTGRES), then run it again"
            )
        })?;
    let mut rows = Vec::new();
    for n in 1..=3 {
        rows.push((n, measure(&url, n).await?));
    }
    let base = rows[0].1.edits_per_sec;
    println!(
        "| nodes ({WRITERS} drafters × {EDITS} acknowledged edits) | edits/s | vs 1 node | on the serving node p50 / p99 | relayed p50 / p99 | PostgreSQL transactions per edit | memory per node |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (n, f) in &rows {
        let rss: Vec<String> = f.rss_mib.iter().map(|m| format!("{m:.0}")).collect();
        println!(
            "| {n} | {:.0} | {:.2}× | {} / {} | {} / {} | {:.2} | {} MiB |",
            f.edits_per_sec,
            f.edits_per_sec / base,
            p(&f.direct, 50.0),
            p(&f.direct, 99.0),
            p(&f.relayed, 50.0),
            p(&f.relayed, 99.0),
            f.transactions_per_edit,
            rss.join(" + ")
        );
    }
    Ok(())
}
