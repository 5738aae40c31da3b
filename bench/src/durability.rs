//! The store on disk: the write-ahead log's size under sustained sets beside its bound, the
//! time from start to serving after kill -9 at 100,000 and 1,000,000 keys (100 samples each),
//! and set latency while a snapshot is written beside the same with none.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use spud_tests::SpudServer;

use crate::common::*;

const CONNS: usize = 4;

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Sets `samples` rounds of `keys` keys (`qset TIME dur.K VALUE`) over four pipelined
/// connections, and waits until the server has taken them all.
fn fill(addr: SocketAddr, keys: usize, rounds: std::ops::Range<u64>) -> Result<()> {
    let per = keys / CONNS;
    let workers: Vec<_> = (0..CONNS)
        .map(|c| {
            let rounds = rounds.clone();
            thread::spawn(move || -> Result<()> {
                let mut s = TcpStream::connect(addr)?;
                let mut batch = Vec::with_capacity(1 << 20);
                for round in rounds {
                    for k in c * per..(c + 1) * per {
                        write!(
                            batch,
                            "qset {} dur.{k} {}\r\n",
                            1_000_000 + round,
                            round * 7
                        )?;
                        if batch.len() > 1 << 20 {
                            s.write_all(&batch)?;
                            batch.clear();
                        }
                    }
                }
                batch.extend_from_slice(b"uptime\r\n");
                s.write_all(&batch)?;
                read_until_done(&mut s)
            })
        })
        .collect();
    for w in workers {
        w.join().expect("filler")?;
    }
    Ok(())
}

pub fn durability(quick: bool, report: &mut Vec<String>) -> Result<()> {
    log_size(quick, report)?;
    for keys in if quick {
        vec![100_000]
    } else {
        vec![100_000, 1_000_000]
    } {
        restart(keys, report)?;
    }
    snapshot_latency(if quick { 100_000 } else { 1_000_000 }, report)
}

/// Sustained pipelined sets for several snapshot intervals; the log's length sampled every
/// 20 ms beside the bound it had then.
fn log_size(quick: bool, report: &mut Vec<String>) -> Result<()> {
    println!("== write-ahead log under sustained sets (100,000 keys, 4 connections)");
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    let wal = dir.path().join("state.wal");
    let every = 5;
    let server = SpudServer::start(&[
        "--state",
        state.to_str().context("path")?,
        "--snapshot-every",
        &every.to_string(),
        "--no-http",
    ]);
    let addr = server.addr;
    let run = Duration::from_secs(if quick { 10 } else { 30 });
    let filler = thread::spawn(move || {
        let started = Instant::now();
        let mut round = 0;
        while started.elapsed() < run {
            fill(addr, 100_000, round..round + 5)?;
            round += 5;
        }
        anyhow::Ok(round * 100_000)
    });
    let (mut peak, mut peak_bound) = (0u64, 0u64);
    let mut within = 0u64;
    let mut samples = 0u64;
    while !filler.is_finished() {
        let bound = (2 * len(&state)).max(64 << 20);
        let log = len(&wal);
        samples += 1;
        within += u64::from(log <= bound);
        if log > peak {
            (peak, peak_bound) = (log, bound);
        }
        thread::sleep(Duration::from_millis(20));
    }
    let sets = filler.join().expect("filler")?;
    let rate = sets as f64 / run.as_secs_f64();
    let snapshots = server.process.log().matches("snapshot written").count();
    let early = server.process.log().matches("snapshot taken early").count();
    println!(
        "  {} sets at {} over {run:?}: log peak {:.1} MiB beside its bound {:.1} MiB; {:.1}% of samples within it; {snapshots} snapshots ({early} early)",
        sets,
        fmt_rate(rate),
        peak as f64 / 1048576.0,
        peak_bound as f64 / 1048576.0,
        100.0 * within as f64 / samples as f64
    );
    report.push(format!(
        "| write-ahead log peak, {} sets/s for {}s, snapshot every {every}s | {:.1} MiB | bound (target): {:.1} MiB | {:.2}× |",
        fmt_rate(rate),
        run.as_secs(),
        peak as f64 / 1048576.0,
        peak_bound as f64 / 1048576.0,
        peak as f64 / peak_bound as f64
    ));
    Ok(())
}

