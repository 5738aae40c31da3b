//! Hot reload: a new plugin file or config edit to its first sample, and memory over
//! many reloads.

use std::thread;
use std::time::{Duration, Instant};

use std::io::BufRead;

use anyhow::{bail, Context, Result};
use spud_tests::{plugin, SpudHost};

use crate::common::*;
use crate::Scale;

/// The intervals reload latency is measured at: a job restarted by a reload collects at
/// once, whatever its interval.
const INTERVALS: [&str; 3] = ["100ms", "5s", "60s"];

/// From the rename of a new `.so` to the new generation's first collected sample (`tick 1`
/// after its `version`), for a job at each of `INTERVALS`, with 50 other jobs ticking every
/// 100 ms.
pub fn reload_latency(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
    let n = if scale.trials == 1 { 20 } else { 100 };
    let versions = [
        std::fs::read(plugin("versioned"))?,
        std::fs::read(plugin("versioned-v2"))?,
    ];
    for interval in INTERVALS {
        println!("== reload latency, job every {interval}: rename of a new .so to its first collected sample, {n} reloads");
        let mut config =
            format!("[[job]]\nname = \"v\"\nplugin = \"versioned\"\ninterval = \"{interval}\"\n\n");
        for i in 0..50 {
            config.push_str(&format!("[[job]]\nname = \"other.{i}\"\nplugin = \"chaos\"\ninterval = \"100ms\"\noptions = {{ mode = \"ok\" }}\n\n"));
        }
        let host = SpudHost::start(&["chaos", "versioned"], &config);
        let addr = host.addr.context("embedded server")?;
        let plugins = host.dir.path().join("plugins");
        let mut sub = subscribe(addr, "v.*")?;
        let mut ms = Vec::new();
        for round in 0..n {
            let (bytes, version) = if round % 2 == 0 {
                (&versions[1], "2")
            } else {
                (&versions[0], "1")
            };
            let t = Instant::now();
            publish(&plugins, "versioned", bytes)?;
            wait_push(&mut sub, "v.version", version)?;
            wait_push(&mut sub, "v.tick", "1")?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            // Let the next rename be a separate change.
            thread::sleep(Duration::from_millis(25));
        }
        let (p50, p99) = latency_row(&mut ms);
        report.push(format!(
            "| reload, job every {interval}: rename of a new .so → the new generation's first collected sample ({n} reloads) | p50 {p50:.1} ms, p99 {p99:.1} ms | target p50 < 50 ms, p99 < 150 ms | p50 {:.2}×, p99 {:.2}× the target |",
            p50 / 50.0,
            p99 / 150.0
        ));
    }
    Ok(())
}

/// Sorts `ms`, prints its p50, p99 and max, and returns the first two.
fn latency_row(ms: &mut [f64]) -> (f64, f64) {
    ms.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99) = (percentile(ms, 0.5), percentile(ms, 0.99));
    println!(
        "  p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        ms[ms.len() - 1]
    );
    (p50, p99)
}

