//! `store-write`: the same workload of document edits written through
//! `DocStore` to sled and to PostgreSQL in one run, as the server writes
//! them (one incremental chunk per change, durable before the call returns).
//!
//! The edits are the first edits of the automerge-paper trace, one change
//! each. One writer measures the latency of single writes (p50, p99); then
//! `WRITERS` threads, each on a document of its own (as the server's hubs
//! write different documents at once), measure writes per second. Prints a
//! Markdown table with PostgreSQL/sled ratios, PostgreSQL both plain and
//! fenced (each write also checks a process lease, as a node of several
//! writes).
//!
//! The database comes from `KLAD_BENCH_POSTGRES` or `KLAD_TEST_POSTGRES`
//! (`eval "$(bash scripts/postgres.sh)"`); the benchmark writes into a table
//! of its own and drops it afterwards.

use std::time::Instant;

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT};
use klad_store::{Claim, DocStore, Fence, Key, KvStore, PgStore, SledStore, StoreError};

/// PostgreSQL as a node of several writes to it: every write fenced by the
/// lease of the process it belongs to (one more statement per transaction).
/// Each document stands for a process of its own here (the 8 writers are 8
/// processes' hubs), so it takes a lease of its own on its first write.
#[derive(Clone)]
struct Fenced {
    store: PgStore,
    fences: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Fence>>>,
}

impl Fenced {
    fn fence(&self, doc: &str) -> Result<Fence, StoreError> {
        let mut fences = self.fences.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = fences.get(doc) {
            return Ok(f.clone());
        }
        match self
            .store
            .claim(doc, "bench-node", "", std::time::Duration::from_secs(3600))?
        {
            Claim::Held(f) => {
                fences.insert(doc.to_owned(), f.clone());
                Ok(f)
            }
            other => Err(StoreError::Backend(format!(
                "the bench lease of {doc} is held elsewhere: {other:?}"
            ))),
        }
    }
}

impl KvStore for Fenced {
    fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(key)
    }
    fn put(&self, key: &Key, value: &[u8]) -> Result<(), StoreError> {
        self.write_batch(&[(key.clone(), value.to_vec())], &[])
    }
    fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.write_batch(&[], std::slice::from_ref(key))
    }
    fn scan_prefix(&self, prefix: &Key) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        self.store.scan_prefix(prefix)
    }
    fn scan_keys(&self, prefix: Option<&Key>) -> Result<Vec<Key>, StoreError> {
        self.store.scan_keys(prefix)
    }
    fn write_batch(&self, puts: &[(Key, Vec<u8>)], deletes: &[Key]) -> Result<(), StoreError> {
        let doc = puts
            .first()
            .map(|(k, _)| k)
            .or(deletes.first())
            .and_then(|k| k.components().first())
            .cloned()
            .unwrap_or_default();
        let fence = self.fence(&doc)?;
        self.store.write_batch_fenced(&fence, puts, deletes)
    }
}

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
    let fenced = measure(
        Fenced {
            store: pg_store.clone(),
            fences: Default::default(),
        },
        &edits,
    );
    pg_store.drop_tables()?;
    let pg = pg?;
    let fenced = fenced?;

    println!(
        "| store ({EDITS} edits, one change and one durable write each) | p50 latency | p99 latency | writes/s, 1 writer | writes/s, {WRITERS} writers |"
    );
    println!("|---|---|---|---|---|");
    for (name, f) in [
        ("sled (data directory)", &sled),
        ("PostgreSQL (loopback)", &pg),
        ("PostgreSQL, fenced (several nodes)", &fenced),
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
    println!(
        "| fenced PostgreSQL / sled | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
        fenced.p50_ms / sled.p50_ms,
        fenced.p99_ms / sled.p99_ms,
        fenced.single_per_sec / sled.single_per_sec,
        fenced.concurrent_per_sec / sled.concurrent_per_sec
    );
    Ok(())
}
