//! spud-host: CPU and tick lateness of many jobs, and samples per second from plugins.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use spud_tests::{Client, SpudHost};

use crate::common::*;
use crate::Scale;

pub fn host_jobs(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
    let jobs = if scale.trials == 1 { 2_000 } else { 10_000 };
    println!("== spud-host: {jobs} no-op jobs at a 1 s interval");
    let mut config = String::from("[host]\nworkers = 4\n\n");
    for i in 0..jobs {
        std::fmt::Write::write_fmt(
            &mut config,
            format_args!("[[job]]\nname = \"noop.{i}\"\nplugin = \"chaos\"\ninterval = \"1s\"\noptions = {{ mode = \"noop\" }}\n\n"),
        )
        .unwrap();
    }
    let host = SpudHost::start(&["chaos"], &config);
    let pid = host.process.pid();
    // Let every job tick a few times, then measure over whole report windows.
    thread::sleep(Duration::from_secs(6));
    let (cpu0, t0) = (cpu_time(pid)?, Instant::now());
    let mut c = host.connect();
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for _ in 0..3 {
        thread::sleep(Duration::from_secs(5));
        p50s.push(
            newest(&mut c, "host.scheduler.lateness_p50_ms")
                .context("no lateness report")?
                .parse::<f64>()?,
        );
        p99s.push(
            newest(&mut c, "host.scheduler.lateness_p99_ms")
                .context("no lateness report")?
                .parse::<f64>()?,
        );
    }
    let share = (cpu_time(pid)? - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    let collects = newest(&mut c, "host.scheduler.collects").unwrap_or_default();
    println!(
        "  CPU {:.1}% of one core; lateness p50 {:?} ms, p99 {:?} ms (per 5 s window; {collects} collects in the last)",
        share * 100.0,
        p50s,
        p99s
    );
    report.push(format!(
        "| spud-host, {jobs} no-op jobs at 1 s: CPU | {:.1}% of a core | target < 10% | {:.2}× the target |",
        share * 100.0,
        share / 0.10
    ));
    report.push(format!(
        "| spud-host, {jobs} no-op jobs at 1 s: tick lateness (median of 5 s windows) | p50 {:.3} ms, p99 {:.3} ms | target p99 < 5 ms | {:.2}× the target |",
        median(p50s),
        median(p99s.clone()),
        median(p99s) / 5.0
    ));
    Ok(())
}

/// Samples per second from a plugin's `set` into the embedded store: one job alone, and
/// four at once.
pub fn host_emit(report: &mut Vec<String>) -> Result<()> {
    for jobs in [1usize, 4] {
        println!("== spud-host: {jobs} job(s) emitting as fast as they can");
        let mut config = String::new();
        for i in 0..jobs {
            config.push_str(&format!(
                "[[job]]\nname = \"flood.{i}\"\nplugin = \"chaos\"\noptions = {{ mode = \"flood\" }}\n\n"
            ));
        }
        let host = SpudHost::start(&["chaos"], &config);
        let mut c = host.connect();
        thread::sleep(Duration::from_secs(1));
        let read = |c: &mut Client| -> u64 {
            (0..jobs)
                .map(|i| {
                    newest(c, &format!("flood.{i}.seq"))
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                })
                .sum()
        };
        let (n0, t0) = (read(&mut c), Instant::now());
        thread::sleep(Duration::from_secs(3));
        let (n1, t1) = (read(&mut c), Instant::now());
        let rate = (n1 - n0) as f64 / (t1 - t0).as_secs_f64();
        println!("  {}", fmt_rate(rate));
        report.push(format!(
            "| samples from plugin `set` into the embedded store, {jobs} job(s) | {} | (no reference named) | |",
            fmt_rate(rate)
        ));
    }
    Ok(())
}
