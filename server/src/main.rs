//! The `klad-server` command: serve, or facilitate from the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use klad_core::ProcessId;
use klad_core::store::StoreError;
use klad_server::auth::admin_secret_path;
use klad_server::client;
use klad_server::http::{DEFAULT_TTL, parse_role, parse_ttl};
use klad_server::server::{self, SERVER_FILE, ServeConfig, ServerFile};
use serde_json::{Value, json};

/// Klad's sync server: merges everyone's changes to an ordinance and hands
/// them on, enforcing who may write what.
///
/// With no command it serves. The other commands change the data directory:
/// through the running server's API when one is running on it, directly
/// otherwise.
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

#[derive(Args)]
struct Common {
    /// Directory holding the store, the signing key and the admin secret.
    /// Created on first start.
    #[arg(long, env = "KLAD_DATA", default_value = "./klad-data", global = true)]
    data: PathBuf,

    /// Write logs as JSON lines (for log collectors) instead of text.
    /// RUST_LOG sets the level (default: info).
    #[arg(long, env = "KLAD_LOG_JSON", global = true)]
    log_json: bool,
}

#[derive(Args)]
struct ServeArgs {
    /// Address and port to listen on. Port 0 picks a free port (it is logged
    /// and written to server.json in the data directory).
    #[arg(
        long,
        env = "KLAD_LISTEN",
        default_value = "127.0.0.1:7700",
        global = true
    )]
    listen: String,

    /// Largest websocket message accepted from a client, in bytes. Larger
    /// ones close the connection with code 1009 and a reason.
    #[arg(long, env = "KLAD_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024, global = true)]
    max_message_bytes: usize,

    /// Most websocket connections open at once; more are refused with HTTP
    /// 503 and a reason.
    #[arg(
        long,
        env = "KLAD_MAX_CONNECTIONS",
        default_value_t = 1024,
        global = true
    )]
    max_connections: usize,

    /// Test-only fault injection: delay every storage write by this many
    /// milliseconds (the durability tests use it to widen the window in
    /// which an early acknowledgement would lose data).
    #[arg(long, env = "KLAD_FAULT_PUT_DELAY_MS", hide = true, global = true)]
    fault_put_delay_ms: Option<u64>,

    /// Seconds a process may go without connections or facilitation before
    /// its documents are unloaded from memory (they load again, from the
    /// store, when someone connects).
    #[arg(
        long,
        env = "KLAD_IDLE_UNLOAD_SECS",
        default_value_t = 300,
        global = true
    )]
    idle_unload_secs: u64,

    /// Test-only fault injection: when a process's hub finds itself idle,
    /// wait this many milliseconds before stopping it (connections arriving
    /// meanwhile keep it running).
    #[arg(long, env = "KLAD_FAULT_UNLOAD_DELAY_MS", hide = true, global = true)]
    fault_unload_delay_ms: Option<u64>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default when no command is given).
    Serve,
    /// Create a process, or show what its process document says.
    Process {
        #[command(subcommand)]
        command: ProcessCommand,
    },
    /// Add a member to a process and print their token.
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
        /// How long the token is valid, e.g. 30d, 12h, 90m.
        #[arg(long, default_value = "30d")]
        ttl: String,
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
    /// Print what the process document says (members, phase, documents).
    Show {
        /// The process id.
        #[arg(long)]
        process: String,
    },
}

fn init_logging(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, None | Some(Command::Serve));
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

