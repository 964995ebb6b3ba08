//! The "server under load" benchmark: klad-server against the JavaScript
//! automerge-repo sync server, same workload, same machine, same run.
//!
//! ```text
//! scripts/bench-load.sh                      # builds, installs, runs, writes target/bench/load.md
//! klad-load --steps 100,500,1000 --out target/bench/load.md
//! ```
//!
//! For each step (a number of clients) and each server it starts a fresh
//! server on a temporary data directory and a free loopback port: a release
//! `klad-server` (`--listen 127.0.0.1:0`, `--max-connections` above the step)
//! and `node tests/bench/js-server/server.mjs` (automerge-repo 2.5 with its
//! websocket server adapter and file-system storage). Clients come in groups
//! of `--per-doc` that share one document: against klad-server each group is
//! one process with a drafter per client (created through the facilitation
//! API with the admin secret), connecting to `/sync?token=` with its member id
//! as peer id; against the JS server the first client of each group creates a
//! document of the same shape. That shape is a klad-core text document with
//! one article; every client types into the article's body (a word, or a short
//! backspace, as one change: one keystroke batch) every `--interval-ms`, for
//! `--steady-secs`, then the generator waits up to `--drain-secs` for the last
//! deliveries.
//!
//! Every client is a samod 0.16 `Repo` of its own (own peer id, own
//! websocket), all on this process's tokio runtime, so the generator competes
//! with the server for the machine's cores; its CPU and how late its edits
//! left are reported, so a saturated generator shows in the table.
//!
//! Measured per run: end-to-end latency from one client's change to its
//! arrival at each other client of the document (p50, p99, max), deliveries
//! per second, errors (lost connections, clients that could not connect or
//! find their document, deliveries that never arrived, documents that did not
//! converge), the server's resident memory (peak and at the end, from
//! `/proc/<pid>/status`) and CPU seconds (`/proc/<pid>/stat`). The report is a
//! Markdown table on stdout and in `--out`, with the goals (at 1,000 clients:
//! p99 < 100 ms, no errors; at least 3x lower p99 and 3x less memory than the
//! JS server) reported, never asserted. Loopback only; every loop is bounded
//! in count and time.

#[path = "../load/mod.rs"]
mod load;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;

use load::report::{self, Header, RunResult};
use load::run::{Plan, run};
use load::servers::Kind;

/// The server-under-load benchmark: klad-server against the JavaScript
/// automerge-repo sync server (see the module documentation).
#[derive(Parser)]
#[command(name = "klad-load", args_override_self = true)]
struct Cli {
    /// Client counts to run, comma-separated, in order.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000")]
    steps: Vec<usize>,

    /// Servers to run each step against: klad, js (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "klad,js")]
    servers: Vec<String>,

    /// Clients per document (each step must be a multiple of it).
    #[arg(long, default_value_t = 10)]
    per_doc: usize,

    /// Milliseconds between two edits of one client.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,

    /// Seconds of steady load per run, after every client has connected.
    #[arg(long, default_value_t = 20)]
    steady_secs: u64,

    /// The longest wait, in seconds, for the last deliveries after the load.
    #[arg(long, default_value_t = 10)]
    drain_secs: u64,

    /// The longest the connect phase of one run may take, in seconds.
    #[arg(long, default_value_t = 60)]
    connect_secs: u64,

    /// Clients connecting at the same time.
    #[arg(long, default_value_t = 32)]
    connect_parallelism: usize,

    /// The klad-server binary (default: next to this one, i.e. the same
    /// release target directory).
    #[arg(long)]
    klad_server: Option<PathBuf>,

    /// The JavaScript server's directory (server.mjs and node_modules).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/js-server"))]
    js_server_dir: PathBuf,

    /// Where to write the Markdown report (it is printed to stdout as well).
    #[arg(long)]
    out: Option<PathBuf>,

    /// Skip the runs that would start after this many seconds from now
    /// (each counts as steady + drain + 20 s); 0 means no limit.
    #[arg(long, default_value_t = 0)]
    budget_secs: u64,

    /// The command to name in the report (default: this program's arguments).
    #[arg(long)]
    command: Option<String>,

    /// The soak: sample the server's memory, open file descriptors, runtime
    /// tasks and latency every this many seconds of the steady load, and
    /// report whether they stay flat after warm-up (0: no sampling).
    #[arg(long, default_value_t = 0)]
    sample_secs: u64,

    /// Where the soak writes its samples (CSV) and picture (SVG), one pair
    /// per run, named after the server and the number of clients.
    #[arg(long, requires = "sample_secs")]
    soak_out: Option<PathBuf>,

    /// Internal: load every saved document in DIR and print how much this
    /// process's resident memory grew, in KiB (the soak runs it as a child).
    #[arg(long, hide = true)]
    doc_memory: Option<PathBuf>,
}

