//! Crash safety of the store, with real crashes.
//!
//! The parent test re-runs this test binary as a child process that runs only
//! `store_crash_child_writer`. The child opens the store in the directory
//! named by `KLAD_CRASH_DIR`, appends numbers to a document one change at a
//! time, and prints `acked <n>` after each `save_incremental` has returned;
//! now and then it compacts (and a background thread compacts too). The
//! parent kills it with SIGKILL at a random moment, reopens the store and
//! checks that every acknowledged number is there. Many rounds run on the same
//! directory, so damage would accumulate and be found.
//!
//! Reproduce a failure with `KLAD_CRASH_SEED=<seed printed on failure>`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use klad_store::{DocStore, SledStore};

const CHILD_TEST: &str = "store_crash_child_writer";
const DIR_ENV: &str = "KLAD_CRASH_DIR";
const CHILD_SEED_ENV: &str = "KLAD_CRASH_CHILD_SEED";
const SEED_ENV: &str = "KLAD_CRASH_SEED";
const DOC: &str = "2yGHa3UMwsCxzuSuzEhVjw4Rzg3H";

/// Kills per run, at most.
const ROUNDS: u32 = 100;
/// At least this many rounds run whatever the time (the issue asks for 50 in CI).
const MIN_ROUNDS: u32 = 50;
/// The parent stops starting rounds after this long (it never fails on time).
const TIME_BUDGET: Duration = Duration::from_secs(40);

/// xorshift64*: small, deterministic, good enough to pick kill moments.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The numbers in the document's `items` list.
fn items(doc: &Automerge) -> Vec<i64> {
    let Some((_, list)) = doc.get(ROOT, "items").expect("read items") else {
        return vec![];
    };
    (0..doc.length(&list))
        .map(|i| match doc.get(&list, i).expect("read item") {
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Int(n) => *n,
                other => panic!("item {i} is not an int: {other:?}"),
            },
            other => panic!("item {i} is not a scalar: {other:?}"),
        })
        .collect()
}

/// Appends `n` to `items` (creating the list if needed) as one change.
fn append(doc: &mut Automerge, n: i64) {
    let mut tx = doc.transaction();
    let list = match tx.get(ROOT, "items").expect("read items") {
        Some((Value::Object(ObjType::List), id)) => id,
        _ => tx
            .put_object(ROOT, "items", ObjType::List)
            .expect("create list"),
    };
    let len = tx.length(&list);
    tx.insert(&list, len, n).expect("insert");
    tx.put(ROOT, "last", n).expect("put last");
    tx.commit();
}

/// The child: writes until killed (or until its bounds run out).
#[test]
fn store_crash_child_writer() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        return; // Only meaningful when started by the parent test.
    };
    let seed: u64 = std::env::var(CHILD_SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut rng = Rng::new(seed);
    let kv = SledStore::open(&dir).expect("child: open store");
    let store =
        DocStore::with_auto_compaction(kv, 1 + rng.below(8) as usize).expect("child: start store");
    let mut doc = store.load(DOC).expect("child: load").unwrap_or_default();
    let mut heads = doc.get_heads();
    let mut next = items(&doc).into_iter().max().unwrap_or(0) + 1;
    let mut out = std::io::stdout().lock();
    for _ in 0..5_000 {
        // Sometimes several changes go into one chunk.
        let batch = 1 + rng.below(3) as i64;
        for n in next..next + batch {
            append(&mut doc, n);
        }
        heads = store
            .save_incremental(DOC, &doc, &heads)
            .expect("child: save");
        for n in next..next + batch {
            // A failed write means the parent is gone: stop.
            if writeln!(out, "acked {n}")
                .and_then(|_| out.flush())
                .is_err()
            {
                return;
            }
        }
        next += batch;
        if rng.below(6) == 0 {
            // The markers let the parent count kills that land mid-compaction.
            let _ = writeln!(out, "compacting").and_then(|_| out.flush());
            store.compact(DOC).expect("child: compact");
            let _ = writeln!(out, "compacted").and_then(|_| out.flush());
        }
        if rng.below(10) == 0 {
            // A full snapshot now and then, so loads mix both kinds of value.
            store.save_full(DOC, &doc).expect("child: save_full");
        }
    }
}