async fn run(cli: Cli) -> anyhow::Result<()> {
    let data = cli.common.data;
    match cli.command {
        None | Some(Command::Serve) => serve(&data, cli.serve).await,
        Some(Command::Process {
            command: ProcessCommand::Create { title, json },
        }) => {
            let out = facilitate(&data, Op::Create { title }).await?;
            print_out(&out, json, |v| {
                let p = &v["process"];
                format!(
                    "process id:   {}\ntitle:        {}\nprocess doc:  {}\ntext doc:     {}\n\nInvite members with: klad-server invite --process {} --name \"...\" --role drafter",
                    s(&p["process_id"]),
                    s(&p["title"]),
                    s(&p["process_doc"]),
                    s(&p["text_doc"]),
                    s(&p["process_id"])
                )
            });
            Ok(())
        }
        Some(Command::Process {
            command: ProcessCommand::Show { process },
        }) => {
            let out = facilitate(&data, Op::Show { process }).await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        Some(Command::Invite {
            process,
            name,
            role,
            ttl,
            json,
        }) => {
            parse_role(&role).map_err(anyhow::Error::msg)?;
            parse_ttl(&ttl).map_err(anyhow::Error::msg)?;
            let out = facilitate(
                &data,
                Op::Invite {
                    process,
                    name,
                    role,
                    ttl,
                },
            )
            .await?;
            print_out(&out, json, |v| {
                format!(
                    "member id:          {}\nname:               {}\nrole:               {}\ncontributions doc:  {}\npeer id:            {}\nexpires at (unix):  {}\ntoken:\n{}",
                    s(&v["member_id"]),
                    s(&v["name"]),
                    s(&v["role"]),
                    s(&v["contributions_doc"]),
                    s(&v["peer_id"]),
                    v["expires_at"],
                    s(&v["token"])
                )
            });
            Ok(())
        }
        Some(Command::Phase { process, to, json }) => {
            let out = facilitate(&data, Op::Phase { process, to }).await?;
            print_out(&out, json, |v| {
                format!(
                    "process {} is now in the {} phase",
                    s(&v["id"]),
                    s(&v["phase"])
                )
            });
            Ok(())
        }
    }
}

fn s(v: &Value) -> String {
    v.as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string())
}

fn print_out(v: &Value, json: bool, text: impl FnOnce(&Value) -> String) {
    if json {
        println!("{v}");
    } else {
        println!("{}", text(v));
    }
}

async fn serve(data: &Path, args: ServeArgs) -> anyhow::Result<()> {
    server::serve(ServeConfig {
        listen: args.listen,
        data: data.to_path_buf(),
        max_message_bytes: args.max_message_bytes,
        max_connections: args.max_connections,
        fault_put_delay: args
            .fault_put_delay_ms
            .map(std::time::Duration::from_millis),
        idle_unload: std::time::Duration::from_secs(args.idle_unload_secs.max(1)),
        fault_unload_delay: args
            .fault_unload_delay_ms
            .map(std::time::Duration::from_millis),
    })
    .await
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
    },
    Phase {
        process: String,
        to: String,
    },
}

/// Runs `op` through the running server if there is one, else on the store.
async fn facilitate(data: &Path, op: Op) -> anyhow::Result<Value> {
    if let Some(addr) = running_server(data) {
        match via_http(data, &addr, &op).await {
            Err(e) if is_connect_error(&e) => {
                // A stale server.json (the server was killed); try the store.
            }
            other => return other,
        }
    }
    match server::open_engine(data).await {
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
        Op::Show { process } => ("GET", format!("/api/processes/{process}"), None),
        Op::Invite {
            process,
            name,
            role,
            ttl,
        } => (
            "POST",
            format!("/api/processes/{process}/members"),
            Some(json!({ "name": name, "role": role, "ttl": ttl })),
        ),
        Op::Phase { process, to } => (
            "POST",
            format!("/api/processes/{process}/phase"),
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
    Ok(match op {
        Op::Create { title } => json!({ "process": f.create_process(&title).await? }),
        Op::Show { process } => serde_json::to_value(f.summary(&ProcessId(process))?)?,
        Op::Invite {
            process,
            name,
            role,
            ttl,
        } => {
            let role = parse_role(&role).map_err(anyhow::Error::msg)?;
            let ttl = parse_ttl(&ttl).unwrap_or(DEFAULT_TTL);
            serde_json::to_value(
                f.add_member(&ProcessId(process), None, &name, role, ttl, false)
                    .await?,
            )?
        }
        Op::Phase { process, to } => {
            let phase = klad_core::Phase::parse(to.trim()).ok_or_else(|| {
                anyhow::anyhow!("{to:?} is not a phase; use drafting, consultation or final.")
            })?;
            serde_json::to_value(f.set_phase(&ProcessId(process), None, phase).await?)?
        }
    })
}