/// `--doc-memory DIR`: loads every file of `dir` as an Automerge document,
/// keeps them all, and prints the growth of resident memory in KiB.
fn doc_memory(dir: &std::path::Path) -> anyhow::Result<u64> {
    let ticks = load::procfs::clock_ticks();
    let rss = || load::procfs::sample(None, ticks).map_or(0, |s| s.rss_kib);
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("could not read {}", dir.display()))?
    {
        files.push(std::fs::read(entry?.path())?);
    }
    let before = rss();
    let mut docs = Vec::new();
    for bytes in &files {
        docs.push(automerge::Automerge::load(bytes).context("a saved document did not load")?);
    }
    let after = rss();
    drop(docs);
    Ok(after.saturating_sub(before))
}

/// What the documents of a soak take in memory, KiB: `saved` loaded in a
/// fresh child process (this program with `--doc-memory`), so that nothing
/// else of the run counts.
fn documents_kib(saved: &[Vec<u8>]) -> anyhow::Result<u64> {
    let dir = tempfile::tempdir()?;
    for (i, bytes) in saved.iter().enumerate() {
        std::fs::write(dir.path().join(format!("{i}.automerge")), bytes)?;
    }
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("--doc-memory")
        .arg(dir.path())
        .output()?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// The soak's memory growth after warm-up set against what the documents
/// themselves take at the end (they grow with every edit).
fn memory_against_documents(r: &RunResult) -> String {
    let Some(f) = load::soak::flatness(&r.samples) else {
        return String::new();
    };
    let after = &r.samples[f.warmup.min(r.samples.len() - 1)..];
    let (first, last) = (after[0].rss_kib, after[after.len() - 1].rss_kib);
    let growth = last as f64 - first as f64;
    match documents_kib(&r.saved_docs) {
        Ok(docs) => format!(
            "- resident memory grew {:.1} MiB from the end of warm-up to the last sample; the {} documents themselves take {:.1} MiB at the end (loaded in a fresh process), so {:.1} MiB of the growth ({:.1} % of the memory at the end of warm-up) is not the documents\n",
            growth / 1024.0,
            r.saved_docs.len(),
            docs as f64 / 1024.0,
            (growth - docs as f64) / 1024.0,
            (growth - docs as f64) * 100.0 / first.max(1) as f64
        ),
        Err(e) => format!("- what the documents take in memory could not be measured: {e:#}\n"),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for now.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The soak's section of the report for run `r`, writing its CSV and SVG
/// to `out` when given.
fn soak_report(
    r: &RunResult,
    every_secs: u64,
    out: Option<&std::path::Path>,
) -> anyhow::Result<String> {
    let name = format!(
        "soak-{}-{}",
        match r.kind {
            Kind::Klad => "klad",
            Kind::Js => "js",
        },
        r.clients
    );
    let mut text = format!(
        "\n## Soak: {} with {} clients, sampled every {every_secs} s\n\n{}",
        r.kind.label(),
        r.clients,
        load::soak::summary(&r.samples)
    );
    if !r.saved_docs.is_empty() {
        text.push_str(&memory_against_documents(r));
    }
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "could not create {}; pick another --soak-out",
                dir.display()
            )
        })?;
        let title = format!(
            "{} under {} clients, sampled every {every_secs} s",
            r.kind.label(),
            r.clients
        );
        for (ext, body) in [
            ("csv", load::soak::csv(&r.samples)),
            ("svg", load::soak::svg(&title, &r.samples)),
        ] {
            let path = dir.join(format!("{name}.{ext}"));
            std::fs::write(&path, body).with_context(|| {
                format!(
                    "could not write {}; pick another --soak-out",
                    path.display()
                )
            })?;
            text.push_str(&format!("- {ext}: {}\n", path.display()));
        }
    }
    Ok(text)
}

