//! `spud-host`: the gatherer daemon. Runs in the foreground; see `conf/spud-host.service`.

// The modules, in layers: each uses only those above it (see README, "Inside host/src").
// Plain data:
mod diff;
mod model;
// The parts:
mod config;
mod elf;
mod isolation;
mod job;
mod job_host;
mod library;
mod loader;
mod outputs;
mod plugin_side;
mod plugins;
mod safety;
mod scheduler;
mod sink;
mod watch;
// The gatherer's state and its operations:
mod gatherer;
mod helpers;
mod report;
mod state;
mod views;
// Reload and control:
mod check;
mod control;
mod reload;
// The wiring:
mod daemon;
mod store;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The SPUD gatherer: loads collector plugins (.so) and runs their jobs, pushing samples
/// into its embedded stat server or a remote one.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        default_value = "conf/gatherer.toml",
        value_name = "FILE"
    )]
    conf: PathBuf,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check the configuration: every plugin loads and every job's options are accepted.
    /// Prints one line per problem and exits non-zero if there is any.
    CheckConfig,
    /// A worker for one isolated job, started by the host itself (see docs/host.md).
    #[command(hide = true)]
    Worker,
}

fn main() {
    let args = Args::parse();
    spud_server::init_logs();
    match args.command {
        Some(Command::Worker) => std::process::exit(isolation::worker::main()),
        Some(Command::CheckConfig) => {
            let problems = check::check(&args.conf);
            library::remove_own_copies();
            for p in &problems {
                println!("{p}");
            }
            if problems.is_empty() {
                println!("{}: OK", args.conf.display());
            } else {
                std::process::exit(1);
            }
        }
        None => {
            if let Err(e) = daemon::run(&args.conf) {
                eprintln!("spud-host: {e:#}");
                std::process::exit(1);
            }
        }
    }
}