/// From the rename of an edited `gatherer.toml` to the first collected sample of the job it
/// adds and of the job whose options it changes (both every 60 s).
pub fn config_latency(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
    let n = if scale.trials == 1 { 20 } else { 100 };
    println!("== config-edit latency: {n} edits, each adding a job and changing another");
    let mut jobs = String::new();
    let host = SpudHost::start(&["versioned"], "");
    let addr = host.addr.context("embedded server")?;
    let path = host.dir.path().join("gatherer.toml");
    let mut sub = subscribe(addr, "cfg.*")?;
    let (mut added, mut changed) = (Vec::new(), Vec::new());
    for i in 0..n {
        jobs.push_str(&format!(
            "[[job]]\nname = \"cfg.{i}\"\nplugin = \"versioned\"\ninterval = \"60s\"\n\n"
        ));
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\n{jobs}\
             [[job]]\nname = \"cfg.changed\"\nplugin = \"versioned\"\ninterval = \"60s\"\noptions = {{ flavor = \"f{i}\" }}\n"
        );
        let tmp = host.dir.path().join(".gatherer.toml.tmp");
        std::fs::write(&tmp, text)?;
        let t = Instant::now();
        std::fs::rename(&tmp, &path)?;
        // Both first collects, in whichever order they come.
        let (mut add_ms, mut change_ms) = (None, None);
        let mut line = String::new();
        while add_ms.is_none() || change_ms.is_none() {
            line.clear();
            if sub.read_line(&mut line)? == 0 {
                bail!("subscription closed");
            }
            let elapsed = Some(t.elapsed().as_secs_f64() * 1000.0);
            if line.ends_with(&format!(" cfg.{i}.tick 1\r\n")) {
                add_ms = elapsed;
            } else if line.ends_with(" cfg.changed.tick 1\r\n") {
                change_ms = elapsed;
            }
        }
        added.extend(add_ms);
        // The first edit adds cfg.changed too; from the second on, it is changed.
        if i > 0 {
            changed.extend(change_ms);
        }
        thread::sleep(Duration::from_millis(30));
    }
    for (what, ms) in [
        ("an added job", &mut added),
        ("a changed job", &mut changed),
    ] {
        println!(" {what}:");
        let (p50, p99) = latency_row(ms);
        report.push(format!(
            "| config edit → first collected sample of {what}, every 60 s ({} edits) | p50 {p50:.1} ms, p99 {p99:.1} ms | target p50 < 50 ms, p99 < 150 ms | p50 {:.2}×, p99 {:.2}× the target |",
            ms.len(),
            p50 / 50.0,
            p99 / 150.0
        ));
    }
    Ok(())
}

/// RSS and memory maps after many reloads: abi_stable never unloads a library.
pub fn reload_growth(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
    let n = if scale.trials == 1 { 100 } else { 1000 };
    println!("== growth over {n} reloads");
    let versions = [
        std::fs::read(plugin("versioned"))?,
        std::fs::read(plugin("versioned-v2"))?,
    ];
    let host = SpudHost::start(
        &["versioned"],
        "[[job]]\nname = \"v\"\nplugin = \"versioned\"\ninterval = \"1s\"\n",
    );
    let addr = host.addr.context("embedded server")?;
    let plugins = host.dir.path().join("plugins");
    let pid = host.process.pid();
    let maps = || {
        std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .map(|m| m.lines().count())
            .unwrap_or(0)
    };
    let mut sub = subscribe(addr, "v.version")?;
    thread::sleep(Duration::from_millis(300));
    let (rss0, maps0) = (host.process.rss_kib(), maps());
    let started = Instant::now();
    for i in 0..n {
        if let Err(e) = swap_version(&plugins, &versions, i, &mut sub) {
            let log = host.process.log();
            eprintln!(
                "round {i}: {e}\nHOST LOG TAIL:\n{}",
                &log[log.len().saturating_sub(3000)..]
            );
            return Err(e);
        }
    }
    let (rss1, maps1) = (host.process.rss_kib(), maps());
    let per_rss = (rss1.saturating_sub(rss0)) as f64 / n as f64;
    let per_maps = (maps1.saturating_sub(maps0)) as f64 / n as f64;
    let limit: f64 = std::fs::read_to_string("/proc/sys/vm/max_map_count")?
        .trim()
        .parse()?;
    println!(
        "  {n} reloads in {:?}: RSS {rss0} → {rss1} KiB ({per_rss:.0} KiB each), maps {maps0} → {maps1} ({per_maps:.1} each); vm.max_map_count {limit} is reached after about {:.0} reloads",
        started.elapsed(),
        (limit - maps1 as f64) / per_maps.max(0.001) + n as f64
    );
    report.push(format!(
        "| growth per in-process reload ({n} reloads) | {per_rss:.0} KiB RSS, {per_maps:.1} maps | — (with isolation = \"process\", see the isolation-reloads section) | vm.max_map_count reached after ~{:.0} reloads |",
        (limit - maps1 as f64) / per_maps.max(0.001) + n as f64
    ));
    Ok(())
}
