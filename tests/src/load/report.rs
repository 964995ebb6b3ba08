//! The results of the runs and the Markdown report made of them.

use std::fmt::Write as _;
use std::time::Duration;

use super::servers::Kind;

/// p50, p99 and max of the delivery latencies, in milliseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct LatencySummary {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl LatencySummary {
    /// Summarises latencies given in microseconds.
    pub fn of(mut us: Vec<u32>) -> LatencySummary {
        if us.is_empty() {
            return LatencySummary::default();
        }
        us.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * us.len() as f64).ceil() as usize).clamp(1, us.len());
            us[rank - 1] as f64 / 1000.0
        };
        LatencySummary {
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: us[us.len() - 1] as f64 / 1000.0,
        }
    }
}

/// Everything measured in one run (one server, one step).
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The server.
    pub kind: Kind,
    /// Clients asked for.
    pub clients: usize,
    /// Documents (klad-server: processes).
    pub docs: usize,
    /// Creating processes and invitations (klad-server only).
    pub setup_secs: f64,
    /// Connecting every client and finding the documents.
    pub connect_secs: f64,
    /// Clients that connected and found their document.
    pub connected: usize,
    /// Clients that did not.
    pub failed_connects: usize,
    /// Distinct reasons clients failed (a few).
    pub connect_errors: Vec<String>,
    /// Websocket dials that failed (and were retried).
    pub dial_errors: u64,
    /// Connections lost during the load.
    pub disconnects: u64,
    /// Edits the schedule asked for.
    pub planned: u64,
    /// Edits made.
    pub sent: u64,
    /// The largest lateness of an edit behind its schedule.
    pub max_lag: Duration,
    /// Deliveries expected (each edit at every other connected client of its document).
    pub expected: u64,
    /// Deliveries seen.
    pub delivered: u64,
    /// Delivery latencies.
    pub latency: LatencySummary,
    /// Steady load plus drain, in seconds.
    pub window_secs: f64,
    /// Documents whose clients ended with different heads.
    pub diverged: usize,
    /// Average body length at the end.
    pub mean_body_chars: usize,
    /// The server's peak resident memory (VmHWM), KiB.
    pub server_rss_peak_kib: u64,
    /// The soak's samples during the steady load (empty unless asked for).
    pub samples: Vec<super::soak::Sample>,
    /// The soak: each document as its first client had it at the end
    /// (`Automerge::save`), to weigh what the documents take in memory.
    pub saved_docs: Vec<Vec<u8>>,
    /// The server's resident memory at the end of the load, KiB.
    pub server_rss_end_kib: u64,
    /// The server's CPU seconds during the window.
    pub server_cpu_window: f64,
    /// The server's CPU seconds from its start to the end of the window.
    pub server_cpu_total: f64,
    /// The generator's CPU seconds during the window.
    pub generator_cpu_window: f64,
    /// How busy the whole machine was during the window (all cores).
    pub machine_busy_pct: f64,
    /// How busy the machine was in the second before the run (all cores).
    pub busy_before_pct: f64,
    /// Problem lines in the server's log by the end of the load.
    pub log_problems_during_load: usize,
    /// Problem lines in the server's log in the end (after the clients and
    /// the server stopped): count and a few samples.
    pub log_problems: (usize, Vec<String>),
    /// Whether the server exited by itself with success on SIGTERM.
    pub clean_exit: bool,
    /// CPU seconds other processes on the machine used during the window.
    pub others_cpu_window: f64,
    /// klad-server's own view at the end of the load (from `/metrics`).
    pub server_metrics: Vec<(String, f64)>,
    /// Why `/metrics` could not be read, if it could not.
    pub metrics_error: Option<String>,
}

impl RunResult {
    /// The server's CPU milliseconds per edit delivered (an edit counts
    /// once however many clients it reached), over the steady load and
    /// drain; `None` without deliveries.
    pub fn cpu_ms_per_edit(&self) -> Option<f64> {
        let per_edit = self.expected as f64 / self.sent.max(1) as f64;
        let edits = self.delivered as f64 / per_edit.max(1e-9);
        (self.delivered > 0 && edits >= 1.0).then(|| self.server_cpu_window * 1000.0 / edits)
    }

