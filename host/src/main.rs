//! `spud-host`: the gatherer daemon. Runs in the foreground; see `conf/spud-host.service`.

mod config;
mod control;
mod daemon;
mod diff;
mod elf;
mod isolation;
mod job;
mod loader;
mod output;
mod plugin_side;
mod plugins;
mod reload;
mod safety;
mod scheduler;
mod sink;
mod watch;

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
            let problems = daemon::check(&args.conf);
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
