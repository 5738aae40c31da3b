//! `spud-host`: the gatherer daemon. Runs in the foreground; see `conf/spud-host.service`.

// The modules, in layers, as folders: each uses only those below it (see README, "Inside
// host/src"; `tests/layers.rs` fails on a circle).
// Plain data, and gatherer.toml:
mod config;
mod diff;
mod model;
// Which plugin signatures the host trusts:
mod signature;
// Loading a plugin: ELF check, private copy, abi_stable, the version policy:
mod loading;
// Where samples go: the store, and every [[output]]:
mod sinks;
// Running jobs: one job, the scheduler, what a plugin sees, worker processes:
mod jobs;
// The gatherer's state and its operations:
mod gatherer;
// Reload and control:
mod reload;
// The wiring:
mod wiring;

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
    /// Prints one line per problem, then each plugin's signature status, and exits
    /// non-zero if there is any problem.
    CheckConfig,
    /// Print the gatherer.toml equivalent of the original gatherer's stats.conf on stdout,
    /// and on stderr what needs a person's attention.
    ImportConf {
        /// The original's config file.
        file: PathBuf,
    },
    /// A worker for one isolated job, started by the host itself (see docs/host.md).
    #[command(hide = true)]
    Worker,
}

fn main() {
    // The manual pages and completions, for the package (see spud-manual).
    spud_manual::serve(<Args as clap::CommandFactory>::command);
    let args = Args::parse();
    // check-config prints its findings; its log says only what went wrong, unless asked.
    match args.command {
        Some(Command::CheckConfig) => spud_server::init_logs_at("warn"),
        _ => spud_server::init_logs(),
    }
    match args.command {
        Some(Command::Worker) => std::process::exit(loading::worker::serve::main()),
        Some(Command::ImportConf { file }) => {
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(e) => {
                    eprintln!("spud-host: {}: {e}", file.display());
                    std::process::exit(1);
                }
            };
            match config::import::import(&text, &file.display().to_string()) {
                Ok(imported) => {
                    print!("{}", imported.toml);
                    for note in &imported.notes {
                        eprintln!("note: {note}");
                    }
                }
                Err(e) => {
                    eprintln!("spud-host: {e}");
                    std::process::exit(1);
                }
            }
        }
        Some(Command::CheckConfig) => {
            let report = reload::check::check(&args.conf);
            loading::library::remove_own_copies();
            for line in report.problems.iter().chain(&report.signatures) {
                println!("{line}");
            }
            if report.problems.is_empty() {
                println!("{}: OK", args.conf.display());
            } else {
                std::process::exit(1);
            }
        }
        None => {
            if let Err(e) = wiring::daemon::run(&args.conf) {
                eprintln!("spud-host: {e:#}");
                std::process::exit(1);
            }
        }
    }
}