    /// An empty result for a run about to start.
    pub fn new(kind: Kind, clients: usize, docs: usize) -> RunResult {
        RunResult {
            kind,
            clients,
            docs,
            setup_secs: 0.0,
            connect_secs: 0.0,
            connected: 0,
            failed_connects: 0,
            connect_errors: Vec::new(),
            dial_errors: 0,
            disconnects: 0,
            planned: 0,
            sent: 0,
            max_lag: Duration::ZERO,
            expected: 0,
            delivered: 0,
            latency: LatencySummary::default(),
            window_secs: 0.0,
            diverged: 0,
            mean_body_chars: 0,
            server_rss_peak_kib: 0,
            samples: Vec::new(),
            saved_docs: Vec::new(),
            server_rss_end_kib: 0,
            server_cpu_window: 0.0,
            server_cpu_total: 0.0,
            generator_cpu_window: 0.0,
            machine_busy_pct: 0.0,
            busy_before_pct: 0.0,
            log_problems_during_load: 0,
            log_problems: (0, Vec::new()),
            clean_exit: false,
            others_cpu_window: 0.0,
            server_metrics: Vec::new(),
            metrics_error: None,
        }
    }

    /// Deliveries that never arrived.
    pub fn missing(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    /// Disconnects, failed connects, missing deliveries and diverged documents.
    pub fn errors(&self) -> u64 {
        self.disconnects + self.failed_connects as u64 + self.missing() + self.diverged as u64
    }

    /// Whether the generator or the machine, not the server, may have set the
    /// pace: the machine's cores were nearly all busy, or edits went out late.
    pub fn saturated(&self) -> bool {
        self.machine_busy_pct >= 90.0 || self.max_lag >= Duration::from_millis(100)
    }

    /// The sum of klad-server series whose name (labels stripped) is `name`.
    pub fn metric(&self, name: &str) -> f64 {
        self.server_metrics
            .iter()
            .filter(|(n, _)| n.split('{').next() == Some(name))
            .map(|(_, v)| v)
            .sum::<f64>()
            + 0.0
    }

    /// What klad-server's metrics say, in one sentence part.
    fn metrics_note(&self) -> Option<String> {
        if let Some(e) = &self.metrics_error {
            return Some(format!("**{e}** at the end of the load"));
        }
        if self.server_metrics.is_empty() {
            return None;
        }
        let flushes = self.metric("klad_storage_flush_seconds_count");
        let flush_ms = self.metric("klad_storage_flush_seconds_sum") * 1000.0 / flushes.max(1.0);
        Some(format!(
            "server metrics: {:.0} frames in, {:.0} frames out, {:.0} storage writes averaging {flush_ms:.2} ms with their fsync, {:.0} connections closed by the server, {:.0} refused, {:.0} storage errors",
            self.metric("klad_messages_in_total"),
            self.metric("klad_messages_out_total"),
            flushes,
            self.metric("klad_server_closed_connections_total"),
            self.metric("klad_rejected_connections_total"),
            self.metric("klad_storage_errors_total"),
        ))
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn errors_cell(r: &RunResult) -> String {
    if r.errors() == 0 {
        return "0".into();
    }
    format!(
        "**{}** (disc {}, conn {}, miss {}, div {})",
        r.errors(),
        r.disconnects,
        r.failed_connects,
        r.missing(),
        r.diverged
    )
}

/// What the report's header says about how it was made.
pub struct Header {
    /// The command that was run.
    pub command: String,
    /// UTC date and time.
    pub date: String,
    /// nproc, memory, CPU.
    pub machine: String,
    /// Node and automerge-repo versions.
    pub js_versions: String,
    /// The workload in one paragraph.
    pub workload: String,
}

/// The whole report.
pub fn markdown(header: &Header, runs: &[RunResult], failures: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Klad server under load\n");
    let _ = writeln!(out, "- Command: `{}`", header.command);
    let _ = writeln!(out, "- Date: {}", header.date);
    let _ = writeln!(out, "- Machine: {}", header.machine);
    let _ = writeln!(out, "- Baseline: {}", header.js_versions);
    let _ = writeln!(out, "- Workload: {}\n", header.workload);

    let _ = writeln!(
        out,
        "| server | clients | docs | connect s | edits sent / planned | deliveries / s | p50 ms | p99 ms | max ms | errors | server RSS peak MiB | server RSS end MiB | server CPU s | server CPU ms / edit | generator CPU s | other CPU s | machine busy % |"
    );
    let _ = writeln!(
        out,
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    for r in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {} / {} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.1} | {:.0}{} |",
            r.kind.label(),
            r.clients,
            r.docs,
            r.connect_secs,
            r.sent,
            r.planned,
            r.delivered as f64 / r.window_secs.max(1e-9),
            r.latency.p50_ms,
            r.latency.p99_ms,
            r.latency.max_ms,
            errors_cell(r),
            mib(r.server_rss_peak_kib),
            mib(r.server_rss_end_kib),
            r.server_cpu_window,
            r.cpu_ms_per_edit()
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}")),
            r.generator_cpu_window,
            r.others_cpu_window,
            r.machine_busy_pct,
            if r.saturated() { " ⚠" } else { "" },
        );
    }
    let _ = writeln!(
        out,
        "\nColumns: *connect s* connects every client and finds (or creates) its document; \
*deliveries / s* counts edits arriving at other clients over the steady load plus drain; \
latency is from the instant a client makes a change to the instant another client of the \
document has it, over every delivery; *errors* = lost connections (disc) + clients that \
could not connect or find their document (conn) + deliveries that never arrived (miss) + \
documents whose clients ended with different heads (div); a backlog still in flight when \
the drain time ran out counts as missing and diverged too, so at saturation these are late \
rather than lost; RSS from `/proc/<pid>/status` \
(VmHWM since the server started, VmRSS when the load ended); CPU seconds from \
`/proc/<pid>/stat` (utime + stime) over the steady load plus drain, for the server, this \
generator and everything else on the machine (*other*: `/proc/stat` busy time minus the two); \
*server CPU ms / edit* is the server's CPU over the same window divided by the edits delivered \
(deliveries divided by the clients each edit should reach); \
*machine busy* over all cores in the same window (⚠: at least 90 %, or edits left more than 100 ms behind schedule, \
so the machine or the generator may have set the pace).\n"
    );

