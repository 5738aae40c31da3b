//! The archive's CPU per sample: 100,000 keys set every 5 s, archived by the server itself
//! (`--archive`, straight into the files and through Debian's `rrdcached`), beside
//! `spud archive` (a client that subscribes and writes the same files), all batching a key's
//! samples for the same 30 s. The files are made first (a one-time cost, left out) in a
//! tmpfs, so the figures are the work of archiving, not of this machine's disk. Every process
//! that takes part is counted, from the first set until everything is written (the server
//! stopped, rrdcached flushed), less what the same server uses for the same sets without
//! archiving.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use spud_archive::{Archive, Place};
use spud_tests::rrdcached::Rrdcached;
use spud_tests::{release_binary, Process, SpudServer};

use crate::common::cpu_time;

const EVERY: u64 = 5;
/// How long a key's samples wait to be written together, on both sides.
const FLUSH: &str = "30s";

pub fn archive(quick: bool, report: &mut Vec<String>) -> Result<()> {
    let (keys, rounds): (usize, usize) = if quick { (10_000, 6) } else { (100_000, 12) };
    println!(
        "== archive: {keys} keys every {EVERY} s for {} s, CPU per archived sample",
        rounds as u64 * EVERY
    );
    let dir = tempfile::Builder::new()
        .prefix("spud-bench-archive-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())?;
    let names: Vec<String> = (0..keys)
        .map(|i| format!("fleet.h{:03}.m{i}", i % 500))
        .collect();
    make_files(dir.path(), &names)?;
    let place = dir.path().to_str().context("a UTF-8 path")?;

    let samples = (keys * rounds) as f64;
    let base = run(&names, rounds, &[], |_| Ok(Vec::new()))?;
    println!("  the server without an archive: {:.2} CPU-s", base.server);
    let direct = run(
        &names,
        rounds,
        &["--archive", place, "--archive-flush", FLUSH],
        |_| Ok(Vec::new()),
    )?;
    let rrdcached = Rrdcached::start(dir.path());
    let daemon = rrdcached.address();
    let cached = run(
        &names,
        rounds,
        &[
            "--archive",
            place,
            "--archive-flush",
            FLUSH,
            "--rrdcached",
            &daemon,
        ],
        |_| Ok(vec![Helper::Rrdcached(&rrdcached)]),
    )?;
    let client = run(&names, rounds, &[], |server| {
        let mut cmd = Command::new(release_binary("spud"));
        cmd.args([
            "--server",
            &server.addr.to_string(),
            "archive",
            "--dir",
            place,
        ])
        .args(["--flush", FLUSH, "--no-backfill"]);
        let (process, _) = Process::start(cmd, "archiving", Duration::from_secs(30));
        Ok(vec![Helper::Client(process)])
    })?;
    let per_sample = |r: &Run| (r.total() - base.server).max(0.0) / samples * 1e6;
    let reference = per_sample(&client);
    for (name, r) in [
        ("in the server, into the files", &direct),
        ("in the server, through rrdcached", &cached),
        ("spud archive (a client), into the files", &client),
    ] {
        let us = per_sample(r);
        println!(
            "  {name}: {:.2} CPU-s (server {:.2}, helper {:.2}) → {us:.2} µs a sample",
            r.total(),
            r.server,
            r.helper
        );
        report.push(format!(
            "| archive, {keys} keys every {EVERY} s, {name} | {us:.2} µs CPU a sample | spud archive: {reference:.2} µs | {:.2}× |",
            us / reference
        ));
    }
    Ok(())
}

/// What one way of archiving cost: the server's CPU and its helper's (rrdcached, the
/// client), in seconds.
struct Run {
    server: f64,
    helper: f64,
}

impl Run {
    fn total(&self) -> f64 {
        self.server + self.helper
    }
}

enum Helper<'a> {
    Rrdcached(&'a Rrdcached),
    Client(Process),
}

/// Starts a server with `args` and its helpers, sets every key every `EVERY` s for
/// `rounds` rounds, stops the server (which writes what waits), has the helpers finish,
/// and counts the CPU every process used.
fn run<'a>(
    names: &[String],
    rounds: usize,
    args: &[&str],
    helpers: impl FnOnce(&SpudServer) -> Result<Vec<Helper<'a>>>,
) -> Result<Run> {
    let mut server = SpudServer::start_binary(&release_binary("spud-server"), args);
    let mut helpers = helpers(&server)?;
    let helper_cpu = |helpers: &[Helper<'_>]| -> f64 {
        helpers
            .iter()
            .map(|h| match h {
                Helper::Rrdcached(r) => cpu_time(r.process.pid()),
                Helper::Client(p) => cpu_time(p.pid()),
            })
            .filter_map(Result::ok)
            .map(|d| d.as_secs_f64())
            .sum()
    };
    let helper_start = helper_cpu(&helpers);
    let mut c = server.connect();
    let start = Instant::now();
    for round in 0..rounds {
        let t = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let mut batch = String::with_capacity(names.len() * 32);
        for (i, key) in names.iter().enumerate() {
            batch += &format!("qset {t} {key} {}\r\n", (round * 7 + i) % 100);
        }
        c.send(&batch);
        c.ask("uptime", "OK done\r\n");
        let next = start + Duration::from_secs(EVERY * (round as u64 + 1));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    // The client writes what it holds at its stop; rrdcached when told to.
    let mut helper = 0.0;
    for h in helpers.iter_mut() {
        if let Helper::Client(p) = h {
            helper += stop_counting(p)?;
        }
    }
    let server_cpu = stop_counting(&mut server.process)?;
    for h in &helpers {
        if let Helper::Rrdcached(r) = h {
            flush_all(&r.socket)?;
            helper += cpu_time(r.process.pid())?.as_secs_f64();
        }
    }
    Ok(Run {
        server: server_cpu,
        helper: helper - helper_start,
    })
}

/// Stops `process` (SIGTERM: it finishes its work) and returns its CPU seconds, read
/// until it is gone.
fn stop_counting(process: &mut Process) -> Result<f64> {
    let pid = process.pid();
    process.signal("TERM");
    let mut last = cpu_time(pid)?.as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        match cpu_time(pid) {
            Ok(t) => last = t.as_secs_f64(),
            Err(_) => return Ok(last),
        }
        if std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z ")) {
            return Ok(last);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("process {pid} did not stop within 10 minutes")
}

/// Has rrdcached write everything it holds, and waits until it has.
fn flush_all(socket: &Path) -> Result<()> {
    let mut s = UnixStream::connect(socket)?;
    writeln!(s, "FLUSHALL")?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        writeln!(s, "STATS")?;
        let mut first = String::new();
        r.read_line(&mut first)?;
        let n: usize = first
            .split_whitespace()
            .next()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        let mut queue = 1;
        for _ in 0..n {
            let mut l = String::new();
            r.read_line(&mut l)?;
            if let Some(v) = l.strip_prefix("QueueLength: ") {
                queue = v.trim().parse().unwrap_or(1);
            }
        }
        if queue == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("rrdcached still has {queue} files to write");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every key's file, made before any variant runs (creating 100,000 files is a one-time
/// cost no variant should carry).
fn make_files(dir: &Path, names: &[String]) -> Result<()> {
    let started = Instant::now();
    let t = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() - 60;
    let mut archive = Archive::open(Place {
        dir: dir.to_path_buf(),
        rrdcached: None,
    })
    .map_err(anyhow::Error::msg)?;
    for name in names {
        archive.add(name.clone(), t, 0.0);
    }
    let figures = archive.flush(|_, _| {});
    println!(
        "  made {} files in {:.1} s",
        figures.created,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
