//! `klad-bench start`: how long `klad-server` takes to serve again on a data
//! directory holding 10,000 documents (2,500 processes of four documents:
//! process, text and two members' contributions), against the same binary on
//! an empty data directory; and how long the first member then waits for a
//! process's text (the process is loaded on first use).
//!
//! `klad-bench store-load`: loading the 259,778-edit trace document from
//! klad-core's store against `automerge::load` of its saved bytes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use klad_core::Role;
use klad_server::server::{EngineConfig, SERVER_FILE, ServerFile, open_engine_with};
use klad_store::{DocStore, SledStore};

use crate::{median, samod_client};

/// Processes in the big data directory; four documents each.
const PROCESSES: usize = 2_500;
/// Starts measured per data directory (the median is reported).
const STARTS: usize = 3;

/// The `klad-server` binary next to this one (both built by `scripts/bench.sh`).
pub fn server_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("klad-server");
    if !bin.exists() {
        bail!(
            "{} is missing; build it first: cargo build --release -p klad-server",
            bin.display()
        );
    }
    Ok(bin)
}

/// A member of a populated process, to connect as.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Sample {
    pub token: String,
    pub member: String,
    pub text_doc: String,
}

/// `klad-bench populate <dir> <processes>`: [`populate`] in a process of its
/// own (so the store's lock is gone when it exits); prints the sample as JSON.
pub async fn populate_command(data: &str, processes: &str) -> anyhow::Result<()> {
    let sample = populate(Path::new(data), processes.parse()?).await?;
    println!("{}", serde_json::to_string(&sample)?);
    Ok(())
}

