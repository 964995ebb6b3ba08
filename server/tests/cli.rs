//! The command line as a newcomer meets it: each command's help lists its own
//! options only; a command without a data directory says so and creates
//! nothing; text by default and JSON with --json; logs carry plain values and
//! no colour codes when they do not go to a terminal.

mod common;

use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

const SERVE_ONLY: [&str; 4] = [
    "--listen",
    "--max-message-bytes",
    "--max-connections",
    "--idle-unload-secs",
];

fn help(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--help")
        .output()
        .expect("the klad-server binary runs");
    assert!(out.status.success(), "{args:?} --help");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn each_commands_help_lists_its_own_options() {
    for serving in [&[][..], &["serve"][..]] {
        let h = help(serving);
        for flag in SERVE_ONLY {
            assert!(h.contains(flag), "{serving:?} --help lists {flag}:\n{h}");
        }
    }
    let commands: [&[&str]; 8] = [
        &["process", "create"],
        &["process", "show"],
        &["invite"],
        &["members", "list"],
        &["members", "reissue"],
        &["members", "revoke"],
        &["phase"],
        &["members"],
    ];
    for command in commands {
        let h = help(command);
        for flag in SERVE_ONLY {
            assert!(!h.contains(flag), "{command:?} --help lists {flag}:\n{h}");
        }
        assert!(
            h.contains("--data"),
            "{command:?} --help lists --data:\n{h}"
        );
    }
    for command in commands.iter().filter(|c| c != &&&["members"][..]) {
        assert!(help(command).contains("--json"), "{command:?} has --json");
    }
    // A serve option given to another command is an error, not ignored.
    let out = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "members",
            "list",
            "--process",
            "p",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn a_command_without_a_data_directory_says_so_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("klad-data");
    let out = cli_output(&missing, &["process", "create", "--title", "Nergens"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("There is no data directory at"), "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(err.contains("--data"), "{err}");
    assert!(!missing.exists(), "nothing was created");

    // A directory that is not a data directory is left as it is.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = cli_output(&empty, &["members", "list", "--process", "p"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a klad-server data directory"), "{err}");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_print_text_by_default_and_json_with_the_flag() {
    let server = Server::start(&[]).await;
    let process = server.create_process("Uitvoer");
    let anna = server.invite(&process, "Anna", "drafter");
    let text = |args: &[&str]| {
        let out = cli_output(&server.data, args);
        assert!(out.status.success(), "{args:?}");
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            serde_json::from_str::<Value>(&s).is_err(),
            "{args:?} prints text: {s}"
        );
        s
    };
    let shown = text(&["process", "show", "--process", &process.id]);
    assert!(shown.contains("title:        Uitvoer"), "{shown}");
    assert!(shown.contains("phase:        drafting"), "{shown}");
    assert!(shown.contains(&anna.id), "{shown}");
    let listed = text(&["members", "list", "--process", &process.id]);
    assert!(
        listed.lines().nth(1).unwrap().starts_with("Anna  drafter"),
        "{listed}"
    );
    let shown = server.cli(&["process", "show", "--process", &process.id, "--json"]);
    assert_eq!(shown["title"], "Uitvoer");
    let listed = server.cli(&["members", "list", "--process", &process.id, "--json"]);
    assert_eq!(listed[0]["id"], anna.id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_hold_plain_values_and_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let mut child = KillOnDrop(
        Command::new(BIN)
            .arg("--data")
            .arg(&data)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let file = data.join("server.json");
    eventually(std::time::Duration::from_secs(30), "server.json", || {
        std::fs::read_to_string(&file).ok()
    })
    .await;
    let v = cli(
        &data,
        &["process", "create", "--title", "Logboek", "--json"],
    );
    let pid = v["process"]["process_id"].as_str().unwrap().to_owned();
    cli(
        &data,
        &[
            "invite",
            "--process",
            &pid,
            "--name",
            "Anna",
            "--role",
            "drafter",
            "--json",
        ],
    );
    cli(
        &data,
        &["phase", "--process", &pid, "--to", "consultation", "--json"],
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    assert!(child.0.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("member added"), "{text}");
    assert!(text.contains("by=operator"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes in a file:\n{text}"
    );
    assert!(
        !text.contains("Some(") && !text.contains("=None"),
        "plain values, never Rust's Option:\n{text}"
    );
}
