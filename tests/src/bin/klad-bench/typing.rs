//! `typing`: the phone's replica (klad-client) typing offline on a sled store
//! and a journal file on disk, driven the way klad-ffi drives it — one
//! `Replica::keystroke`, its journal record appended and synced, `written`,
//! the status recount — for the first
//! 20,000 edits of the automerge-paper trace (CC BY 4.0, see
//! tests/data/README.md), committed every 25 keystrokes (a typing window).
//!
//! Baseline, same process, same filesystem: appending a 111-byte record to a
//! file and `fsync`-ing it, in blocks of 100 between the blocks of 100
//! keystrokes. Memory: the process's RSS growth over the typing, against the
//! growth of the text document's own saved size.

use std::io::Write as _;
use std::time::Instant;

use automerge::ActorId;
use klad_client::replica::{Config, Disk, Replica};
use klad_core::*;
use klad_store::journal::JournalFile;
use klad_store::{DocStore, Key, KvStore, SledStore, StoreError};
use klad_tests::automerge_paper_trace;

const KEYSTROKES: usize = 20_000;

/// The keystrokes to type (`KLAD_BENCH_KEYSTROKES` overrides, to see how
/// memory grows with more).
fn keystrokes() -> usize {
    std::env::var("KLAD_BENCH_KEYSTROKES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(KEYSTROKES)
}
const WINDOW: usize = 25;
const BLOCK: usize = 100;

struct SledDisk<'a>(&'a DocStore<SledStore>, Vec<u8>);

impl Disk for SledDisk<'_> {
    fn load(&mut self, doc_id: &str) -> Result<Option<automerge::Automerge>, StoreError> {
        self.0.load(doc_id)
    }
    fn scan(&mut self, prefix: &Key) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        self.0.kv().scan_prefix(prefix)
    }
    fn journal(&mut self) -> Result<Vec<u8>, StoreError> {
        Ok(std::mem::take(&mut self.1))
    }
}

/// Hands glibc's free memory back, so that RSS growth afterwards is new memory.
fn trim() {
    // SAFETY: malloc_trim only releases free memory; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn rss_kib() -> u64 {
    crate::proc_status_kib("self", "VmRSS")
}

fn mean_p99(xs: &mut [f64]) -> (f64, f64) {
    xs.sort_by(f64::total_cmp);
    let mean = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let p99 = xs[(xs.len() * 99 / 100).min(xs.len() - 1)];
    (mean, p99)
}

/// Baseline for memory, in a process of its own (`klad-bench typing-raw`):
/// raw Automerge typing the same edits into one text, one transaction per
/// window. Prints the RSS growth in KiB.
pub fn raw() -> anyhow::Result<()> {
    use automerge::transaction::Transactable;
    let trace = automerge_paper_trace()?;
    let edits: Vec<Splice> = trace.splices().into_iter().take(keystrokes()).collect();
    let mut doc = automerge::Automerge::new();
    let text = doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        tx.put_object(automerge::ROOT, "text", automerge::ObjType::Text)
    });
    let text = text.map_err(|e| anyhow::anyhow!("{e:?}"))?.result;
    drop(trace);
    trim();
    let before = rss_kib();
    for window in edits.chunks(WINDOW) {
        let mut tx = doc.transaction();
        for e in window {
            tx.splice_text(&text, e.pos, e.delete as isize, &e.insert)?;
        }
        tx.commit();
    }
    println!("{}", rss_kib().saturating_sub(before));
    Ok(())
}

/// The text after the first [`keystrokes`] edits of the trace.
fn expected_text(trace: &klad_tests::Trace) -> String {
    let mut chars: Vec<char> = Vec::new();
    for (pos, del, ins) in trace
        .txns
        .iter()
        .flat_map(|t| t.patches.iter())
        .take(keystrokes())
    {
        chars.splice(*pos..*pos + *del, ins.chars());
    }
    chars.into_iter().collect()
}

/// Runs [`raw`] in a child process; its RSS growth in KiB.
fn raw_growth_kib() -> anyhow::Result<u64> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("typing-raw")
        .env("KLAD_BENCH_KEYSTROKES", keystrokes().to_string())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "typing-raw failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

