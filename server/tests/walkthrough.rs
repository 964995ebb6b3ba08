//! The first-process walkthrough of docs/OPERATIONS.md, run as written, so
//! the document cannot drift from the binary.
//!
//! Every fenced block marked ```` ```console walkthrough ```` is a
//! transcript: a line starting with `$ ` is a command, the lines after it
//! are what it prints (stdout, then stderr). In the expected lines `<name>`
//! stands for a value: the first time a name appears in an output it is
//! bound to what the command printed there; afterwards it must be printed
//! the same, and in later commands it is replaced by that value (as a person
//! pastes an id). A line `...` stands for any number of lines. Runs of spaces
//! compare as one.
//!
//! The commands run with `sh -c`, in a fresh directory (so `./klad-data` is
//! the server's), with the directory of the `klad-server` binary this test
//! was built with first on `PATH` — exactly what the document tells the
//! reader to do (`export PATH="$PWD/target/debug:$PATH"`). A command must
//! succeed if and only if it prints nothing to stderr. The walkthrough runs
//! twice: against a running server (the commands use its HTTP API) and with
//! the server stopped (they open the store themselves).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// One command of a transcript and what it prints.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
}

/// The steps of every `console walkthrough` block of `doc`, in order.
fn transcript(doc: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut inside = false;
    for line in doc.lines() {
        if !inside {
            inside = line.trim_end() == "```console walkthrough";
            continue;
        }
        if line.trim_end() == "```" {
            inside = false;
            continue;
        }
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                command: command.to_owned(),
                expected: Vec::new(),
            });
        } else {
            steps
                .last_mut()
                .expect("a walkthrough block starts with a command")
                .expected
                .push(line.to_owned());
        }
    }
    steps
}

/// A piece of an expected line.
enum Piece {
    Text(String),
    Value(String),
}

fn pieces(line: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(open) = rest.find('<') {
        match rest[open..].find('>') {
            Some(close) if close > 1 => {
                out.push(Piece::Text(rest[..open].to_owned()));
                out.push(Piece::Value(rest[open + 1..open + close].to_owned()));
                rest = &rest[open + close + 1..];
            }
            _ => break,
        }
    }
    out.push(Piece::Text(rest.to_owned()));
    out
}

