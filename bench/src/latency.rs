//! Set-to-push latency at a steady 10k sets/s; set latency while the store fills and while
//! it writes snapshots.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use spud_tests::SpudServer;

use crate::common::*;

pub fn latency(report: &mut Vec<String>) -> Result<()> {
    println!("== latency from set to push, steady 10k sets/s, 10 subscribers");
    let server = SpudServer::start(&[]);
    let subs = subscribers(server.addr, 10, "lat.*")?;
    let epoch = Instant::now();
    let duration = Duration::from_secs(5);
    let per_ms = 10;
    let total = duration.as_millis() as usize * per_ms;
    let readers: Vec<_> = subs
        .into_iter()
        .map(|s| {
            thread::spawn(move || -> Result<Vec<u64>> {
                let mut reader = BufReader::new(s);
                let mut lat = Vec::with_capacity(total);
                let mut line = String::new();
                while lat.len() < total {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 {
                        bail!("subscriber closed");
                    }
                    let sent: u64 = line
                        .trim_end()
                        .rsplit(' ')
                        .next()
                        .and_then(|v| v.parse().ok())
                        .context("value")?;
                    lat.push(epoch.elapsed().as_micros() as u64 - sent);
                }
                Ok(lat)
            })
        })
        .collect();
    let mut setter = TcpStream::connect(server.addr)?;
    setter.set_nodelay(true)?;
    let t0 = Instant::now();
    let mut batch = Vec::new();
    for ms in 0..duration.as_millis() as u64 {
        let due = t0 + Duration::from_millis(ms);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        batch.clear();
        for i in 0..per_ms {
            writeln!(batch, "qset lat.k{i} {}\r", epoch.elapsed().as_micros()).unwrap();
        }
        setter.write_all(&batch)?;
    }
    let mut all = Vec::new();
    for r in readers {
        all.extend(r.join().expect("reader")?);
    }
    all.sort_unstable();
    let p = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)] as f64 / 1000.0;
    println!(
        "  {} pushes: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        all.len(),
        p(0.5),
        p(0.99),
        p(1.0)
    );
    report.push(format!(
        "| set→push latency at 10k sets/s, 10 subscribers | p50 {:.3} ms, p99 {:.3} ms | (no reference named) | |",
        p(0.5),
        p(0.99)
    ));
    Ok(())
}

/// Keys the fill stores, all new.
const FILL_KEYS: usize = 1_000_000;

/// Round trips of `set` (to its `OK`), one a millisecond on a connection of its own, until
/// `done` says stop; in milliseconds.
fn probe(addr: std::net::SocketAddr, mut done: impl FnMut() -> bool) -> Result<Vec<f64>> {
    let mut conn = TcpStream::connect(addr)?;
    conn.set_nodelay(true)?;
    let mut reply = BufReader::new(conn.try_clone()?);
    let (mut out, mut line) = (Vec::new(), String::new());
    let t0 = Instant::now();
    for n in 0u64.. {
        if done() {
            break;
        }
        if let Some(wait) = (t0 + Duration::from_millis(n)).checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let start = Instant::now();
        write!(conn, "set lat.probe {n}\r\n")?;
        line.clear();
        reply.read_line(&mut line)?;
        if !line.starts_with("OK") {
            bail!("set answered {line:?}");
        }
        out.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    out.sort_unstable_by(f64::total_cmp);
    Ok(out)
}

/// Stores FILL_KEYS new keys as fast as one pipelining connection goes (`qset`, checked
/// by a `get` at the end); returns how long it took.
fn fill(addr: std::net::SocketAddr) -> Result<Duration> {
    let mut conn = TcpStream::connect(addr)?;
    let start = Instant::now();
    let mut batch = Vec::with_capacity(1 << 20);
    for first in (0..FILL_KEYS).step_by(20_000) {
        batch.clear();
        for i in first..(first + 20_000).min(FILL_KEYS) {
            writeln!(batch, "qset fill.k{i:07} {i}\r").unwrap();
        }
        conn.write_all(&batch)?;
    }
    write!(conn, "get fill.k{:07}\r\n", FILL_KEYS - 1)?;
    let mut reply = BufReader::new(conn);
    let mut line = String::new();
    reply.read_line(&mut line)?;
    if !line.contains(&(FILL_KEYS - 1).to_string()) {
        bail!("the fill's last key reads {line:?}");
    }
    Ok(start.elapsed())
}

/// `set` latency while the store works: beside a server doing nothing else, while a
/// million new keys fill it (shards grow and pack their blocks under their locks), and while
/// snapshots of those million keys are written (one a second).
pub fn latency_under_work(report: &mut Vec<String>) -> Result<()> {
    println!("== set latency (one a millisecond, to its OK) beside a quiet server, while 1,000,000 keys fill, while snapshots are written");
    let dir = tempfile::tempdir()?;
    let state = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let quiet = SpudServer::start(&["--state", &state("quiet")]);
    let until = Instant::now() + Duration::from_secs(5);
    let neither = probe(quiet.addr, || Instant::now() > until)?;
    drop(quiet);

    let filled = SpudServer::start(&["--state", &state("fill")]);
    let done = AtomicBool::new(false);
    let (took, during_fill) = thread::scope(|s| -> Result<_> {
        let probing = s.spawn(|| probe(filled.addr, || done.load(Ordering::Relaxed)));
        let took = fill(filled.addr);
        done.store(true, Ordering::Relaxed);
        let samples = probing.join().expect("probe")?;
        Ok((took?, samples))
    })?;
    drop(filled);

    let snapshotting = SpudServer::start(&["--state", &state("snap"), "--snapshot-every", "1"]);
    fill(snapshotting.addr)?;
    let snapshot = dir.path().join("snap");
    let inode = || {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&snapshot).map(|m| m.ino()).ok()
    };
    let (mut written, mut last) = (0, inode());
    let until = Instant::now() + Duration::from_secs(6);
    let during_snapshots = probe(snapshotting.addr, || {
        // A snapshot is written to a new file and renamed over the old one.
        let now = inode();
        if now != last {
            (written, last) = (written + 1, now);
        }
        Instant::now() > until
    })?;
    let size = std::fs::metadata(&snapshot).map_or(0, |m| m.len());
    let row = |what: &str, v: &[f64], beside: &str| {
        println!(
            "  {what}: {} sets, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            v.len(),
            percentile(v, 0.5),
            percentile(v, 0.99),
            percentile(v, 1.0)
        );
        format!(
            "| set latency {what} | p50 {:.3} ms, p99 {:.3} ms | {beside} | target p99 < 2 ms |",
            percentile(v, 0.5),
            percentile(v, 0.99),
        )
    };
    let quiet_row = format!(
        "a quiet server: p50 {:.3} ms, p99 {:.3} ms",
        percentile(&neither, 0.5),
        percentile(&neither, 0.99)
    );
    report.push(row(
        "on a quiet server (one a ms, to its OK)",
        &neither,
        "(the reference of the next two)",
    ));
    report.push(row(
        &format!(
            "while 1,000,000 new keys fill ({:.1} s, one pipelining connection)",
            took.as_secs_f64()
        ),
        &during_fill,
        &quiet_row,
    ));
    report.push(row(
        &format!(
            "while snapshots of 1,000,000 keys are written ({written} in 6 s, {:.0} MB each)",
            size as f64 / 1e6
        ),
        &during_snapshots,
        &quiet_row,
    ));
    Ok(())
}
