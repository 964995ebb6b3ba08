//! The soak: the server's resident memory, open file descriptors, runtime
//! tasks and delivery latency sampled at a fixed interval during a long
//! steady load, whether they stay flat after warm-up, and a picture of them.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::procfs;

/// One sample: the server at one moment, and the deliveries since the last.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Seconds since the steady load began.
    pub at_secs: f64,
    /// The server's resident memory, KiB.
    pub rss_kib: u64,
    /// The server's open file descriptors.
    pub fds: u64,
    /// The server's OS threads.
    pub threads: u64,
    /// Tasks alive in the server's async runtime (`klad_tokio_tasks`), when
    /// its metrics answered.
    pub tasks: Option<u64>,
    /// Websocket connections open (`klad_connections_open`).
    pub connections: Option<u64>,
    /// Deliveries since the last sample.
    pub deliveries: usize,
    /// Their median and 99th percentile latency, ms (0 without deliveries).
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The server's CPU use since the last sample, % of one core.
    pub cpu_pct: f64,
}

/// Latencies of deliveries since the sampler last took them (kept only
/// while a sampler runs).
#[derive(Default)]
pub struct Window {
    on: AtomicBool,
    latencies_us: Mutex<Vec<u32>>,
}

impl Window {
    /// Records one delivery, if a sampler runs.
    pub fn push(&self, us: u32) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        self.latencies_us
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(us);
    }

    fn take(&self) -> Vec<u32> {
        std::mem::take(&mut *self.latencies_us.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The `q` quantile (0..=1) of sorted `v`, in ms.
fn quantile_ms(v: &[u32], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    f64::from(v[i]) / 1000.0
}

/// Samples the server `pid` every `every` from `start` until `end`;
/// `metrics` reads its metrics endpoint (name, value pairs).
pub async fn sample_until<F, Fut>(
    pid: u32,
    window: &Window,
    every: Duration,
    start: Instant,
    end: Instant,
    metrics: F,
) -> Vec<Sample>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<(String, f64)>, String>>,
{
    let ticks = procfs::clock_ticks();
    let mut samples = Vec::new();
    let mut last_cpu = procfs::sample(Some(pid), ticks).map_or(0.0, |s| s.cpu_secs);
    let mut last_at = Instant::now();
    window.take();
    window.on.store(true, Ordering::Relaxed);
    let mut next = Instant::now() + every;
    // Bounded: one sample per interval until the end of the steady load.
    while next <= end {
        tokio::time::sleep_until(next.into()).await;
        next += every;
        let Some(p) = procfs::sample(Some(pid), ticks) else {
            break;
        };
        let now = Instant::now();
        let mut lat = window.take();
        lat.sort_unstable();
        let m = metrics().await.unwrap_or_default();
        let metric = |name: &str| {
            m.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.max(0.0) as u64)
        };
        let secs = now.duration_since(last_at).as_secs_f64().max(1e-9);
        samples.push(Sample {
            at_secs: now.duration_since(start).as_secs_f64(),
            rss_kib: p.rss_kib,
            fds: procfs::open_fds(pid).unwrap_or(0),
            threads: p.threads,
            tasks: metric("klad_tokio_tasks"),
            connections: metric("klad_connections_open"),
            deliveries: lat.len(),
            p50_ms: quantile_ms(&lat, 0.5),
            p99_ms: quantile_ms(&lat, 0.99),
            cpu_pct: (p.cpu_secs - last_cpu) / secs * 100.0,
        });
        last_cpu = p.cpu_secs;
        last_at = now;
    }
    window.on.store(false, Ordering::Relaxed);
    samples
}

/// How flat a series stayed after warm-up.
#[derive(Clone, Debug, PartialEq)]
pub struct Flatness {
    /// Samples counted as warm-up and left out.
    pub warmup: usize,
    /// (max − min) / min of the resident memory after warm-up, %.
    pub rss_spread_pct: f64,
    /// Open file descriptors at the last sample minus at the first after warm-up.
    pub fd_growth: i64,
    /// Tasks at the last sample minus at the first after warm-up.
    pub task_growth: Option<i64>,
    /// The median and the worst of the per-sample p99 latencies after warm-up, ms.
    pub p99_median_ms: f64,
    pub p99_worst_ms: f64,
}

/// Warm-up: the first minute, or the first fifth of the run if that is
/// shorter (a short run still keeps most of its samples).
pub fn flatness(samples: &[Sample]) -> Option<Flatness> {
    let total = samples.last()?.at_secs;
    let warm_secs = 60f64.min(total / 5.0);
    let warmup = samples.iter().take_while(|s| s.at_secs < warm_secs).count();
    let after = &samples[warmup.min(samples.len() - 1)..];
    let (first, last) = (after.first()?, after.last()?);
    let min = after.iter().map(|s| s.rss_kib).min()?;
    let max = after.iter().map(|s| s.rss_kib).max()?;
    let mut p99: Vec<f64> = after
        .iter()
        .filter(|s| s.deliveries > 0)
        .map(|s| s.p99_ms)
        .collect();
    p99.sort_by(f64::total_cmp);
    Some(Flatness {
        warmup,
        rss_spread_pct: if min == 0 {
            0.0
        } else {
            (max - min) as f64 * 100.0 / min as f64
        },
        fd_growth: last.fds as i64 - first.fds as i64,
        task_growth: match (first.tasks, last.tasks) {
            (Some(a), Some(b)) => Some(b as i64 - a as i64),
            _ => None,
        },
        p99_median_ms: p99.get(p99.len() / 2).copied().unwrap_or(0.0),
        p99_worst_ms: p99.last().copied().unwrap_or(0.0),
    })
}

/// The samples as CSV, one line per sample.
pub fn csv(samples: &[Sample]) -> String {
    let mut out = String::from(
        "seconds,rss_kib,open_fds,threads,tasks,connections,deliveries,p50_ms,p99_ms,cpu_pct\n",
    );
    let opt = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
    for s in samples {
        let _ = writeln!(
            out,
            "{:.1},{},{},{},{},{},{},{:.2},{:.2},{:.1}",
            s.at_secs,
            s.rss_kib,
            s.fds,
            s.threads,
            opt(s.tasks),
            opt(s.connections),
            s.deliveries,
            s.p50_ms,
            s.p99_ms,
            s.cpu_pct
        );
    }
    out
}

/// One panel of the picture: a title and a value per sample.
struct Panel<'a> {
    title: &'a str,
    values: Vec<f64>,
}

