//! 100 munin plugins in one directory every 10 s: wall time and CPU per round for SPUD's
//! munin collector (plugins run concurrently, config read once) beside munin-node's own
//! `munin-run` of the same plugins, one after another, in the same run.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use spud_tests::SpudHost;

use crate::common::*;

/// Plugins of Debian's munin-plugins-core that need nothing but /proc and /sys.
const CORE: &[&str] = &[
    "load",
    "cpu",
    "memory",
    "df",
    "df_inode",
    "entropy",
    "forks",
    "interrupts",
    "irqstats",
    "open_files",
    "open_inodes",
    "proc_pri",
    "processes",
    "swap",
    "threads",
    "uptime",
    "users",
    "vmstat",
    "netstat",
    "diskstats",
];
const PLUGINS: usize = 100;
const ROUNDS: usize = 3;

pub fn munin(report: &mut Vec<String>) -> Result<()> {
    println!("== {PLUGINS} munin plugins in one directory, every 10 s");
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins)?;
    for i in 0..PLUGINS {
        let core = CORE[i % CORE.len()];
        let target = std::path::Path::new("/usr/share/munin/plugins").join(core);
        if !target.exists() {
            bail!(
                "{} is missing: scripts/setup-test-deps installs munin-plugins-core",
                target.display()
            );
        }
        std::os::unix::fs::symlink(target, plugins.join(format!("p{i:03}_{core}")))?;
    }
    let host = SpudHost::start(
        &["munin"],
        &format!(
            "[[job]]\nname = \"m\"\nplugin = \"munin\"\ninterval = \"10s\"\ntimeout = \"9s\"\noptions = {{ dir = \"{}\", conf = \"/etc/munin/plugin-conf.d\" }}\n",
            plugins.display()
        ),
    );
    let pid = host.process.pid().to_string();
    let mut c = host.connect();
    // The first round also reads every config; measure the rounds after it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.history("m.round_ms").len() < 2 {
        if Instant::now() > deadline {
            bail!(
                "the munin job never finished two rounds:\n{}",
                host.process.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let cpu0 = cpu_time_with_children(&pid)?;
    let before = c.history("m.round_ms").len();
    while c.history("m.round_ms").len() < before + ROUNDS {
        std::thread::sleep(Duration::from_millis(200));
    }
    let ours_cpu = (cpu_time_with_children(&pid)? - cpu0).as_secs_f64() / ROUNDS as f64;
    let walls: Vec<f64> = c
        .history("m.round_ms")
        .iter()
        .take(ROUNDS)
        .filter_map(|l| l.splitn(4, ' ').nth(3)?.parse().ok())
        .collect();
    let ours_wall = median(walls.clone()) / 1000.0;
    let stored = newest(&mut c, "m.plugins").unwrap_or_default();
    let failed = newest(&mut c, "m.failed").unwrap_or_default();
    println!("  spud munin collector: wall {walls:?} ms per round, CPU {ours_cpu:.2} s per round ({stored} plugins, {failed} failed)");
    drop(host);

    let mut names: Vec<String> = std::fs::read_dir(&plugins)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    let cpu0 = cpu_time_with_children("self")?;
    let mut walls = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for name in &names {
            let out = Command::new("munin-run")
                .args([
                    "--servicedir",
                    plugins.to_str().context("path")?,
                    "--sconfdir",
                    "/etc/munin/plugin-conf.d",
                    name,
                ])
                .output()?;
            if !out.status.success() {
                bail!("munin-run {name}: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        walls.push(started.elapsed().as_secs_f64());
    }
    let theirs_cpu = (cpu_time_with_children("self")? - cpu0).as_secs_f64() / ROUNDS as f64;
    let theirs_wall = median(walls.clone());
    println!("  munin-run, one after another: wall {walls:.2?} s per round, CPU {theirs_cpu:.2} s per round");
    report.push(format!(
        "| {PLUGINS} munin plugins, one round: wall (median of {ROUNDS}) | {:.2} s | munin-run of the same plugins: {:.2} s | {:.2}× |",
        ours_wall,
        theirs_wall,
        ours_wall / theirs_wall
    ));
    report.push(format!(
        "| {PLUGINS} munin plugins, one round: CPU (host and plugins) | {:.2} s | munin-run: {:.2} s | {:.2}× |",
        ours_cpu,
        theirs_cpu,
        ours_cpu / theirs_cpu
    ));
    Ok(())
}