fn squeeze(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Matches one printed line against an expected one; returns the new bindings.
fn match_line(
    expected: &str,
    actual: &str,
    bound: &HashMap<String, String>,
) -> Option<HashMap<String, String>> {
    let mut new = HashMap::new();
    let mut rest = squeeze(actual);
    let ps = pieces(&squeeze(expected));
    for (i, p) in ps.iter().enumerate() {
        match p {
            Piece::Text(t) => rest = rest.strip_prefix(t.as_str())?.to_owned(),
            Piece::Value(name) => {
                if let Some(v) = bound.get(name).or(new.get(name)) {
                    rest = rest.strip_prefix(v.as_str())?.to_owned();
                    continue;
                }
                // Up to the text that follows (or the end of the line).
                let next = match ps.get(i + 1) {
                    Some(Piece::Text(t)) if !t.is_empty() => Some(t.as_str()),
                    _ => None,
                };
                let end = match next {
                    Some(t) => rest.find(t)?,
                    None => rest.len(),
                };
                if end == 0 {
                    return None;
                }
                new.insert(name.clone(), rest[..end].to_owned());
                rest = rest[end..].to_owned();
            }
        }
    }
    rest.is_empty().then_some(new)
}

/// Matches printed lines against expected ones (`...` for any lines).
fn match_lines(
    expected: &[String],
    actual: &[&str],
    bound: &HashMap<String, String>,
) -> Option<HashMap<String, String>> {
    let Some((first, more)) = expected.split_first() else {
        return actual.is_empty().then(HashMap::new);
    };
    if first.trim() == "..." {
        return (0..=actual.len()).find_map(|skip| match_lines(more, &actual[skip..], bound));
    }
    let (line, rest) = actual.split_first()?;
    let mut new = match_line(first, line, bound)?;
    let mut all = bound.clone();
    all.extend(new.clone());
    new.extend(match_lines(more, rest, &all)?);
    Some(new)
}

/// The command with every `<name>` replaced by its value.
fn fill(command: &str, bound: &HashMap<String, String>) -> String {
    pieces(command)
        .into_iter()
        .map(|p| match p {
            Piece::Text(t) => t,
            Piece::Value(name) => bound
                .get(&name)
                .unwrap_or_else(|| {
                    panic!("`{command}` uses <{name}>, which no earlier output printed")
                })
                .clone(),
        })
        .collect()
}

/// The binary's directory first on PATH: `klad-server` is this build's.
fn path_with_binary() -> String {
    let dir = Path::new(BIN).parent().expect("the binary's directory");
    let path = std::env::var("PATH").unwrap_or_default();
    format!("{}:{path}", dir.display())
}

/// Runs the walkthrough in `dir`; returns what it bound.
fn walk(dir: &Path, steps: &[Step]) -> HashMap<String, String> {
    let mut bound = HashMap::new();
    for step in steps {
        assert!(
            step.command.starts_with("klad-server "),
            "a walkthrough command starts with klad-server: {}",
            step.command
        );
        let command = fill(&step.command, &bound);
        let out = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .current_dir(dir)
            .env("PATH", path_with_binary())
            .env_remove("RUST_LOG")
            .env_remove("KLAD_DATA")
            .stdin(Stdio::null())
            .output()
            .expect("sh runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.success(),
            stderr.is_empty(),
            "`{command}` must succeed exactly when it prints nothing to stderr; status {}, stderr: {stderr}",
            out.status
        );
        let printed = format!("{stdout}{stderr}");
        let lines: Vec<&str> = printed.lines().collect();
        let new = match_lines(&step.expected, &lines, &bound).unwrap_or_else(|| {
            panic!(
                "`{command}` printed\n{printed}\nbut docs/OPERATIONS.md shows\n{}",
                step.expected.join("\n")
            )
        });
        bound.extend(new);
    }
    bound
}

/// A server started as the document does (`./klad-data` in `dir`), on a free port.
fn start_server(dir: &Path) -> (KillOnDrop, String) {
    let child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env_remove("KLAD_DATA")
        .stdout(Stdio::null())
        .spawn()
        .expect("the klad-server binary starts");
    let child = KillOnDrop(child);
    let file = dir.join("klad-data/server.json");
    let started = std::time::Instant::now();
    loop {
        if let Some(addr) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .filter(|v| v["pid"].as_u64() == Some(u64::from(child.0.id())))
            .and_then(|v| v["listen"].as_str().map(str::to_owned))
        {
            return (child, addr);
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop_server(mut child: KillOnDrop) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    let status = child.0.wait().expect("the server exits");
    assert!(status.success(), "the server stops cleanly on SIGTERM");
}

fn operations_md() -> Vec<Step> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/OPERATIONS.md");
    let doc = std::fs::read_to_string(&path).expect("docs/OPERATIONS.md is readable");
    let steps = transcript(&doc);
    assert!(
        steps.len() >= 8,
        "docs/OPERATIONS.md has its walkthrough blocks (found {} commands)",
        steps.len()
    );
    steps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_walkthrough_runs_as_written_against_a_running_server() {
    let steps = operations_md();
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = start_server(dir.path());
    let bound = tokio::task::block_in_place(|| walk(dir.path(), &steps));

    // The tokens it printed let their members in (Anna's first one too: a
    // reissue without --revoke-earlier keeps it).
    let pid = &bound["process id"];
    for who in [
        "Anna's token",
        "Omar's token",
        "Fien's token",
        "Anna's new token",
    ] {
        let resp = klad_server::client::request(
            &addr,
            "GET",
            &format!("/api/processes/{pid}"),
            Some(&bound[who]),
            None,
        )
        .await
        .unwrap();
        assert_eq!(resp.status, 200, "{who}: {}", resp.body);
        assert_eq!(resp.json().unwrap()["phase"], "consultation");
    }
    tokio::task::block_in_place(|| stop_server(child));
}

#[test]
fn the_operations_walkthrough_runs_as_written_with_the_server_stopped() {
    let steps = operations_md();
    let dir = tempfile::tempdir().unwrap();
    // The server's first start creates the data directory.
    let (child, _) = start_server(dir.path());
    stop_server(child);
    let bound = walk(dir.path(), &steps);
    assert!(bound.contains_key("Anna's new token"));
}

#[test]
fn the_transcript_matcher_binds_and_compares() {
    let bound = HashMap::from([("a".to_owned(), "1".to_owned())]);
    let new = match_line("id: <a> and <b>!", "id:   1 and xyz!", &bound).unwrap();
    assert_eq!(new["b"], "xyz");
    assert!(match_line("id: <a>", "id: 2", &bound).is_none());
    assert!(match_line("id: <c>", "id: ", &bound).is_none());
    let expected = ["x".to_owned(), "...".to_owned(), "z <d>".to_owned()];
    let got = match_lines(&expected, &["x", "y", "y", "z 4"], &bound).unwrap();
    assert_eq!(got["d"], "4");
    assert!(match_lines(&expected, &["x", "y"], &bound).is_none());
    assert_eq!(fill("show --process <a>", &bound), "show --process 1");
}