fn populate_in_child(data: &Path, processes: usize) -> anyhow::Result<Sample> {
    let out = Command::new(std::env::current_exe()?)
        .arg("populate")
        .arg(data)
        .arg(processes.to_string())
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(out.status.success(), "populating {} failed", data.display());
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Fills `data` with `processes` processes (four documents each) through the
/// server's own facilitation code; returns one member to connect as (of the
/// last process when `processes` is 1, else of the one in the middle).
async fn populate(data: &Path, processes: usize) -> anyhow::Result<Sample> {
    let engine = open_engine_with(
        data,
        EngineConfig {
            idle_unload: Duration::from_millis(200),
            ..EngineConfig::default()
        },
    )
    .await?;
    // Each process's hub stops by itself once its documents are idle.
    let f = engine.facilitation.clone();
    let mut sample = None;
    for i in 0..processes {
        let p = f
            .create_process(&format!("Verordening {i}"))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let a = f
            .add_member(
                &p.process_id,
                None,
                "Anna",
                Role::Drafter,
                Duration::from_secs(86_400),
                false,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        f.add_member(
            &p.process_id,
            None,
            "Olga",
            Role::Official,
            Duration::from_secs(86_400),
            false,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        if i == processes / 2 || processes == 1 {
            sample = Some(Sample {
                token: a.token,
                member: a.member_id.to_string(),
                text_doc: p.text_doc,
            });
        }
    }
    engine.stop().await;
    sample.context("no process was created")
}

struct Started {
    child: Child,
    addr: String,
    secs: f64,
}

/// Starts the server on `data` and waits until `/healthz` answers.
async fn start(bin: &Path, data: &Path) -> anyhow::Result<Started> {
    let _ = std::fs::remove_file(data.join(SERVER_FILE));
    let t0 = Instant::now();
    let mut child = Command::new(bin)
        .arg("--data")
        .arg(data)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("could not start {}", bin.display()))?;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            bail!("klad-server exited during start ({status}); see its log above");
        }
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            bail!("klad-server did not serve within 120 s");
        }
        let file: Option<ServerFile> = std::fs::read(data.join(SERVER_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(f) = file.filter(|f| f.pid == child.id())
            && let Ok(r) =
                klad_server::client::request(&f.listen, "GET", "/healthz", None, None).await
            && r.status == 200
        {
            return Ok(Started {
                child,
                addr: f.listen,
                secs: t0.elapsed().as_secs_f64(),
            });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn stop(mut s: Started) -> anyhow::Result<()> {
    let _ = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status();
    let t0 = Instant::now();
    while s.child.try_wait()?.is_none() {
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = s.child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn rss_kib(pid: u32) -> u64 {
    crate::proc_status_kib(&pid.to_string(), "VmRSS")
}

pub async fn run() -> anyhow::Result<()> {
    let bin = server_bin()?;
    let dir = tempfile::tempdir()?;
    let empty = dir.path().join("empty");
    let big = dir.path().join("big");
    let t0 = Instant::now();
    populate_in_child(&empty, 1)?;
    let sample = populate_in_child(&big, PROCESSES)?;
    let populate_secs = t0.elapsed().as_secs_f64();
    let store_mib = dir_size(&big.join(klad_server::server::STORE_DIR)) as f64 / (1024.0 * 1024.0);

    let mut empty_starts = Vec::new();
    let mut big_starts = Vec::new();
    let mut first_use = Vec::new();
    let mut rss_after_start = 0;
    for _ in 0..STARTS {
        let s = start(&bin, &empty).await?;
        empty_starts.push(s.secs);
        stop(s)?;
        let s = start(&bin, &big).await?;
        big_starts.push(s.secs);
        rss_after_start = rss_kib(s.child.id());
        // The first member to connect waits for their process to load.
        let t = Instant::now();
        let text =
            samod_client::fetch(&s.addr, &sample.token, &sample.member, &sample.text_doc).await?;
        first_use.push(t.elapsed().as_secs_f64());
        drop(text);
        stop(s)?;
    }
    let (e, b, u) = (
        median(&empty_starts),
        median(&big_starts),
        median(&first_use),
    );
    println!(
        "Populated {} documents ({PROCESSES} processes; {store_mib:.0} MiB store) in {populate_secs:.0} s.\n",
        PROCESSES * 4
    );
    println!(
        "| data directory | start until /healthz answers (median of {STARTS}) | ratio | server RSS after start |"
    );
    println!("|---|---|---|---|");
    println!("| one process (4 documents) | {:.3} s | 1.00× | |", e);
    println!(
        "| {} documents | {:.3} s | {:.2}× | {:.1} MiB |",
        PROCESSES * 4,
        b,
        b / e,
        rss_after_start as f64 / 1024.0
    );
    println!(
        "\nThen the first member to open a process waits {:.3} s (median) for its text: the process is loaded on first use. Goal: serving within 2 s — {}.",
        u,
        if b < 2.0 { "met" } else { "not met" }
    );
    Ok(())
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// `klad-bench store-load`.
pub fn store_load() -> anyhow::Result<()> {
    use automerge::transaction::Transactable;
    use automerge::{Automerge, ObjType, ROOT};
    const ROUNDS: usize = 5;
    let trace = klad_tests::automerge_paper_trace()?;
    let mut doc = Automerge::new();
    let text = doc
        .transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.put_object(ROOT, "text", ObjType::Text)
        })
        .map_err(|f| f.error)?
        .result;
    let edits: Vec<&(usize, usize, String)> =
        trace.txns.iter().flat_map(|t| t.patches.iter()).collect();
    for chunk in edits.chunks(100) {
        doc.transact::<_, _, automerge::AutomergeError>(|tx| {
            for (pos, del, ins) in chunk {
                tx.splice_text(&text, *pos, *del as isize, ins)?;
            }
            Ok(())
        })
        .map_err(|f| f.error)?;
    }
    let saved = doc.save();
    let dir = tempfile::tempdir()?;
    let store = DocStore::new(SledStore::open(dir.path())?);
    let id = "4ZcncPVBYpTDpcnzxnpnopGwM9qb";
    store.save_full(id, &doc)?;
    let _ = samod::DocumentId::from_str(id)?;
    let mut raw = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let d = Automerge::load(&saved)?;
        raw.push(t.elapsed().as_secs_f64());
        drop(d);
        let t = Instant::now();
        let d = store.load(id)?.context("the stored document is missing")?;
        ours.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(
            d.get_heads() == doc.get_heads(),
            "the stored document differs"
        );
    }
    let (r, o) = (median(&raw), median(&ours));
    println!(
        "| load of the trace document ({} KiB saved) | time (median of {ROUNDS}) | ratio |",
        saved.len() / 1024
    );
    println!("|---|---|---|");
    println!(
        "| `automerge::load` of its saved bytes | {:.3} s | 1.00× |",
        r
    );
    println!(
        "| klad-core `DocStore::load` from sled | {:.3} s | {:.2}× |",
        o,
        o / r
    );
    println!(
        "\nGoal: ≤ 1.10× — {}.",
        if o / r <= 1.10 { "met" } else { "not met" }
    );
    Ok(())
}
