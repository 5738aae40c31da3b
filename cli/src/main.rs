//! `spud`: talk to a stat server from the command line, and the small tools of the original
//! around it.
//!
//! Exit codes: 0 success; 1 the server answered with an error, or the key is not there;
//! 2 a usage error; 69 the server could not be reached. `wrap` exits with its command's code.

mod client;
mod cmd;
mod out;

use clap::{Parser, Subcommand};
use spud_server::client::endpoint::Endpoint;

/// Talk to a SPUD stat server, and the tools around it.
#[derive(Parser, Debug)]
#[command(
    name = "spud",
    version,
    about,
    after_help = "Exit codes: 0 success, 1 the server answered with an error or the key is not there, 2 usage, 69 the server cannot be reached; `wrap` exits with its command's code."
)]
struct Args {
    /// The stat server (also SPUD_SERVER).
    #[arg(
        long,
        global = true,
        env = "SPUD_SERVER",
        default_value = "127.0.0.1:9107",
        value_name = "HOST:PORT"
    )]
    server: String,

    /// A file whose first line is the token to authenticate with (also SPUD_TOKEN_FILE),
    /// for a server with tokens. Never the token itself on the command line.
    #[arg(long, global = true, env = "SPUD_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<std::path::PathBuf>,

    /// Speak TLS to the server, trusting certificates this CA (PEM) signed (also
    /// SPUD_TLS_CA). For `replicate`, see its --from-tls-ca and --to-tls-ca.
    #[arg(long, global = true, env = "SPUD_TLS_CA", value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,

    /// A client certificate (PEM) for servers that want one (mutual TLS)…
    #[arg(long, global = true, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,

    /// …and its private key (PEM).
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// A key's history (newest first), or the newest value of every key matching a pattern
    /// (`.` is a dot, `*` any run of characters). With --since, the key over that span,
    /// beyond the samples in memory where the server archives: average, minimum and
    /// maximum per step.
    Get {
        /// A key, or a pattern.
        key: String,
        /// JSON instead of a table.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// The key over the last DURATION (`1h`, `1d`, `1w`), per step, oldest first.
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        since: Option<std::time::Duration>,
        /// The step of --since (default: about 720 steps).
        #[arg(long, requires = "since", value_parser = humantime::parse_duration, value_name = "DURATION")]
        step: Option<std::time::Duration>,
        /// CSV (time,avg,min,max) instead of a table, with --since.
        #[arg(long, requires = "since")]
        csv: bool,
    },
    /// Store a value.
    Set {
        /// The sample's time, in Unix seconds (default: when it arrives).
        #[arg(long, value_name = "UNIX_SECONDS")]
        time: Option<u64>,
        key: String,
        value: String,
    },
    /// Print every set of a key matching the patterns as it happens, until interrupted.
    Sub {
        #[arg(required = true)]
        patterns: Vec<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// How long the server has run, its subscriptions and keys.
    Uptime,
    /// Alerts that are firing or pending, with since when and their value.
    Alerts {
        /// Only alerts on keys matching this pattern.
        pattern: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Check alert rules, or test them against replayed series (no server needed).
    #[command(subcommand)]
    Rules(cmd::rules::RulesCommand),
    /// Every subscription on the server, with the client that made it.
    List,
    /// spud-host's jobs, with their state.
    Jobs,
    /// Pause a spud-host job (its ticks pass; its schedule is kept).
    Pause { job: String },
    /// Resume a paused spud-host job.
    Resume { job: String },
    /// Run one collect of a spud-host job now.
    Run { job: String },
    /// Make spud-host look at its config and every plugin again.
    Reload,
    /// Run a command and record it: KEY.status (started, then finished or failed), each line
    /// it prints as KEY.output, KEY.exit_code and KEY.duration. Exits with its exit code; if
    /// the server cannot be reached the command runs all the same.
    Wrap(cmd::wrap::WrapArgs),
    /// Copy every matching set from one server into another, with its original time, through
    /// restarts of either (the original replicator).
    Replicate(cmd::replicate::ReplicateArgs),
    /// A restricted login shell or ssh forced command: connects stdin and stdout to the
    /// server configured for the command named in $SPUD_COMMAND. Never runs a shell.
    Cmdshell(cmd::cmdshell::CmdshellArgs),
    /// Write every numeric set of matching keys into one RRD file per key (the original
    /// rrd-storage's layout), after the server's stored history; batched every --flush and
    /// at SIGINT/SIGTERM. Needs librrd (Debian's librrd8) at run time.
    Archive(cmd::archive::ArchiveArgs),
}

fn main() {
    // The manual pages and completions, for the package (see spud-manual).
    spud_manual::serve(<Args as clap::CommandFactory>::command);
    let args = Args::parse();
    let identity = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
    let server = match Endpoint::new(args.server)
        .token_file(args.token_file.as_deref())
        .and_then(|e| e.tls(args.tls_ca.as_deref(), identity))
    {
        Ok(server) => server,
        Err(e) => {
            eprintln!("spud: {e}");
            std::process::exit(2);
        }
    };
    let server = &server;
    let result = match args.command {
        Command::Get {
            key,
            json,
            since: Some(since),
            step,
            csv,
        } => {
            let format = match (json, csv) {
                (true, _) => cmd::range::Format::Json,
                (_, true) => cmd::range::Format::Csv,
                _ => cmd::range::Format::Table,
            };
            cmd::range::run(server, &key, since, step, format)
        }
        Command::Get { key, json, .. } => cmd::get::run(server, &key, json),
        Command::Set { time, key, value } => cmd::set::run(server, time, &key, &value),
        Command::Sub { patterns, json } => cmd::sub::run(server, &patterns, json),
        Command::Uptime => cmd::control::print(server, "uptime"),
        Command::Alerts { pattern, json } => cmd::alerts::run(server, pattern.as_deref(), json),
        Command::Rules(r) => Ok(cmd::rules::run(r)),
        Command::List => cmd::control::print(server, "listall"),
        Command::Jobs => cmd::control::print(server, "jobs"),
        Command::Pause { job } => cmd::control::print(server, &format!("pause {job}")),
        Command::Resume { job } => cmd::control::print(server, &format!("resume {job}")),
        Command::Run { job } => cmd::control::print(server, &format!("run {job}")),
        Command::Reload => cmd::control::print(server, "reload"),
        Command::Wrap(w) => Ok(cmd::wrap::run(server, w)),
        Command::Cmdshell(c) => Ok(cmd::cmdshell::run(c)),
        Command::Replicate(r) => Ok(cmd::replicate::run(r, identity)),
        Command::Archive(a) => Ok(cmd::archive::run(server, a)),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("spud: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
