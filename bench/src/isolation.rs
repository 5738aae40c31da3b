//! Process isolation's costs: the time of one collect in a worker against in-process, the
//! CPU it takes (host and workers together), and memory over many reloads with host-wide
//! isolation against the in-process growth per reload.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use spud_tests::{plugin, SpudHost};

use crate::common::{cpu_time, median, newest, subscribe, swap_version};

const JOBS: usize = 50;
const INTERVAL_MS: u64 = 100;

/// (median collect time in ms, CPU per collect in µs) for `JOBS` `ok` jobs.
fn collect_cost(isolation: &str) -> Result<(f64, f64)> {
    let mut config = format!("[host]\nisolation = \"{isolation}\"\n\n");
    for i in 0..JOBS {
        config.push_str(&format!(
            "[[job]]\nname = \"c{i}\"\nplugin = \"chaos\"\ninterval = \"{INTERVAL_MS}ms\"\noptions = {{ mode = \"ok\" }}\n\n"
        ));
    }
    let host = SpudHost::start(&["chaos"], &config);
    let mut c = host.connect();
    thread::sleep(Duration::from_secs(6));
    let workers: Vec<u32> = if isolation == "process" {
        let jobs = spud_tests::http::get_json(&format!("http://{}/api/jobs", host.http.unwrap()));
        jobs.as_array()
            .context("jobs")?
            .iter()
            .filter_map(|j| j["worker_pid"].as_u64().map(|p| p as u32))
            .collect()
    } else {
        Vec::new()
    };
    let pids: Vec<u32> = std::iter::once(host.process.pid()).chain(workers).collect();
    let cpu = |pids: &[u32]| -> Result<Duration> {
        pids.iter().map(|p| cpu_time(*p)).sum::<Result<Duration>>()
    };
    let (cpu0, t0) = (cpu(&pids)?, Instant::now());
    let mut times = Vec::new();
    for _ in 0..3 {
        thread::sleep(Duration::from_secs(5));
        for i in 0..JOBS {
            if let Some(ms) = newest(&mut c, &format!("host.job.c{i}.collect_ms")) {
                times.push(ms.parse::<f64>()?);
            }
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let collects = JOBS as f64 * elapsed * 1000.0 / INTERVAL_MS as f64;
    let per_collect_us = (cpu(&pids)? - cpu0).as_secs_f64() * 1e6 / collects;
    Ok((median(times), per_collect_us))
}

/// Host RSS (KiB) and host + live workers' RSS, after `n` reloads.
fn reload_memory(n: usize, isolation: &str) -> Result<(u64, u64, u64, u64, Duration)> {
    let versions = [
        std::fs::read(plugin("versioned"))?,
        std::fs::read(plugin("versioned-v2"))?,
    ];
    let host = SpudHost::start(
        &["versioned"],
        &format!(
            "[host]\nisolation = \"{isolation}\"\n\n[[job]]\nname = \"v\"\nplugin = \"versioned\"\ninterval = \"1s\"\n"
        ),
    );
    let addr = host.addr.context("embedded server")?;
    let plugins = host.dir.path().join("plugins");
    let mut sub = subscribe(addr, "v.version")?;
    // Warm up: the first few reloads allocate what later ones reuse.
    for i in 0..10 {
        swap_version(&plugins, &versions, i, &mut sub)?;
    }
    thread::sleep(Duration::from_millis(300));
    let rss0 = host.process.rss_kib();
    let started = Instant::now();
    for i in 10..10 + n {
        swap_version(&plugins, &versions, i, &mut sub)?;
        if (i - 10 + 1) % 1000 == 0 {
            println!(
                "  {isolation}: {} reloads, host RSS {} KiB",
                i - 9,
                host.process.rss_kib()
            );
        }
    }
    let took = started.elapsed();
    thread::sleep(Duration::from_millis(1500)); // retired workers finish leaving
    let rss1 = host.process.rss_kib();
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", host.process.pid()))?
        .lines()
        .count() as u64;
    // Workers are children of whichever host thread started them.
    let mut children = 0;
    for task in std::fs::read_dir(format!("/proc/{}/task", host.process.pid()))? {
        let children_file = task?.path().join("children");
        children += std::fs::read_to_string(children_file)
            .unwrap_or_default()
            .split_whitespace()
            .count() as u64;
    }
    Ok((rss0, rss1, maps, children, took))
}

/// The cost of a collect in a worker against in-process.
pub fn collects(quick: bool, report: &mut Vec<String>) -> Result<()> {
    println!("== process isolation: {JOBS} `ok` jobs at {INTERVAL_MS} ms, in-process and isolated (interleaved, 3 rounds)");
    let (mut inproc, mut isolated) = (Vec::new(), Vec::new());
    for _ in 0..if quick { 1 } else { 3 } {
        inproc.push(collect_cost("none")?);
        isolated.push(collect_cost("process")?);
    }
    println!("  in-process (collect ms, CPU µs/collect): {inproc:?}");
    println!("  isolated   (collect ms, CPU µs/collect): {isolated:?}");
    let (in_ms, in_cpu) = (
        median(inproc.iter().map(|x| x.0).collect()),
        median(inproc.iter().map(|x| x.1).collect()),
    );
    let (iso_ms, iso_cpu) = (
        median(isolated.iter().map(|x| x.0).collect()),
        median(isolated.iter().map(|x| x.1).collect()),
    );
    report.push(format!(
        "| one collect (chaos `ok`: 3 samples), isolated | {:.0} µs | in-process: {:.0} µs | {:.1}× |",
        iso_ms * 1000.0,
        in_ms * 1000.0,
        iso_ms / in_ms.max(1e-9)
    ));
    report.push(format!(
        "| CPU per collect, host and workers together, isolated | {iso_cpu:.0} µs | in-process: {in_cpu:.0} µs | {:.1}× |",
        iso_cpu / in_cpu.max(1e-9)
    ));
    Ok(())
}

/// Host memory over many reloads: host-wide isolation against in-process.
pub fn reloads(quick: bool, report: &mut Vec<String>) -> Result<()> {
    let (n_iso, n_in) = if quick { (200, 100) } else { (10_000, 1_000) };
    println!("== memory over reloads: {n_iso} with host-wide isolation, {n_in} in-process");
    let (a0, a1, amaps, achildren, atook) = reload_memory(n_iso, "process")?;
    println!(
        "  isolated: {n_iso} reloads in {atook:?}: host RSS {a0} → {a1} KiB, {amaps} maps, {achildren} workers left"
    );
    let (b0, b1, bmaps, _, btook) = reload_memory(n_in, "none")?;
    println!("  in-process: {n_in} reloads in {btook:?}: host RSS {b0} → {b1} KiB, {bmaps} maps");
    let per_iso = a1 as f64 - a0 as f64;
    let per_in = (b1 as f64 - b0 as f64) / n_in as f64;
    report.push(format!(
        "| host RSS growth over {n_iso} reloads, host-wide isolation | {:+.0} KiB in all ({:+.3} KiB per reload), {achildren} worker(s) left | in-process: {per_in:.0} KiB per reload ({n_in} reloads) | 1/{:.0} per reload |",
        per_iso,
        per_iso / n_iso as f64,
        per_in / (per_iso / n_iso as f64).max(1e-9)
    ));
    Ok(())
}