/// `keys` keys of 100 samples, a snapshot, 10 more rounds in the log, kill -9; then the
/// time from spawning the server to its "listening" line, median of three.
fn restart(keys: usize, report: &mut Vec<String>) -> Result<()> {
    println!("== restart after kill -9 at {keys} keys × 100 samples");
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    let state_s = state.to_str().context("path")?.to_string();
    let server = SpudServer::start(&["--state", &state_s, "--no-http"]);
    fill(server.addr, keys, 0..100)?;
    server.connect().send("shutdown\r\n");
    let mut server = server;
    ensure!(
        server.process.wait(Duration::from_secs(600)).is_some(),
        "no shutdown"
    );
    let server = SpudServer::start(&["--state", &state_s, "--no-http"]);
    fill(server.addr, keys, 100..110)?;
    server.process.signal("KILL");
    drop(server);
    let (snapshot, log) = (len(&state), len(&dir.path().join("state.wal")));
    let mut times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let server = SpudServer::start(&["--state", &state_s, "--no-http"]);
        times.push(started.elapsed().as_secs_f64());
        let mut c = server.connect();
        let newest = c.history(&format!("dur.{}", keys - 1));
        ensure!(
            newest.first().map(String::as_str) == Some(&format!("OK 1 {} {}", 1_000_109, 109 * 7)),
            "restored {newest:?}"
        );
        server.process.signal("KILL");
    }
    let t = median(times.clone());
    println!(
        "  snapshot {:.0} MiB, log {:.0} MiB: serving after {:?} s (median {t:.2} s)",
        snapshot as f64 / 1048576.0,
        log as f64 / 1048576.0,
        times
    );
    let target = if keys == 100_000 { "target: 2 s" } else { "" };
    report.push(format!(
        "| restart to serving after kill -9, {keys} keys × 100 samples + 10 rounds in the log | {t:.2} s | {target} | {} |",
        if keys == 100_000 {
            format!("{:.2}×", t / 2.0)
        } else {
            String::new()
        }
    ));
    Ok(())
}

/// Round trips of single `set`s at 1,000/s for 10 s, on a server holding `keys` keys: with
/// a snapshot every second (one is nearly always being written) and with none; the same
/// log policy both times.
fn snapshot_latency(keys: usize, report: &mut Vec<String>) -> Result<()> {
    println!("== set latency while snapshots are written, {keys} keys × 100 samples");
    let mut rows = Vec::new();
    for (label, every) in [("no snapshot", "3600"), ("a snapshot every second", "1")] {
        let dir = tempfile::tempdir()?;
        let state = dir.path().join("state");
        let server = SpudServer::start(&[
            "--state",
            state.to_str().context("path")?,
            "--snapshot-every",
            every,
            "--no-http",
        ]);
        fill(server.addr, keys, 0..100)?;
        let stream = TcpStream::connect(server.addr)?;
        stream.set_nodelay(true)?;
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream);
        let mut lat = Vec::new();
        let mut line = String::new();
        let started = Instant::now();
        for i in 0..10_000u64 {
            let due = started + Duration::from_millis(i);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            let t = Instant::now();
            write!(writer, "set dur.{} {i}\r\n", (i as usize * 7919) % keys)?;
            line.clear();
            reader.read_line(&mut line)?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let snapshots = server.process.log().matches("snapshot written").count();
        lat.sort_by(|a, b| a.total_cmp(b));
        let p = |q: f64| percentile(&lat, q);
        println!(
            "  {label}: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({snapshots} snapshots written)",
            p(0.5),
            p(0.99),
            p(1.0)
        );
        rows.push((p(0.5), p(0.99)));
    }
    let ((p50, p99), (s50, s99)) = (rows[0], rows[1]);
    report.push(format!(
        "| set round trip while snapshots are written, {keys} keys | p50 {s50:.3} ms, p99 {s99:.3} ms | no snapshot, same run: p50 {p50:.3} ms, p99 {p99:.3} ms | p99 {:.2}× |",
        s99 / p99
    ));
    Ok(())
}
