//! The `klad-server` command: serve, or facilitate from the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use klad_core::{Member, ProcessId, ProcessInfo};
use klad_server::auth::admin_secret_path;
use klad_server::client;
use klad_server::http::{parse_role, parse_ttl};
use klad_server::migrate;
use klad_server::server::{self, SERVER_FILE, ServeConfig, ServerFile};
use klad_server::store::StoreLocation;
use klad_store::StoreError;
use serde_json::{Value, json};

/// Klad's sync server: merges everyone's changes to an ordinance and hands
/// them on, enforcing who may write what.
///
/// With no command it serves (the options below are serve's). The other
/// commands change or read the data directory: through the running server's
/// API when one is running on it, directly otherwise.
#[derive(Parser)]
#[command(name = "klad-server", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// What every command takes.
#[derive(Args)]
struct Common {
    /// Directory holding the store, the signing key and the admin secret.
    /// Serving creates it on first start; the other commands need it to exist.
    #[arg(long, env = "KLAD_DATA", default_value = "./klad-data", global = true)]
    data: PathBuf,

    /// Where documents, process records and the signing key are stored:
    /// `sled` (the default: a database in the data directory) or a
    /// PostgreSQL address, postgres://user:password@host:port/database,
    /// for several server nodes on one database (docs/OPERATIONS.md).
    #[arg(long, env = "KLAD_STORE", global = true, hide_env_values = true)]
    store: Option<String>,

    /// Write logs as JSON lines (for log collectors) instead of text.
    /// RUST_LOG sets the level (default: info when serving, warn otherwise).
    #[arg(long, env = "KLAD_LOG_JSON", global = true)]
    log_json: bool,
}

/// Serving's options (only `klad-server` and `klad-server serve` take them).
#[derive(Args, Clone)]
struct ServeArgs {
    /// Address and port to listen on. Port 0 picks a free port (it is logged
    /// and written to server.json in the data directory).
    #[arg(long, env = "KLAD_LISTEN", default_value = "127.0.0.1:7700")]
    listen: String,

    /// Largest websocket message accepted from a client, in bytes. Larger
    /// ones close the connection with code 1009 and a reason.
    #[arg(long, env = "KLAD_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    max_message_bytes: usize,

    /// Most websocket connections open at once; more are refused with HTTP
    /// 503 and a reason.
    #[arg(long, env = "KLAD_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,

    /// Test-only fault injection: delay every storage write by this many
    /// milliseconds (the durability tests use it to widen the window in
    /// which an early acknowledgement would lose data).
    #[arg(long, env = "KLAD_FAULT_PUT_DELAY_MS", hide = true)]
    fault_put_delay_ms: Option<u64>,

    /// Seconds a process may go without connections or facilitation before
    /// its documents are unloaded from memory (they load again, from the
    /// store, when someone connects).
    #[arg(long, env = "KLAD_IDLE_UNLOAD_SECS", default_value_t = 300)]
    idle_unload_secs: u64,

    /// Test-only fault injection: when a process's hub finds itself idle,
    /// wait this many milliseconds before stopping it (connections arriving
    /// meanwhile keep it running).
    #[arg(long, env = "KLAD_FAULT_UNLOAD_DELAY_MS", hide = true)]
    fault_unload_delay_ms: Option<u64>,

    /// Test-only fault injection: inviting a member of this name, or
    /// opening a process of this title, panics between the call's first
    /// write and its last (the tests check that nothing is left half done).
    #[arg(long, env = "KLAD_FAULT_PANIC_NAME", hide = true)]
    fault_panic_name: Option<String>,

    /// Test-only fault injection: the store's n-th sync of its log (and
    /// every later one) fails with an I/O error, as a failing disk's
    /// fdatasync does. Only in the first run: not after the server
    /// restarted itself to recover.
    #[arg(long, env = "KLAD_FAULT_SYNC_FAIL_AT", hide = true)]
    fault_sync_fail_at: Option<u64>,