fn js_versions(js_dir: &std::path::Path) -> String {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "node (version unknown)".into());
    let package = |name: &str| {
        std::fs::read_to_string(js_dir.join("node_modules").join(name).join("package.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v["version"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "not installed".into())
    };
    format!(
        "Node {node}, @automerge/automerge-repo {} with NodeWSServerAdapter (network-websocket {}) and NodeFSStorageAdapter (storage-nodefs {}); share policy: never announce, any client may fetch any document by id",
        package("@automerge/automerge-repo"),
        package("@automerge/automerge-repo-network-websocket"),
        package("@automerge/automerge-repo-storage-nodefs"),
    )
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(dir) = &cli.doc_memory {
        return match doc_memory(dir) {
            Ok(kib) => {
                println!("{kib}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: could not start the tokio runtime ({e}); check the process limits");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(benchmark(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn benchmark(cli: Cli) -> anyhow::Result<()> {
    if cli.per_doc < 2 {
        bail!("--per-doc must be at least 2: latency is measured between clients of one document");
    }
    if let Some(bad) = cli
        .steps
        .iter()
        .find(|n| **n == 0 || **n % cli.per_doc != 0)
    {
        bail!(
            "the step {bad} is not a positive multiple of --per-doc {}; pick steps like 100,500,1000",
            cli.per_doc
        );
    }
    let mut kinds = Vec::new();
    for s in &cli.servers {
        kinds.push(match s.trim() {
            "klad" => Kind::Klad,
            "js" => Kind::Js,
            other => bail!("{other:?} is not a server this benchmark knows; use klad and/or js"),
        });
    }
    let klad_server = match cli.klad_server.clone() {
        Some(p) => p,
        None => std::env::current_exe()
            .context("cannot tell where this program is; pass --klad-server")?
            .with_file_name("klad-server"),
    };
    if kinds.contains(&Kind::Klad) && !klad_server.is_file() {
        bail!(
            "there is no klad-server at {}; build it with `cargo build --release -p klad-server` or pass --klad-server",
            klad_server.display()
        );
    }
    let plan = Plan {
        per_doc: cli.per_doc,
        interval: Duration::from_millis(cli.interval_ms.max(1)),
        steady: Duration::from_secs(cli.steady_secs),
        drain: Duration::from_secs(cli.drain_secs),
        connect_limit: Duration::from_secs(cli.connect_secs),
        connect_parallelism: cli.connect_parallelism.max(1),
        klad_server,
        js_dir: cli.js_server_dir.clone(),
        sample_every: (cli.sample_secs > 0).then(|| Duration::from_secs(cli.sample_secs)),
    };
    if plan.sample_every.is_some_and(|every| every > plan.steady) {
        bail!(
            "--sample-secs {} is longer than the steady load (--steady-secs {}); sample more often or load longer",
            cli.sample_secs,
            cli.steady_secs
        );
    }
    let command = cli.command.clone().unwrap_or_else(|| {
        std::env::args()
            .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
            .collect::<Vec<_>>()
            .join(" ")
    });
    let header = Header {
        command,
        date: utc_now(),
        machine: load::procfs::machine_description(),
        js_versions: js_versions(&plan.js_dir),
        workload: format!(
            "{} clients per document, one samod 0.16 repo and websocket per client, all in one \
generator process (tokio, {} worker threads) on the same machine as the server; each client \
makes one change every {} ms (a word typed at a random spot of an article's body, or 1-3 \
characters deleted, like one 75 ms keystroke batch of a phone) for {} s of steady load after \
all clients have connected, then up to {} s for the last deliveries. klad-server: one \
process per document with a drafter per client, tokens from the facilitation API, \
--max-connections = clients + 64, durability barrier on (every change fsynced before it is \
acknowledged or forwarded). JS server: the first client of each group creates the document.",
            plan.per_doc,
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            plan.interval.as_millis(),
            plan.steady.as_secs(),
            plan.drain.as_secs(),
        ),
    };

    let mut runs: Vec<RunResult> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let began = std::time::Instant::now();
    let run_estimate = plan.steady + plan.drain + Duration::from_secs(20);
    for &clients in &cli.steps {
        for &kind in &kinds {
            if cli.budget_secs > 0
                && began.elapsed() + run_estimate > Duration::from_secs(cli.budget_secs)
            {
                failures.push(format!(
                    "{} with {clients} clients: skipped, it would not finish within --budget-secs {}",
                    kind.label(),
                    cli.budget_secs
                ));
                continue;
            }
            eprintln!("klad-load: {} with {clients} clients ...", kind.label());
            match run(kind, clients, &plan).await {
                Ok(r) => {
                    eprintln!(
                        "klad-load: {} with {clients} clients: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} errors, peak RSS {:.1} MiB",
                        kind.label(),
                        r.latency.p50_ms,
                        r.latency.p99_ms,
                        r.latency.max_ms,
                        r.errors(),
                        r.server_rss_peak_kib as f64 / 1024.0
                    );
                    runs.push(r);
                }
                Err(e) => {
                    eprintln!(
                        "klad-load: {} with {clients} clients failed: {e:#}",
                        kind.label()
                    );
                    failures.push(format!("{} with {clients} clients: {e:#}", kind.label()));
                }
            }
        }
    }

    let mut text = report::markdown(&header, &runs, &failures);
    for r in runs.iter().filter(|_| plan.sample_every.is_some()) {
        text.push_str(&soak_report(r, cli.sample_secs, cli.soak_out.as_deref())?);
    }
    println!("{text}");
    if let Some(out) = &cli.out {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| {
                format!("could not create {}; pick another --out", dir.display())
            })?;
        }
        std::fs::write(out, &text).with_context(|| {
            format!(
                "could not write the report to {}; pick another --out",
                out.display()
            )
        })?;
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} runs failed (see the report); the table holds the others",
            failures.len(),
            failures.len() + runs.len()
        );
    }
    Ok(())
}