pub fn run() -> anyhow::Result<()> {
    let raw_kib = raw_growth_kib()?;
    let trace = automerge_paper_trace()?;
    let edits: Vec<Splice> = trace.splices().into_iter().take(keystrokes()).collect();
    let dir = tempfile::tempdir_in(std::env::var("KLAD_BENCH_DIR").unwrap_or_else(|_| ".".into()))?;
    // The phone's sled cache size (klad-ffi's PHONE_CACHE_BYTES).
    let store = DocStore::new(SledStore::open_with_cache(
        dir.path().join("phone"),
        16 * 1024 * 1024,
    )?);

    // A process with one drafter (this phone) and one empty article, stored
    // as the phone has it after joining.
    let t0 = 1_767_571_200_000i64;
    let actor = ActorId::from([1u8; 16]);
    let mut docs = ProcessDocs::create(t0, &ProcessId::from("p1"), "Bench", &DocId::from("text"))?;
    let me = docs.add_member(t0, None, "Anna", Role::Drafter, &DocId::from("contrib"))?;
    docs.process.register_device(t0, &me, &actor, None)?;
    let mut s = Session::new(docs, me.clone(), ActorId::from([2u8; 16]));
    let article = s.create_article(t0, None, "Artikel 1", "")?;
    let docs = s.into_docs();
    store.save_full("p1", docs.process.automerge())?;
    store.save_full("text", docs.text.automerge())?;
    store.save_full("contrib", docs.contributions[&me].automerge())?;
    let config = Config {
        process_id: "p1".into(),
        member: me,
        actor,
        prefix: "klad-ffi".into(),
    };
    let (mut journal, bytes) = JournalFile::open(dir.path(), "p1")?;
    let mut replica =
        Replica::open(config, &mut SledDisk(&store, bytes)).map_err(|e| anyhow::anyhow!("{e}"))?;

    let mut baseline_file = std::fs::File::create(dir.path().join("append.log"))?;
    let record = [b'x'; 111];
    let saved_before = replica.session().docs().text.save().len();
    let expected = expected_text(&trace);
    drop(trace);
    trim();
    let rss_before = rss_kib();
    let mut keys = Vec::with_capacity(KEYSTROKES);
    let mut appends = Vec::new();
    let mut commits = Vec::new();
    let mut version = replica.text_version();
    let started = Instant::now();
    let mut now = t0 + 1000;
    for (i, e) in edits.iter().enumerate() {
        if i % BLOCK == 0 {
            for _ in 0..BLOCK {
                let t = Instant::now();
                baseline_file.write_all(&record)?;
                baseline_file.sync_data()?;
                appends.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        now += 1;
        let t = Instant::now();
        let w = replica
            .keystroke(now, Some(&version), article.as_str(), false, e.clone())
            .map_err(|e| anyhow::anyhow!("keystroke {i}: {e}"))?;
        let mut stored = store.write_batch(&w.puts, &w.deletes);
        if stored.is_ok()
            && let Some(record) = &w.journal
        {
            stored = journal.append(record);
        }
        let effects = replica
            .written(w, stored)
            .map_err(|e| anyhow::anyhow!("keystroke {i}: {e}"))?;
        anyhow::ensure!(
            !effects.retry_keystroke,
            "typing into one version needs no retry"
        );
        let _status = replica.unsynced();
        keys.push(t.elapsed().as_secs_f64() * 1e6);
        if (i + 1) % WINDOW == 0 {
            let t = Instant::now();
            if let Some(w) = replica.commit(now).map_err(|e| anyhow::anyhow!("{e}"))? {
                let stored = store.write_batch(&w.puts, &w.deletes);
                let effects = replica
                    .written(w, stored)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                if effects.truncate_journal {
                    journal.truncate();
                }
            }
            commits.push(t.elapsed().as_secs_f64() * 1e6);
            version = replica.text_version();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let rss_after = rss_kib();
    let saved_after = replica.session().docs().text.save().len();
    let body = replica.session().docs().text.body(&article)?;
    anyhow::ensure!(body == expected, "the typed text differs from the trace's");

    let (k_mean, k_p99) = mean_p99(&mut keys);
    let (a_mean, a_p99) = mean_p99(&mut appends);
    let (c_mean, c_p99) = mean_p99(&mut commits);
    let rss_growth = rss_after.saturating_sub(rss_before) as f64 / 1024.0;
    let saved_growth = (saved_after - saved_before) as f64 / 1024.0 / 1024.0;
    println!(
        "The replica typed the first {} edits of the trace offline ({} characters of text at the end), \
         committing every {WINDOW} keystrokes, in {secs:.1} s; the text matches the trace's.",
        edits.len(),
        body.chars().count()
    );
    println!();
    println!("| call | n | mean | p99 | **mean / fsync'd append** |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| baseline: append 111 bytes + `fsync` | {} | {a_mean:.0} µs | {a_p99:.0} µs | **1.0×** |",
        appends.len()
    );
    println!(
        "| keystroke: `Replica::keystroke` + journal append + `fdatasync` + `written` + `unsynced` | {} | {k_mean:.0} µs | {k_p99:.0} µs | **{:.2}×** |",
        keys.len(),
        k_mean / a_mean
    );
    println!(
        "| commit of a window ({WINDOW} keystrokes → one change) | {} | {c_mean:.0} µs | {c_p99:.0} µs | {:.1}× |",
        commits.len(),
        c_mean / a_mean
    );
    println!();
    println!(
        "| memory | before | after {} keystrokes | growth |",
        keys.len()
    );
    println!("|---|---:|---:|---:|");
    println!(
        "| process RSS | {:.1} MiB | {:.1} MiB | **{rss_growth:.1} MiB** |",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    println!(
        "| the text document's saved size (`save()`) | {:.1} KiB | {:.1} KiB | **{:.1} KiB** |",
        saved_before as f64 / 1024.0,
        saved_after as f64 / 1024.0,
        saved_growth * 1024.0
    );
    println!(
        "| **RSS growth / saved-size growth** | | | **{:.0}×** |",
        rss_growth / saved_growth.max(f64::MIN_POSITIVE)
    );
    let raw = raw_kib as f64 / 1024.0;
    println!(
        "| baseline: RSS growth of raw Automerge typing the same edits (own process) | | | {raw:.1} MiB |"
    );
    println!(
        "| **replica's RSS growth / raw Automerge's** | | | **{:.1}×** |",
        rss_growth / raw.max(f64::MIN_POSITIVE)
    );
    Ok(())
}