    /// With several nodes on one PostgreSQL database: the address other
    /// nodes reach this one at, e.g. http://10.0.0.5:7700 (they relay
    /// connections for the processes it serves to it). Default: the
    /// listening address.
    #[arg(long, env = "KLAD_ADVERTISE")]
    advertise: Option<String>,

    /// With several nodes: seconds a node's lease of a process lasts
    /// without renewal (it renews every third of it). A node that dies
    /// leaves its processes to the others after this long.
    #[arg(long, env = "KLAD_LEASE_SECS", default_value_t = 10)]
    lease_secs: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default when no command is given).
    Serve(ServeArgs),
    /// Create a process, or show what its process document says.
    Process {
        #[command(subcommand)]
        command: ProcessCommand,
    },
    /// Add a member to a process and print their invitation (with their token).
    Invite {
        /// The process id.
        #[arg(long)]
        process: String,
        /// The name shown next to everything they write.
        #[arg(long)]
        name: String,
        /// drafter, official, facilitator or observer.
        #[arg(long)]
        role: String,
        /// How long the token is valid, e.g. 30d, 12h, 90m; at most 1y.
        #[arg(long, default_value = "30d")]
        ttl: String,
        /// Invite even though a member of this name exists: they are another
        /// person with the same name. (To give an existing member a new
        /// token, use `members reissue`.)
        #[arg(long)]
        again: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List a process's members, give one a new token, or revoke theirs.
    Members {
        #[command(subcommand)]
        command: MembersCommand,
    },
    /// Copy this data directory's sled store (with its signing key and
    /// admin secret) into an empty PostgreSQL database, to go on with
    /// `--store postgres://...` (for example on several nodes). Stop the
    /// server first; the sled store is left as it was.
    Migrate {
        /// The database: postgres://user:password@host:port/database.
        #[arg(long, env = "KLAD_MIGRATE_TO", hide_env_values = true)]
        to: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Move a process to its next phase (consultation, then final).
    Phase {
        /// The process id.
        #[arg(long)]
        process: String,
        /// The phase to move to.
        #[arg(long)]
        to: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ProcessCommand {
    /// Open a new process in the drafting phase and print its id and documents.
    Create {
        /// The title of the ordinance.
        #[arg(long)]
        title: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print what the process document says (title, phase, documents, members).
    Show {
        /// The process id.
        #[arg(long)]
        process: String,
        /// Print JSON (the process document) instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum MembersCommand {
    /// List the members of a process: name, role, member id, devices.
    List {
        /// The process id.
        #[arg(long)]
        process: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Give a member a new token (theirs was lost, or expired). Their earlier
    /// tokens keep working until they expire, unless --revoke-earlier.
    Reissue {
        /// The process id.
        #[arg(long)]
        process: String,
        /// The member: their member id, or their name.
        #[arg(long)]
        member: String,
        /// How long the new token is valid, e.g. 30d, 12h, 90m; at most 1y.
        #[arg(long, default_value = "30d")]
        ttl: String,
        /// Also revoke every earlier token of theirs: devices that joined
        /// with one are disconnected and must join again with the new one.
        #[arg(long)]
        revoke_earlier: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke every token of a member: they can no longer connect (open
    /// connections are closed) until they get a new one with `reissue`.
    /// They stay a member; everything they wrote stays theirs.
    Revoke {
        /// The process id.
        #[arg(long)]
        process: String,
        /// The member: their member id, or their name.
        #[arg(long)]
        member: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn init_logging(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour codes only for a person watching a terminal, never in files.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A serve option given on the command line before another command
/// (`klad-server --listen ... invite ...`), where it would do nothing.
fn misplaced_serve_option(matches: &ArgMatches) -> Option<String> {
    let ids = [
        ("listen", "--listen"),
        ("max_message_bytes", "--max-message-bytes"),
        ("max_connections", "--max-connections"),
        ("idle_unload_secs", "--idle-unload-secs"),
        ("fault_put_delay_ms", "--fault-put-delay-ms"),
        ("fault_unload_delay_ms", "--fault-unload-delay-ms"),
        ("fault_panic_name", "--fault-panic-name"),
        ("fault_sync_fail_at", "--fault-sync-fail-at"),
        ("advertise", "--advertise"),
        ("lease_secs", "--lease-secs"),
    ];
    ids.iter()
        .find(|(id, _)| matches.value_source(id) == Some(ValueSource::CommandLine))
        .map(|(_, flag)| (*flag).to_owned())
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let serving = matches!(cli.command, None | Some(Command::Serve(_)));
    if !serving && let Some(flag) = misplaced_serve_option(&matches) {
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "{flag} is an option of serving (`klad-server {flag} ...` or `klad-server serve {flag} ...`); the other commands do not take it. Leave it out."
                ),
            )
            .exit();
    }
    init_logging(cli.common.log_json, if serving { "info" } else { "warn" });
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("klad-server: could not start the async runtime ({e}).");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("klad-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where a command works: the data directory and the store.
struct Place {
    data: PathBuf,
    store: StoreLocation,
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let place = Place {
        data: cli.common.data,
        store: StoreLocation::parse(cli.common.store.as_deref())?,
    };
    let data = &place.data;
    let command = match cli.command {
        None => return serve(&place, cli.serve).await,
        Some(Command::Serve(args)) => return serve(&place, args).await,
        Some(command) => command,
    };
    // Everything else works on a data directory that exists: a mistyped
    // --data must not leave a new, empty one behind.
    server::existing_data_dir(data, &place.store)?;
    match command {
        Command::Serve(args) => serve(&place, args).await,
        Command::Process {
            command: ProcessCommand::Create { title, json },
        } => {
            let out = facilitate(&place, Op::Create { title }).await?;
            print_out(&out, json, created_text)
        }
        Command::Process {
            command: ProcessCommand::Show { process, json },
        } => {
            let out = facilitate(&place, Op::Show { process }).await?;
            print_out(&out, json, process_text)
        }
        Command::Invite {
            process,
            name,
            role,
            ttl,
            again,
            json,
        } => {
            parse_role(&role).map_err(anyhow::Error::msg)?;
            let ttl = checked_ttl(&ttl)?;
            let out = facilitate(
                &place,
                Op::Invite {
                    process,
                    name,
                    role,
                    ttl,
                    again,
                },
            )
            .await?;
            print_out(&out, json, |v| {
                Ok(format!(
                    "Invited {} as {}.\n{}",
                    s(&v["name"]),
                    s(&v["role"]),
                    invitation_text(v)?
                ))
            })
        }
        Command::Members { command } => members(&place, command).await,
        Command::Migrate { to, json } => {
            let data = place.data.clone();
            let out =
                tokio::task::spawn_blocking(move || migrate::to_postgres(&data, &to)).await??;
            print_out(&serde_json::to_value(&out)?, json, |v| {
                Ok(format!(
                    "Copied {} entries ({} documents, {} bytes) and the signing key and admin secret into {}, and checked every one.\nStart the server with --store <that address> (or KLAD_STORE); the sled store in {} is left as it was: keep it as a backup until you have checked.",
                    v["entries"],
                    v["documents"],
                    v["bytes"],
                    s(&v["database"]),
                    place.data.join("store").display()
                ))
            })
        }
        Command::Phase { process, to, json } => {
            let out = facilitate(&place, Op::Phase { process, to }).await?;
            print_out(&out, json, |v| {
                Ok(format!(
                    "process {} is now in the {} phase",
                    s(&v["id"]),
                    s(&v["phase"])
                ))
            })
        }
    }
}

async fn members(place: &Place, command: MembersCommand) -> anyhow::Result<()> {
    match command {
        MembersCommand::List { process, json } => {
            let out = facilitate(place, Op::Show { process }).await?;
            let info: ProcessInfo = serde_json::from_value(out)?;
            let mut list: Vec<Member> = info.members.into_values().collect();
            list.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
            if json {
                println!("{}", serde_json::to_string(&list)?);
            } else {
                println!("{}", members_text(&info.id, &list));
            }
            Ok(())
        }
        MembersCommand::Reissue {
            process,
            member,
            ttl,
            revoke_earlier,
            json,
        } => {
            let ttl = checked_ttl(&ttl)?;
            let out = facilitate(
                place,
                Op::Reissue {
                    process,
                    member,
                    ttl,
                    revoke_earlier,
                },
            )
            .await?;
            print_out(&out, json, |v| {
                let earlier = if v["earlier_tokens_revoked"].as_bool() == Some(true) {
                    "Their earlier tokens are revoked: devices that joined with one must join again with this one."
                } else {
                    "Their earlier tokens keep working until they expire (revoke them with --revoke-earlier)."
                };
                Ok(format!(
                    "New token for {} ({}). {earlier}\n{}",
                    s(&v["name"]),
                    s(&v["role"]),
                    invitation_text(v)?
                ))
            })
        }
        MembersCommand::Revoke {
            process,
            member,
            json,
        } => {
            let out = facilitate(place, Op::Revoke { process, member }).await?;
            print_out(&out, json, |v| {
                Ok(format!(
                    "Revoked every token of {} ({}, member id {}): their devices can no longer connect.\nGive them a new token with: klad-server members reissue --process {} --member {}",
                    s(&v["name"]),
                    s(&v["role"]),
                    s(&v["member_id"]),
                    s(&v["process_id"]),
                    s(&v["member_id"])
                ))
            })
        }
    }
}

/// A token lifetime checked here, so a bad one is refused before anything
/// is opened; the server checks it again.
fn checked_ttl(ttl: &str) -> anyhow::Result<String> {
    parse_ttl(ttl).map_err(anyhow::Error::msg)?;
    Ok(ttl.trim().to_owned())
}

fn s(v: &Value) -> String {
    v.as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string())
}

fn print_out(
    v: &Value,
    json: bool,
    text: impl FnOnce(&Value) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    if json {
        println!("{v}");
    } else {
        println!("{}", text(v)?);
    }
    Ok(())
}

fn created_text(v: &Value) -> anyhow::Result<String> {
    let p = &v["process"];
    Ok(format!(
        "process id:   {}\ntitle:        {}\nphase:        drafting\nprocess doc:  {}\ntext doc:     {}\n\nInvite members with: klad-server invite --process {} --name \"...\" --role drafter",
        s(&p["process_id"]),
        s(&p["title"]),
        s(&p["process_doc"]),
        s(&p["text_doc"]),
        s(&p["process_id"])
    ))
}

fn process_text(v: &Value) -> anyhow::Result<String> {
    let info: ProcessInfo = serde_json::from_value(v.clone())?;
    let mut list: Vec<Member> = info.members.values().cloned().collect();
    list.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    Ok(format!(
        "process id:   {}\ntitle:        {}\nphase:        {}\ntext doc:     {}\nmembers:      {}\n\n{}",
        info.id,
        info.title,
        info.phase,
        info.text_doc,
        list.len(),
        members_text(&info.id, &list)
    ))
}

fn members_text(process: &ProcessId, list: &[Member]) -> String {
    if list.is_empty() {
        return format!(
            "No members yet. Invite one with: klad-server invite --process {process} --name \"...\" --role drafter"
        );
    }
    let rows: Vec<[String; 4]> = list
        .iter()
        .map(|m| {
            [
                m.name.clone(),
                m.role.to_string(),
                m.id.to_string(),
                m.devices.len().to_string(),
            ]
        })
        .collect();
    let header = ["name", "role", "member id", "devices"].map(str::to_owned);
    let width = |i: usize| {
        std::iter::once(&header)
            .chain(&rows)
            .map(|r| r[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    std::iter::once(&header)
        .chain(&rows)
        .map(|r| {
            format!(
                "{:w0$}  {:w1$}  {:w2$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An invitation's fields (the same for a new member and a reissued token).
fn invitation_text(v: &Value) -> anyhow::Result<String> {
    let expires = v["expires_at"]
        .as_u64()
        .map(|secs| {
            humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
                .to_string()
        })
        .unwrap_or_else(|| v["expires_at"].to_string());
    Ok(format!(
        "member id:          {}\ncontributions doc:  {}\npeer id:            {}\nexpires:            {expires}\ntoken:\n{}",
        s(&v["member_id"]),
        s(&v["contributions_doc"]),
        s(&v["peer_id"]),
        s(&v["token"])
    ))
}

async fn serve(place: &Place, args: ServeArgs) -> anyhow::Result<()> {
    if std::io::IsTerminal::is_terminal(&std::io::stdout())
        && let Some(hint) = path_hint()
    {
        println!("{hint}");
    }
    server::serve(ServeConfig {
        listen: args.listen,
        data: place.data.clone(),
        store: place.store.clone(),
        max_message_bytes: args.max_message_bytes,
        max_connections: args.max_connections,
        fault_put_delay: args
            .fault_put_delay_ms
            .map(std::time::Duration::from_millis),
        idle_unload: std::time::Duration::from_secs(args.idle_unload_secs.max(1)),
        fault_unload_delay: args
            .fault_unload_delay_ms
            .map(std::time::Duration::from_millis),
        fault_panic_name: args.fault_panic_name,
        fault_sync_fail_at: args.fault_sync_fail_at,
        advertise: args.advertise,
        lease: std::time::Duration::from_secs(args.lease_secs.max(1)),
        restart_in_place: true,
    })
    .await
}

/// How to call this binary by name, when `klad-server` on the PATH is not
/// this binary (as after `cargo run`): the documented commands use the name.
fn path_hint() -> Option<String> {
    let me = std::env::current_exe().ok()?.canonicalize().ok()?;
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            dir.join("klad-server")
                .canonicalize()
                .is_ok_and(|found| found == me)
        })
    });
    if on_path {
        return None;
    }
    let dir = me.parent()?;
    Some(format!(
        "The other commands (klad-server process create, invite, members, phase; see docs/OPERATIONS.md) call klad-server by name.\nTo have this one on your PATH in another terminal: export PATH=\"{}:$PATH\"",
        dir.display()
    ))
}

enum Op {
    Create {
        title: String,
    },
    Show {
        process: String,
    },
    Invite {
        process: String,
        name: String,
        role: String,
        ttl: String,
        again: bool,
    },
    Reissue {
        process: String,
        member: String,
        ttl: String,
        revoke_earlier: bool,
    },
    Revoke {
        process: String,
        member: String,
    },
    Phase {
        process: String,
        to: String,
    },
}

/// Runs `op` through the running server if there is one, else on the store.
async fn facilitate(place: &Place, op: Op) -> anyhow::Result<Value> {
    let data = place.data.as_path();
    if let Some(addr) = running_server(data) {
        match via_http(data, &addr, &op).await {
            Err(e) if is_connect_error(&e) => {
                // A stale server.json (the server was killed); try the store.
            }
            other => return other,
        }
    }
    let engine = server::open_engine_with(
        data,
        server::EngineConfig {
            store: place.store.clone(),
            ..server::EngineConfig::default()
        },
    )
    .await;
    match engine {
        Ok(engine) => {
            let result = offline(&engine, op).await;
            engine.stop().await;
            result
        }
        Err(e)
            if matches!(
                e.downcast_ref::<StoreError>(),
                Some(StoreError::Locked { .. })
            ) =>
        {
            anyhow::bail!(
                "The data directory {} is in use by a running klad-server, but that server could not be reached (its {SERVER_FILE} is missing or out of date). Run this command on the machine where the server runs, with the same --data, or stop the server first.",
                data.display()
            )
        }
        Err(e) => Err(e),
    }
}

fn running_server(data: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data.join(SERVER_FILE)).ok()?;
    let f: ServerFile = serde_json::from_str(&text).ok()?;
    Some(f.listen)
}

fn is_connect_error(e: &anyhow::Error) -> bool {
    e.to_string().starts_with("could not connect")
}

/// `text` as one URL path segment (percent-encoded but for unreserved characters).
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn via_http(data: &Path, addr: &str, op: &Op) -> anyhow::Result<Value> {
    let secret = std::fs::read_to_string(admin_secret_path(data)).map_err(|e| {
        anyhow::anyhow!(
            "A server is running on {addr}, but its admin secret could not be read ({e}). Run this command as the user the server runs as."
        )
    })?;
    let secret = secret.trim();
    let (method, path, body) = match op {
        Op::Create { title } => (
            "POST",
            "/api/processes".to_owned(),
            Some(json!({ "title": title })),
        ),
        Op::Show { process } => (
            "GET",
            format!("/api/processes/{}", path_segment(process)),
            None,
        ),
        Op::Invite {
            process,
            name,
            role,
            ttl,
            again,
        } => (
            "POST",
            format!("/api/processes/{}/members", path_segment(process)),
            Some(json!({ "name": name, "role": role, "ttl": ttl, "again": again })),
        ),
        Op::Reissue {
            process,
            member,
            ttl,
            revoke_earlier,
        } => (
            "POST",
            format!(
                "/api/processes/{}/members/{}/token",
                path_segment(process),
                path_segment(member)
            ),
            Some(json!({ "ttl": ttl, "revoke_earlier": revoke_earlier })),
        ),
        Op::Revoke { process, member } => (
            "POST",
            format!(
                "/api/processes/{}/members/{}/revoke",
                path_segment(process),
                path_segment(member)
            ),
            None,
        ),
        Op::Phase { process, to } => (
            "POST",
            format!("/api/processes/{}/phase", path_segment(process)),
            Some(json!({ "phase": to })),
        ),
    };
    let resp = client::request(addr, method, &path, Some(secret), body.as_ref()).await?;
    let v = resp.json()?;
    if resp.status >= 400 {
        anyhow::bail!("{}", v["error"].as_str().unwrap_or(&resp.body));
    }
    Ok(v)
}

async fn offline(engine: &server::Engine, op: Op) -> anyhow::Result<Value> {
    let f = &engine.facilitation;
    let ttl = |t: &str| parse_ttl(t).map_err(anyhow::Error::msg);
    Ok(match op {
        Op::Create { title } => json!({ "process": f.create_process(&title).await? }),
        Op::Show { process } => serde_json::to_value(f.summary(&ProcessId(process))?)?,
        Op::Invite {
            process,
            name,
            role,
            ttl: t,
            again,
        } => {
            let role = parse_role(&role).map_err(anyhow::Error::msg)?;
            serde_json::to_value(
                f.add_member(&ProcessId(process), None, &name, role, ttl(&t)?, again)
                    .await?,
            )?
        }
        Op::Reissue {
            process,
            member,
            ttl: t,
            revoke_earlier,
        } => serde_json::to_value(
            f.reissue(&ProcessId(process), None, &member, ttl(&t)?, revoke_earlier)
                .await?,
        )?,
        Op::Revoke { process, member } => {
            serde_json::to_value(f.revoke(&ProcessId(process), None, &member).await?)?
        }
        Op::Phase { process, to } => {
            let phase = klad_core::Phase::parse(to.trim()).ok_or_else(|| {
                anyhow::anyhow!("{to:?} is not a phase; use drafting, consultation or final.")
            })?;
            serde_json::to_value(f.set_phase(&ProcessId(process), None, phase).await?)?
        }
    })
}
