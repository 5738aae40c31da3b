//! `spud-bench`: the stat server's figures, each beside its reference, measured in one run.
//!
//! `cargo run --release -p spud-bench [-- --quick] [ingest|fanout|latency|durability|memory|new-keys|host|reload|reload-growth|http|isolation|isolation-reloads|alerts|munin|range|archive|dashboard|statsd|graphite|influx|collectd|fleet|footprint|signing]`. Starts the release `spud-server`,
//! Debian's `redis-server` (spoken to by this program's own client) and the original Perl server from the
//! seed; a reference that cannot run here is reported as missing, not guessed.
//! Every throughput figure is the median of several trials; the machine is shared.

mod alerts;
mod archive;
mod common;
mod dashboard;
mod durability;
mod fanout;
mod fleet;
mod footprint;
mod host;
mod http;
mod ingest;
mod isolation;
mod latency;
mod memory;
mod munin;
mod new_keys;
mod range;
mod receivers;
mod reload;
mod signing;

use anyhow::Result;

pub struct Scale {
    trials: usize,
    /// qsets per connection in the ingest run.
    ingest_per_conn: usize,
    fanout_sets: usize,
    memory_keys: usize,
    new_keys: usize,
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick {
        Scale {
            trials: 1,
            ingest_per_conn: 200_000,
            fanout_sets: 50_000,
            memory_keys: 10_000,
            new_keys: 100_000,
        }
    } else {
        Scale {
            trials: 5,
            ingest_per_conn: 1_000_000,
            fanout_sets: 300_000,
            memory_keys: 100_000,
            new_keys: 1_000_000,
        }
    };
    // Sections named on the command line run alone; none named, all run.
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| named.is_empty() || named.iter().any(|n| n == name);
    let mut report = Vec::new();
    if wanted("ingest") {
        ingest::ingest(&scale, &mut report)?;
    }
    if wanted("fanout") {
        fanout::fanout(&scale, &mut report)?;
    }
    if wanted("latency") {
        latency::latency(&mut report)?;
        latency::latency_under_work(&mut report)?;
    }
    if wanted("durability") {
        durability::durability(quick, &mut report)?;
    }
    if wanted("memory") {
        memory::memory(&scale, &mut report)?;
    }
    if wanted("new-keys") {
        new_keys::new_keys(&scale, &mut report)?;
    }
    if wanted("host") {
        host::host_jobs(&scale, &mut report)?;
        host::host_emit(&mut report)?;
    }
    if wanted("range") {
        range::range(&mut report)?;
    }
    if wanted("archive") {
        archive::archive(quick, &mut report)?;
    }
    if wanted("dashboard") {
        dashboard::dashboard(&mut report)?;
    }
    if wanted("http") {
        http::http(&scale, &mut report)?;
    }
    if wanted("munin") {
        munin::munin(&mut report)?;
    }
    if wanted("alerts") {
        alerts::alerts(&scale, &mut report)?;
    }
    if wanted("statsd") {
        receivers::statsd(&mut report)?;
    }
    if wanted("collectd") {
        receivers::collectd(&mut report)?;
    }
    if wanted("graphite") {
        receivers::graphite(&scale, &mut report)?;
    }
    if wanted("influx") {
        receivers::influx(&scale, &mut report)?;
    }
    if wanted("isolation") {
        isolation::collects(quick, &mut report)?;
    }
    if wanted("isolation-reloads") {
        isolation::reloads(quick, &mut report)?;
    }
    if wanted("reload-growth") {
        reload::reload_growth(&scale, &mut report)?;
    }
    if wanted("footprint") {
        footprint::footprint(quick, &mut report)?;
    }
    if wanted("signing") {
        signing::signing(quick, &mut report)?;
    }
    if wanted("fleet") {
        fleet::fleet(&scale, &mut report)?;
    }
    if wanted("reload") {
        reload::reload_latency(&scale, &mut report)?;
        reload::config_latency(&scale, &mut report)?;
        reload::reload_growth(&scale, &mut report)?;
    }

    println!("\n| figure | spud-server | reference | ratio |");
    println!("|---|---|---|---|");
    for row in &report {
        println!("{row}");
    }
    Ok(())
}
