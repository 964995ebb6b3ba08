//! Klad's benchmarks, as ratios against a baseline run in the same process.
//! `scripts/bench.sh` runs them all and writes `docs/BENCHMARKS.md`.
//!
//! `cargo run --release -p klad-tests --bin klad-bench -- <benchmark>`, with
//! `core-editing`, `wire`, `start` (needs the release `klad-server` next to
//! this binary), `store-load`, `store-write` (sled against PostgreSQL; see
//! store_write.rs), `typing` (the phone's replica typing offline),
//! `storm` (N members open the app at once; see storm.rs), `idle` (memory
//! per idle connection; see idle.rs), `desk` (the web desk's page times
//! for 50 members and 2,000 contributions; see desk.rs), `nodes` (one
//! klad-server node against two and three on PostgreSQL; see nodes.rs) or
//! `apply-cost` (what applying a received change costs against the size of
//! the text; see apply.rs).
//!
//! core-editing: replays the automerge-paper trace (259,778 edits; CC BY 4.0,
//! see tests/data/README.md) through klad-core's public edit API and through
//! raw `automerge`, each in a child process of its own (so peak memory is that
//! run's alone), one change per edit and batched, and prints a Markdown table
//! of time, peak memory and saved size with klad/raw ratios.

use std::process::Command;
use std::time::Instant;

mod apply;
mod desk;
mod idle;
mod nodes;
mod rawclient;
mod samod_client;
mod start;
mod store_write;
mod storm;
mod typing;
mod wire;

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT};
use klad_core::*;
use klad_tests::automerge_paper_trace;