/// The samples as an SVG picture: one panel per series (resident memory,
/// open file descriptors, runtime tasks, p99 latency) over minutes, the
/// warm-up shaded.
pub fn svg(title: &str, samples: &[Sample]) -> String {
    let (w, panel_h, left, top) = (720.0, 130.0, 70.0, 64.0);
    let plot_w = w - left - 40.0;
    let mut panels = vec![
        Panel {
            title: "server resident memory (MiB)",
            values: samples.iter().map(|s| s.rss_kib as f64 / 1024.0).collect(),
        },
        Panel {
            title: "open file descriptors",
            values: samples.iter().map(|s| s.fds as f64).collect(),
        },
    ];
    if samples.iter().all(|s| s.tasks.is_some()) {
        panels.push(Panel {
            title: "tasks in the server's runtime",
            values: samples
                .iter()
                .map(|s| s.tasks.unwrap_or(0) as f64)
                .collect(),
        });
    }
    panels.push(Panel {
        title: "p99 edit → peer latency per interval (ms)",
        values: samples.iter().map(|s| s.p99_ms).collect(),
    });
    let h = top + panels.len() as f64 * (panel_h + 30.0) + 30.0;
    let t_max = samples.last().map_or(1.0, |s| s.at_secs).max(1.0);
    let warm = flatness(samples).map_or(0, |f| f.warmup);
    let warm_secs = samples.get(warm).map_or(0.0, |s| s.at_secs);
    let x = |t: f64| left + t / t_max * plot_w;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{left}" y="22" font-size="14">{}</text>"#,
        escape(title)
    );
    for (i, p) in panels.iter().enumerate() {
        let y0 = top + i as f64 * (panel_h + 30.0);
        let (lo, hi) = p
            .values
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        // Zero-based axes, so that a flat line looks flat and growth looks
        // like growth.
        let hi = if hi <= 0.0 { 1.0 } else { hi * 1.1 };
        let lo = lo.min(0.0);
        let y = |v: f64| y0 + panel_h - (v - lo) / (hi - lo) * panel_h;
        let _ = writeln!(
            out,
            r##"<text x="{left}" y="{}">{}</text><rect x="{left}" y="{y0}" width="{plot_w}" height="{panel_h}" fill="none" stroke="#999"/>"##,
            y0 - 6.0,
            escape(p.title)
        );
        if warm > 0 {
            let _ = writeln!(
                out,
                r##"<rect x="{left}" y="{y0}" width="{:.1}" height="{panel_h}" fill="#eee"/>"##,
                x(warm_secs) - left
            );
        }
        for v in [lo, (lo + hi) / 2.0, hi] {
            let _ = writeln!(
                out,
                r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
                left - 6.0,
                y(v) + 4.0,
                short(v)
            );
        }
        let points: Vec<String> = samples
            .iter()
            .zip(&p.values)
            .map(|(s, v)| format!("{:.1},{:.1}", x(s.at_secs), y(*v)))
            .collect();
        let _ = writeln!(
            out,
            r##"<polyline fill="none" stroke="#1f5fa8" stroke-width="1.5" points="{}"/>"##,
            points.join(" ")
        );
    }
    let axis_y = top + panels.len() as f64 * (panel_h + 30.0) - 10.0;
    for k in 0..=4 {
        let t = t_max * f64::from(k) / 4.0;
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{axis_y}" text-anchor="middle" fill="#555">{}</text>"##,
            x(t),
            duration(t, t_max)
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="{left}" y="{}" fill="#555">shaded: warm-up, left out of the flatness figures</text>"##,
        axis_y + 20.0
    );
    out.push_str("</svg>\n");
    out
}