    let _ = writeln!(out, "## Against the goals\n");
    goals(&mut out, runs);

    let _ = writeln!(out, "\n## Notes per run\n");
    for r in runs {
        let _ = writeln!(
            out,
            "- {} at {} clients: machine {:.0} % busy before the run; setup {:.1} s, {} of {} clients connected, {} dial retries; \
{} of {} deliveries in {:.1} s; edits at most {} ms behind schedule; generator {:.0} %, \
server {:.0} % and other processes {:.0} % of one core; bodies end at {} characters on \
average; server CPU since start {:.1} s; {} problem lines in the server log during the load, \
{} in all; {}{}.",
            r.kind.label(),
            r.clients,
            r.busy_before_pct,
            r.setup_secs,
            r.connected,
            r.clients,
            r.dial_errors,
            r.delivered,
            r.expected,
            r.window_secs,
            r.max_lag.as_millis(),
            r.generator_cpu_window * 100.0 / r.window_secs.max(1e-9),
            r.server_cpu_window * 100.0 / r.window_secs.max(1e-9),
            r.others_cpu_window * 100.0 / r.window_secs.max(1e-9),
            r.mean_body_chars,
            r.server_cpu_total,
            r.log_problems_during_load,
            r.log_problems.0,
            if r.clean_exit {
                "clean exit on SIGTERM"
            } else {
                "**no clean exit on SIGTERM**"
            },
            r.metrics_note()
                .map(|m| format!("; {m}"))
                .unwrap_or_default(),
        );
        for e in &r.connect_errors {
            let _ = writeln!(out, "  - client error: {e}");
        }
        for l in &r.log_problems.1 {
            let _ = writeln!(out, "  - server log: `{}`", l.replace('`', "'"));
        }
    }
    if !failures.is_empty() {
        let _ = writeln!(out, "\n## Runs that failed\n");
        for f in failures {
            let _ = writeln!(out, "- {f}");
        }
    }
    out
}