/// Reopens the store and checks that every acknowledged number is stored.
fn verify(data: &Path, acked: &BTreeSet<i64>, round: u32, seed: u64) {
    let kv = SledStore::open(data).unwrap_or_else(|e| {
        panic!("round {round}, seed {seed}: the store does not reopen after a kill: {e}")
    });
    let store = DocStore::new(kv);
    let doc = store.load(DOC).unwrap_or_else(|e| {
        panic!("round {round}, seed {seed}: the document does not load after a kill: {e}")
    });
    let Some(doc) = doc else {
        assert!(
            acked.is_empty(),
            "round {round}, seed {seed}: the document is gone but {} numbers were acknowledged",
            acked.len()
        );
        return;
    };
    let stored: BTreeSet<i64> = items(&doc).into_iter().collect();
    let lost: Vec<&i64> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "round {round}, seed {seed}: {} acknowledged numbers lost after a kill, such as {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
}

#[test]
fn store_survives_sigkill_during_writes() {
    if std::env::var_os(DIR_ENV).is_some() {
        return; // We are a child started for the writer test.
    }
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("store_survives_sigkill_during_writes: seed {seed} (set {SEED_ENV} to repeat)");
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let log_path = tmp.path().join("child-stderr.log");
    let exe = std::env::current_exe().expect("path of this test binary");

    let started = Instant::now();
    let mut acked: BTreeSet<i64> = BTreeSet::new();
    let mut rounds = 0;
    let mut kills_mid_round = 0;
    let mut kills_mid_compaction = 0;
    while rounds < MIN_ROUNDS || (rounds < ROUNDS && started.elapsed() < TIME_BUDGET) {
        let round = rounds;
        rounds += 1;
        // Kill after a random number of acknowledgements (0: during start-up,
        // including sled's recovery), then after a random extra delay.
        let kill_after_acks = rng.below(25);
        let extra_delay = Duration::from_micros(rng.below(4_000));
        let log = std::fs::File::create(&log_path).expect("child log");
        let mut child = Command::new(&exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(DIR_ENV, &data)
            .env(CHILD_SEED_ENV, rng.next().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start child");
        let mut lines = BufReader::new(child.stdout.take().expect("child stdout")).lines();
        let mut seen = 0;
        let mut ended_early = false;
        let mut compacting = false;
        let mut note = |line: &str, acked: &mut BTreeSet<i64>| {
            if let Some(n) = line.strip_prefix("acked ") {
                acked.insert(n.trim().parse().expect("acked number"));
                compacting = false;
                true
            } else {
                compacting = line == "compacting";
                false
            }
        };
        while seen < kill_after_acks {
            match lines.next() {
                Some(Ok(line)) => {
                    if note(&line, &mut acked) {
                        seen += 1;
                    }
                }
                _ => {
                    ended_early = true;
                    break;
                }
            }
        }
        if !ended_early {
            std::thread::sleep(extra_delay);
            // SIGKILL on Unix: no destructors, no flushing, no goodbye.
            let _ = child.kill();
            kills_mid_round += 1;
        }
        let status = child.wait().expect("wait for child");
        // Lines printed before the kill were acknowledged too.
        for line in lines.map_while(Result::ok) {
            note(&line, &mut acked);
        }
        if !ended_early && compacting {
            kills_mid_compaction += 1;
        }
        if ended_early && !status.success() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("round {round}, seed {seed}: the child failed on its own ({status}):\n{log}");
        }
        verify(&data, &acked, round, seed);
    }
    eprintln!(
        "store_survives_sigkill_during_writes: {rounds} rounds, {kills_mid_round} kills ({kills_mid_compaction} during an explicit compaction), {} acknowledged numbers, {:.1} s",
        acked.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(rounds >= MIN_ROUNDS);
}
