//! The suite's short soak: `klad-load` with sampling against a real
//! klad-server for a few seconds, end to end: the samples, their CSV and
//! picture, and the report's soak section. `scripts/soak.sh` runs the long
//! one (500 clients for 30 minutes); its figures are in RELIABILITY.md.
//! Nothing here times anything: the flatness goals are reported by the
//! script, never asserted.

use std::path::PathBuf;
use std::process::Command;

/// The klad-server to run: `KLAD_SERVER_BIN`, or the one built next to
/// klad-load (the workspace's test build builds both).
fn klad_server() -> PathBuf {
    if let Some(p) = std::env::var_os("KLAD_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_klad-load")).with_file_name("klad-server");
    assert!(
        bin.is_file(),
        "there is no klad-server at {}; build it (cargo build --bin klad-server) or set KLAD_SERVER_BIN",
        bin.display()
    );
    bin
}

#[test]
fn a_short_soak_samples_the_server_and_draws_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_klad-load"))
        .arg("--klad-server")
        .arg(klad_server())
        .args(["--servers", "klad", "--steps", "20", "--per-doc", "10"])
        .args([
            "--interval-ms",
            "500",
            "--steady-secs",
            "8",
            "--drain-secs",
            "10",
        ])
        .args(["--sample-secs", "2", "--soak-out"])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("report.md"))
        .output()
        .expect("klad-load runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "klad-load failed:\n{stderr}\n{stdout}"
    );

    let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(
        report.contains("## Soak: klad-server with 20 clients, sampled every 2 s"),
        "{report}"
    );
    assert!(report.contains("resident memory after warm-up: spread"));
    assert!(report.contains("open file descriptors:"));
    // The documents' own memory, weighed in a child process.
    assert!(
        report.contains("the 2 documents themselves take"),
        "{report}"
    );

    let csv = std::fs::read_to_string(dir.path().join("soak-klad-20.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    // 8 s of load sampled every 2 s: up to 4 samples (the last may fall
    // after the end and is not taken).
    assert!(
        (3..=4).contains(&rows.len()),
        "samples: {}\n{csv}",
        rows.len()
    );
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for r in &rows {
        // Every client stays connected through the load, each on its own
        // socket, and the server reports its runtime's tasks.
        assert_eq!(r[col("connections")], "20", "{csv}");
        assert!(r[col("open_fds")].parse::<u64>().unwrap() >= 20, "{csv}");
        assert!(r[col("tasks")].parse::<u64>().unwrap() >= 20, "{csv}");
        assert!(r[col("rss_kib")].parse::<u64>().unwrap() > 0, "{csv}");
    }
    let deliveries: u64 = rows
        .iter()
        .map(|r| r[col("deliveries")].parse::<u64>().unwrap())
        .sum();
    assert!(deliveries > 0, "edits reached the other clients: {csv}");

    let svg = std::fs::read_to_string(dir.path().join("soak-klad-20.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    assert_eq!(
        svg.matches("<polyline").count(),
        4,
        "memory, fds, tasks, latency"
    );
}
