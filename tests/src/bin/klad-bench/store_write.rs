//! `store-write`: the same workload of document edits written through
//! `DocStore` to sled and to PostgreSQL in one run, as the server writes
//! them (one incremental chunk per change, durable before the call returns).
//!
//! The edits are the first edits of the automerge-paper trace, one change
//! each. One writer measures the latency of single writes (p50, p99); then
//! `WRITERS` threads, each on a document of its own (as the server's hubs
//! write different documents at once), measure writes per second. Prints a
//! Markdown table with PostgreSQL/sled ratios.
//!
//! The database comes from `KLAD_BENCH_POSTGRES` or `KLAD_TEST_POSTGRES`
//! (`eval "$(bash scripts/postgres.sh)"`); the benchmark writes into a table
//! of its own and drops it afterwards.

use std::time::Instant;

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT};
use klad_store::{DocStore, KvStore, PgStore, SledStore};

/// Writes by the single writer.
const EDITS: usize = 2_000;
/// Concurrent writers, each on its own document.
const WRITERS: usize = 8;
/// Writes per concurrent writer.
const EDITS_PER_WRITER: usize = 250;

struct Figures {
    p50_ms: f64,
    p99_ms: f64,
    single_per_sec: f64,
    concurrent_per_sec: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One document's edits as Automerge changes applied one by one; calls
/// `write(doc, heads)` after each and returns the heads to pass next.
fn edit_and_write<S: KvStore>(
    store: &DocStore<S>,
    doc_id: &str,
    edits: &[(usize, usize, String)],
    mut timed: impl FnMut(f64),
) -> anyhow::Result<()> {
    let mut doc = Automerge::new();
    let text = doc
        .transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.put_object(ROOT, "text", ObjType::Text)
        })
        .map_err(|f| f.error)?
        .result;
    let mut heads = store.save_incremental(doc_id, &doc, &[])?;
    for (pos, del, ins) in edits {
        doc.transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.splice_text(&text, *pos, *del as isize, ins)
        })
        .map_err(|f| f.error)?;
        let t = Instant::now();
        heads = store.save_incremental(doc_id, &doc, &heads)?;
        timed(t.elapsed().as_secs_f64());
    }
    Ok(())
}

fn measure<S: KvStore>(kv: S, edits: &[(usize, usize, String)]) -> anyhow::Result<Figures> {
    // No compaction: every write is one append, the server's common case.
    let store = DocStore::new(kv.clone());
    let mut latencies = Vec::with_capacity(EDITS);
    let start = Instant::now();
    edit_and_write(&store, "bench-single", &edits[..EDITS], |s| {
        latencies.push(s)
    })?;
    let single_secs = start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);

    let start = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = DocStore::new(kv.clone());
                let part = &edits[..EDITS_PER_WRITER];
                scope.spawn(move || edit_and_write(&store, &format!("bench-w{w}"), part, |_| {}))
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a writer thread panicked"))??;
        }
        Ok(())
    })?;
    let concurrent_secs = start.elapsed().as_secs_f64();
    Ok(Figures {
        p50_ms: percentile(&latencies, 0.50) * 1000.0,
        p99_ms: percentile(&latencies, 0.99) * 1000.0,
        single_per_sec: EDITS as f64 / single_secs,
        concurrent_per_sec: (WRITERS * EDITS_PER_WRITER) as f64 / concurrent_secs,
    })
}

pub fn run() -> anyhow::Result<()> {
    let url = std::env::var("KLAD_BENCH_POSTGRES")
        .or_else(|_| std::env::var("KLAD_TEST_POSTGRES"))
        .map_err(|_| {
            anyhow::anyhow!(
                "store-write needs a PostgreSQL database: set KLAD_BENCH_POSTGRES (or run `eval \"$(bash scripts/postgres.sh)\"`, which sets KLAD_TEST_POSTGRES), then run it again"
            )
        })?;
    let trace = klad_tests::automerge_paper_trace()?;
    let edits: Vec<(usize, usize, String)> = trace
        .txns
        .iter()
        .flat_map(|t| t.patches.iter().cloned())
        .take(EDITS)
        .collect();
    anyhow::ensure!(edits.len() == EDITS, "the trace has too few edits");

    let dir = tempfile::tempdir()?;
    let sled = measure(SledStore::open(dir.path())?, &edits)?;
    let table = format!("klad_bench_{}", std::process::id());
    let pg_store = PgStore::open_with_table(&url, &table)?;
    let pg = measure(pg_store.clone(), &edits);
    pg_store.drop_tables()?;
    let pg = pg?;

    println!(
        "| store ({EDITS} edits, one change and one durable write each) | p50 latency | p99 latency | writes/s, 1 writer | writes/s, {WRITERS} writers |"
    );
    println!("|---|---|---|---|---|");
    for (name, f) in [
        ("sled (data directory)", &sled),
        ("PostgreSQL (loopback)", &pg),
    ] {
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.0} | {:.0} |",
            f.p50_ms, f.p99_ms, f.single_per_sec, f.concurrent_per_sec
        );
    }
    println!(
        "| PostgreSQL / sled | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
        pg.p50_ms / sled.p50_ms,
        pg.p99_ms / sled.p99_ms,
        pg.single_per_sec / sled.single_per_sec,
        pg.concurrent_per_sec / sled.concurrent_per_sec
    );
    Ok(())
}