fn find(runs: &[RunResult], kind: Kind, clients: usize) -> Option<&RunResult> {
    runs.iter().find(|r| r.kind == kind && r.clients == clients)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

/// A warning when a run's numbers may say more about the machine than the server.
fn saturation_note(runs: &[&RunResult]) -> &'static str {
    if runs.iter().any(|r| r.saturated()) {
        " (⚠ the machine was saturated in this step: the server competed with the generator and other processes for the cores)"
    } else {
        ""
    }
}

fn goals(out: &mut String, runs: &[RunResult]) {
    let Some(top) = runs
        .iter()
        .filter(|r| r.kind == Kind::Klad)
        .map(|r| r.clients)
        .max()
    else {
        let _ = writeln!(out, "No klad-server run finished.");
        return;
    };
    if let Some(k) = find(runs, Kind::Klad, top) {
        let _ = writeln!(
            out,
            "- klad-server at {top} clients: p99 {:.1} ms (goal < 100 ms: {}), {} errors (goal 0: {}){}.",
            k.latency.p99_ms,
            verdict(k.latency.p99_ms < 100.0 && k.delivered > 0),
            k.errors(),
            verdict(k.errors() == 0),
            saturation_note(&[k]),
        );
    }
    let mut steps: Vec<usize> = runs.iter().map(|r| r.clients).collect();
    steps.sort_unstable();
    steps.dedup();
    for n in steps {
        let (Some(k), Some(j)) = (find(runs, Kind::Klad, n), find(runs, Kind::Js, n)) else {
            continue;
        };
        let mem = j.server_rss_peak_kib as f64 / (k.server_rss_peak_kib.max(1)) as f64;
        // A ratio of latencies needs deliveries on both sides (with none,
        // the latency is 0 and the ratio would be nonsense).
        let p99 = if k.delivered == 0 || j.delivered == 0 {
            format!(
                "not comparable (deliveries: klad {}, JS {})",
                k.delivered, j.delivered
            )
        } else {
            let r = j.latency.p99_ms / k.latency.p99_ms.max(0.001);
            format!("{r:.2}x (goal >= 3x: {})", verdict(r >= 3.0))
        };
        let cpu = match (k.cpu_ms_per_edit(), j.cpu_ms_per_edit()) {
            (Some(kc), Some(jc)) => {
                let r = kc / jc.max(1e-9);
                format!(
                    "{kc:.2} / {jc:.2} ms = {r:.2} (goal <= 0.20: {})",
                    verdict(r <= 0.2)
                )
            }
            _ => "not comparable (no deliveries on one side)".to_owned(),
        };
        let _ = writeln!(
            out,
            "- {n} clients: server CPU per delivered edit klad / JS = {cpu}."
        );
        let _ = writeln!(
            out,
            "- {n} clients: JS p99 / klad p99 = {p99}; JS peak RSS / klad peak RSS = {mem:.2}x (goal >= 3x: {}); errors klad {} / JS {}{}.",
            verdict(mem >= 3.0),
            k.errors(),
            j.errors(),
            saturation_note(&[k, j]),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            command: "klad-load".into(),
            date: "today".into(),
            machine: "here".into(),
            js_versions: "js".into(),
            workload: "none".into(),
        }
    }

    #[test]
    fn a_run_without_deliveries_gives_no_latency_ratio() {
        let mut k = RunResult::new(Kind::Klad, 10, 1);
        let mut j = RunResult::new(Kind::Js, 10, 1);
        j.delivered = 100;
        j.latency = LatencySummary::of(vec![5_000; 100]);
        let md = markdown(&header(), &[k.clone(), j.clone()], &[]);
        assert!(
            md.contains("not comparable (deliveries: klad 0, JS 100)"),
            "{md}"
        );
        k.delivered = 100;
        k.latency = LatencySummary::of(vec![1_000; 100]);
        let md = markdown(&header(), &[k, j], &[]);
        assert!(md.contains("JS p99 / klad p99 = 5.00x"), "{md}");
    }
}