const BATCH: usize = 100;

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`, ...); 0 if
/// it cannot be read. `pid` "self" is this process.
fn proc_status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Peak resident set size of this process, in KiB (Linux `VmHWM`).
fn peak_rss_kib() -> u64 {
    proc_status_kib("self", "VmHWM")
}

/// Runs one variant in this process and prints `seconds peak_kib saved_bytes`.
fn run_variant(variant: &str) -> anyhow::Result<()> {
    let trace = automerge_paper_trace()?;
    let edits = trace.splices();
    // For profiling: replay only a prefix (the end-content check is then skipped).
    let limit: Option<usize> = std::env::var("KLAD_BENCH_EDITS")
        .ok()
        .and_then(|n| n.parse().ok());
    let edits = &edits[..limit.unwrap_or(edits.len()).min(edits.len())];
    let batch = if variant.ends_with("batched") {
        BATCH
    } else {
        1
    };
    let (secs, saved, text) = if variant.starts_with("raw") {
        let mut doc = Automerge::new();
        let obj = doc
            .transact::<_, _, automerge::AutomergeError>(|tx| {
                tx.put_object(ROOT, "text", ObjType::Text)
            })
            .map_err(|f| f.error)?
            .result;
        // "raw-meta-…": each change also carries a message and a time, as
        // every klad-core change does (for history and attribution).
        let meta = variant.starts_with("raw-meta");
        let t0 = 1_767_571_200_000i64;
        let start = Instant::now();
        for (i, chunk) in edits.chunks(batch).enumerate() {
            let apply = |tx: &mut automerge::transaction::Transaction<'_>| {
                for s in chunk {
                    tx.splice_text(&obj, s.pos, s.delete as isize, &s.insert)?;
                }
                Ok::<_, automerge::AutomergeError>(())
            };
            if meta {
                doc.transact_with(
                    |_| {
                        automerge::transaction::CommitOptions::default()
                            .with_message("edit body".to_owned())
                            .with_time(t0 + i as i64)
                    },
                    apply,
                )
                .map_err(|f| f.error)?;
            } else {
                doc.transact(apply).map_err(|f| f.error)?;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        use automerge::ReadDoc;
        (secs, doc.save().len(), doc.text(&obj)?)
    } else {
        let t0 = 1_767_571_200_000;
        let mut docs =
            ProcessDocs::create(t0, &ProcessId::from("bench"), "Bench", &DocId::from("text"))?;
        let writer = docs.add_member(t0, None, "Typist", Role::Drafter, &DocId::from("c"))?;
        let mut session = Session::new(docs, writer, ActorId::from(vec![7u8; 16]));
        let article = session.create_article(t0, None, "Paper", "")?;
        let start = Instant::now();
        for (i, chunk) in edits.chunks(batch).enumerate() {
            session.edit_body(t0 + i as i64, &article, chunk)?;
        }
        let secs = start.elapsed().as_secs_f64();
        (
            secs,
            session.docs().text.save().len(),
            session.docs().text.body(&article)?,
        )
    };
    anyhow::ensure!(
        text == trace.end_content,
        "{variant}: replay did not reach endContent"
    );
    println!("{secs} {} {saved}", peak_rss_kib());
    Ok(())
}

struct Measured {
    secs: f64,
    peak_kib: u64,
    saved: usize,
}

/// Runs of each variant; the fastest counts (the least disturbed by
/// whatever else the machine is doing).
const RUNS: usize = 3;

fn measure(variant: &str) -> anyhow::Result<Measured> {
    let mut best: Option<Measured> = None;
    for _ in 0..RUNS {
        let m = measure_once(variant)?;
        if best.as_ref().is_none_or(|b| m.secs < b.secs) {
            best = Some(m);
        }
    }
    best.ok_or_else(|| anyhow::anyhow!("no run of {variant}"))
}

fn measure_once(variant: &str) -> anyhow::Result<Measured> {
    let out = Command::new(std::env::current_exe()?)
        .args(["variant", variant])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{variant} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8(out.stdout)?;
    let f: Vec<&str> = s.split_whitespace().collect();
    Ok(Measured {
        secs: f[0].parse()?,
        peak_kib: f[1].parse()?,
        saved: f[2].parse()?,
    })
}

fn core_editing() -> anyhow::Result<()> {
    println!(
        "| variant | time (s, fastest of {RUNS}) | peak RSS (MiB) | saved (KiB) | time ratio | memory ratio | size ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (raw, klad, label) in [
        ("raw-per-edit", "klad-per-edit", "one change per edit"),
        (
            "raw-batched",
            "klad-batched",
            "batched (100 edits per change)",
        ),
    ] {
        let r = measure(raw)?;
        let meta = measure(&raw.replace("raw-", "raw-meta-"))?;
        let k = measure(klad)?;
        for (name, m) in [
            (format!("automerge, {label}"), &r),
            (
                format!("automerge with a message and time per change, {label}"),
                &meta,
            ),
            (format!("klad-core, {label}"), &k),
        ] {
            println!(
                "| {name} | {:.2} | {:.1} | {:.0} | {:.2}× | {:.2}× | {:.2}× |",
                m.secs,
                m.peak_kib as f64 / 1024.0,
                m.saved as f64 / 1024.0,
                m.secs / r.secs,
                m.peak_kib as f64 / r.peak_kib as f64,
                m.saved as f64 / r.saved as f64
            );
        }
    }
    Ok(())
}

/// The median of some measurements.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn tokio_main<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(f)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["variant", v] => run_variant(v),
        [] | ["core-editing"] => core_editing(),
        ["start"] => tokio_main(start::run()),
        ["populate", dir, n] => tokio_main(start::populate_command(dir, n)),
        ["store-load"] => start::store_load(),
        ["store-write"] => store_write::run(),
        ["wire"] => tokio_main(wire::run()),
        ["apply-cost"] => apply::run(),
        ["typing"] => typing::run(),
        ["typing-raw"] => typing::raw(),
        ["storm", rest @ ..] => tokio_main(storm::run(rest)),
        ["idle", rest @ ..] => tokio_main(idle::run(rest)),
        ["desk"] => tokio_main(desk::run()),
        ["nodes"] => tokio_main(nodes::run()),
        other => anyhow::bail!(
            "unknown benchmark {other:?}; choose core-editing, wire, start, store-load, store-write, typing, storm, idle, desk, nodes or apply-cost"
        ),
    }
}