/// `t` seconds, in seconds for a run under three minutes, else in minutes.
fn duration(t: f64, t_max: f64) -> String {
    if t_max < 180.0 {
        format!("{t:.0} s")
    } else {
        format!("{:.0} min", t / 60.0)
    }
}

fn short(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The soak's figures as Markdown lines, with the goals (flat within 10 %
/// after warm-up, no file descriptor growth) reported, never asserted.
pub fn summary(samples: &[Sample]) -> String {
    let Some(f) = flatness(samples) else {
        return "No samples: the steady load was shorter than one sampling interval.\n".into();
    };
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "- samples: {} ({} in warm-up, left out)",
        samples.len(),
        f.warmup
    );
    let _ = writeln!(
        out,
        "- resident memory after warm-up: spread {:.1} % (goal ≤ 10 %: {})",
        f.rss_spread_pct,
        verdict(f.rss_spread_pct <= 10.0)
    );
    let _ = writeln!(
        out,
        "- open file descriptors: {:+} after warm-up (goal: no growth: {})",
        f.fd_growth,
        verdict(f.fd_growth <= 0)
    );
    if let Some(t) = f.task_growth {
        let _ = writeln!(out, "- runtime tasks: {t:+} after warm-up");
    }
    let _ = writeln!(
        out,
        "- p99 latency per interval after warm-up: median {:.1} ms, worst {:.1} ms",
        f.p99_median_ms, f.p99_worst_ms
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64, rss: u64, fds: u64) -> Sample {
        Sample {
            at_secs: secs,
            rss_kib: rss,
            fds,
            deliveries: 1,
            p99_ms: 2.0,
            ..Sample::default()
        }
    }

    #[test]
    fn warmup_is_left_out_of_the_flatness_figures() {
        // 10 minutes, a sample every 10 s; memory grows in the first minute only.
        let samples: Vec<Sample> = (1..=60)
            .map(|i| {
                let t = f64::from(i) * 10.0;
                at(t, if t < 60.0 { 1000 * i as u64 } else { 10_000 }, 20)
            })
            .collect();
        let f = flatness(&samples).unwrap();
        assert_eq!(f.warmup, 5);
        assert_eq!(f.rss_spread_pct, 0.0);
        assert_eq!(f.fd_growth, 0);
    }

    #[test]
    fn growth_after_warmup_shows() {
        let samples: Vec<Sample> = (1..=20)
            .map(|i| at(f64::from(i) * 10.0, 1000 + 100 * i as u64, 10 + i as u64))
            .collect();
        let f = flatness(&samples).unwrap();
        assert!(f.rss_spread_pct > 50.0, "{f:?}");
        assert!(f.fd_growth > 0);
        let text = summary(&samples);
        assert!(text.contains("MISSED"), "{text}");
    }

    #[test]
    fn the_picture_has_a_line_per_series_and_no_samples_give_a_sentence() {
        let samples: Vec<Sample> = (1..=5).map(|i| at(f64::from(i), 10, 3)).collect();
        let pic = svg("soak <test>", &samples);
        assert_eq!(pic.matches("<polyline").count(), 3);
        assert!(pic.contains("soak &lt;test&gt;"));
        assert!(summary(&[]).starts_with("No samples"));
        assert_eq!(csv(&samples).lines().count(), 6);
    }
}
