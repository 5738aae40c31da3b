//! Ingest, measured fairly: one client (this one) for SPUD and Redis alike, 4 connections,
//! windows of 100 requests, every reply read and checked: `set` against SPUD, `LPUSH` and
//! `SET` against Redis. Then the same with a write-ahead log on both sides (SPUD's
//! `--fsync`, Redis' `appendfsync`), and, labelled as such, SPUD's reply-less `qset` in
//! unbounded pipelines, every history verified, beside the original Perl server.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use spud_tests::{free_port, OriginalServer, Process, SpudServer};

pub const CONNS: usize = 4;
const WINDOW: usize = 100;

use crate::common::*;
use crate::Scale;

/// Runs `work(connection, start)` on `CONNS` threads; each calls `start.wait()` once it is
/// ready, and the clock runs from their common start until the last one is done. Seconds.
pub fn race<F>(work: F) -> Result<f64>
where
    F: Fn(usize, &Barrier) -> Result<()> + Send + Sync + 'static,
{
    let work = Arc::new(work);
    let start = Arc::new(Barrier::new(CONNS + 1));
    let workers: Vec<_> = (0..CONNS)
        .map(|c| {
            let (work, start) = (Arc::clone(&work), Arc::clone(&start));
            thread::spawn(move || work(c, &start))
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    for w in workers {
        w.join().expect("worker")?;
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// Four connections, each pipelining qsets over its own 250 of 1,000 keys; then every
/// key's whole history is read back and checked. Returns sets per second.
pub fn ingest_once(addr: SocketAddr, per_conn: usize, verify: bool) -> Result<f64> {
    const KEYS_PER_CONN: usize = 250;
    let payloads: Vec<Vec<u8>> = (0..CONNS)
        .map(|c| {
            let mut buf = Vec::with_capacity(per_conn * 28);
            for i in 0..per_conn {
                let key = i % KEYS_PER_CONN;
                writeln!(buf, "qset ingest.c{c}.k{key} {}\r", i / KEYS_PER_CONN).unwrap();
            }
            buf
        })
        .collect();
    let payloads = Arc::new(payloads);
    let seconds = race(move |c, start| {
        let mut stream = TcpStream::connect(addr)?;
        start.wait();
        for chunk in payloads[c].chunks(64 * 1024) {
            stream.write_all(chunk)?;
        }
        // The answer to this get comes after every qset before it was stored.
        stream.write_all(format!("get ingest.c{c}.k0\r\n").as_bytes())?;
        read_until_done(&mut stream)
    })?;
    let rate = (CONNS * per_conn) as f64 / seconds;

    if verify {
        let mut stream = TcpStream::connect(addr)?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let rounds = per_conn / KEYS_PER_CONN;
        for c in 0..CONNS {
            for key in 0..KEYS_PER_CONN {
                stream.write_all(format!("get ingest.c{c}.k{key}\r\n").as_bytes())?;
                let sent = rounds + usize::from(key < per_conn % KEYS_PER_CONN);
                let expect = sent.min(100);
                for n in 0..expect {
                    let mut line = String::new();
                    reader.read_line(&mut line)?;
                    let value: usize = line
                        .trim_end()
                        .rsplit(' ')
                        .next()
                        .and_then(|v| v.parse().ok())
                        .with_context(|| format!("bad history line {line:?}"))?;
                    if value != sent - 1 - n {
                        bail!(
                            "ingest.c{c}.k{key}: entry {} is {value}, expected {}",
                            n + 1,
                            sent - 1 - n
                        );
                    }
                }
                let mut line = String::new();
                reader.read_line(&mut line)?;
                if line != "OK done\r\n" {
                    bail!("ingest.c{c}.k{key}: expected the end of history, got {line:?}");
                }
            }
        }
    }
    Ok(rate)
}

/// What the windowed client sends, and the one-line reply it expects to each request.
#[derive(Clone, Copy)]
pub enum Speaks {
    /// `set KEY VALUE`, answered `OK `.
    Spud,
    /// A RESP command (`LPUSH` or `SET`) of KEY VALUE, answered `:N` or `+OK`.
    Redis(&'static str),
}

impl Speaks {
    fn request(self, out: &mut Vec<u8>, key: &str, value: &str) {
        match self {
            Speaks::Spud => {
                let _ = write!(out, "set {key} {value}\r\n");
            }
            Speaks::Redis(command) => {
                let _ = write!(
                    out,
                    "*3\r\n${}\r\n{command}\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
                    command.len(),
                    key.len(),
                    value.len()
                );
            }
        }
    }

    fn reply_ok(self, line: &str) -> bool {
        match self {
            Speaks::Spud => line == "OK \r\n",
            Speaks::Redis("SET") => line == "+OK\r\n",
            Speaks::Redis(_) => line.starts_with(':') && line.ends_with("\r\n"),
        }
    }

    fn name(self) -> String {
        match self {
            Speaks::Spud => "set".into(),
            Speaks::Redis(c) => c.into(),
        }
    }
}

/// `CONNS` connections, each sending `per_conn` requests over its own 250 keys in windows
/// of `WINDOW`, reading and checking every reply before the next window. Requests per
/// second.
fn windowed(addr: SocketAddr, speaks: Speaks, per_conn: usize) -> Result<f64> {
    let prefix = format!("fair.{}", speaks.name());
    windowed_over(addr, speaks, per_conn, 250, prefix)
}

/// `windowed` over `keys_per_conn` keys per connection, named `PREFIX.cC.kNNNNN`.
pub fn windowed_over(
    addr: SocketAddr,
    speaks: Speaks,
    per_conn: usize,
    keys_per_conn: usize,
    prefix: String,
) -> Result<f64> {
    let prefix = Arc::new(prefix);
    let seconds = race(move |c, start| {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let mut out = stream.try_clone()?;
        let mut replies = BufReader::new(stream);
        let mut window = Vec::with_capacity(WINDOW * 64);
        let mut line = String::new();
        start.wait();
        for first in (0..per_conn).step_by(WINDOW) {
            window.clear();
            let last = (first + WINDOW).min(per_conn);
            for i in first..last {
                let key = format!("{prefix}.c{c}.k{:05}", i % keys_per_conn);
                speaks.request(&mut window, &key, &(i / keys_per_conn).to_string());
            }
            out.write_all(&window)?;
            for _ in first..last {
                line.clear();
                replies.read_line(&mut line)?;
                if !speaks.reply_ok(&line) {
                    bail!("{} answered {line:?}", speaks.name());
                }
            }
        }
        Ok(())
    })?;
    Ok((CONNS * per_conn) as f64 / seconds)
}

/// Debian's redis-server on a port of its own; `aof` is None for no persistence, or an
/// `appendfsync` policy with `appendonly yes` in `dir`.
fn redis(aof: Option<&str>, dir: &std::path::Path) -> Result<(Process, SocketAddr)> {
    let addr = free_port();
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &addr.port().to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--dir"])
        .arg(dir);
    match aof {
        None => cmd.args(["--appendonly", "no"]),
        Some(policy) => cmd.args(["--appendonly", "yes", "--appendfsync", policy]),
    };
    let process =
        Process::start_listening(cmd, addr, Duration::from_secs(20)).map_err(anyhow::Error::msg)?;
    Ok((process, addr))
}

/// Medians of `trials` rounds, the contenders taking turns within each round.
fn interleaved(
    trials: usize,
    contenders: &[(SocketAddr, Speaks)],
    per_conn: usize,
) -> Result<Vec<f64>> {
    let mut rates = vec![Vec::new(); contenders.len()];
    for _ in 0..trials {
        for (n, (addr, speaks)) in contenders.iter().enumerate() {
            rates[n].push(windowed(*addr, *speaks, per_conn)?);
        }
    }
    Ok(rates.into_iter().map(median).collect())
}

pub fn ingest(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let per_conn = scale.ingest_per_conn / 4;
    println!("== ingest, one client for both: {CONNS} connections, windows of {WINDOW}, every reply checked");
    let server = SpudServer::start(&[]);
    let (_redis, redis_addr) = redis(None, dir.path())?;
    let [spud, lpush, set] = interleaved(
        scale.trials,
        &[
            (server.addr, Speaks::Spud),
            (redis_addr, Speaks::Redis("LPUSH")),
            (redis_addr, Speaks::Redis("SET")),
        ],
        per_conn,
    )?[..] else {
        unreachable!("three contenders")
    };
    println!(
        "  spud set {}, redis LPUSH {}, redis SET {}",
        fmt_rate(spud),
        fmt_rate(lpush),
        fmt_rate(set)
    );
    report.push(format!(
        "| ingest, same client: set, {CONNS} conns, windows of {WINDOW}, replies checked (median of {}) | {} | redis LPUSH {} (SET {}) | {:.2}× LPUSH, {:.2}× SET |",
        scale.trials,
        fmt_rate(spud),
        fmt_rate(lpush),
        fmt_rate(set),
        spud / lpush,
        spud / set
    ));
    drop(server);

    wal(scale, dir.path(), report)?;

    println!("== qset ingest (no replies): 4 connections pipelining over 1,000 keys, verified");
    let server = SpudServer::start(&[]);
    let mut ours = Vec::new();
    for t in 0..scale.trials {
        let r = ingest_once(server.addr, scale.ingest_per_conn, true)?;
        println!(
            "  trial {t}: {} (all 1,000 histories verified)",
            fmt_rate(r)
        );
        ours.push(r);
    }
    let ours = median(ours);
    drop(server);
    report.push(format!(
        "| qset ingest, no replies, unbounded pipelines, verified (median of {}); not comparable with Redis | {} | — | |",
        scale.trials,
        fmt_rate(ours)
    ));

    match OriginalServer::start() {
        Ok(original) => {
            let per_conn = scale.ingest_per_conn / 10;
            let mut rates = Vec::new();
            for _ in 0..scale.trials.min(3) {
                rates.push(ingest_once(original.addr, per_conn, true)?);
            }
            let perl = median(rates);
            println!("  original Perl server: {}", fmt_rate(perl));
            report.push(format!(
                "| qset ingest, same client | {} | original Perl server: {} | {:.1}× |",
                fmt_rate(ours),
                fmt_rate(perl),
                ours / perl
            ));
        }
        Err(e) => report.push(format!(
            "| qset ingest, same client | {} | original: not measured ({e}) | |",
            fmt_rate(ours)
        )),
    }
    Ok(())
}

/// Ingest with a write-ahead log under each fsync policy, beside Redis' append-only file
/// with the same `appendfsync` and SPUD without a log, same client, on the same disk.
fn wal(scale: &Scale, dir: &std::path::Path, report: &mut Vec<String>) -> Result<()> {
    let no_log = SpudServer::start(&[]);
    for policy in ["no", "everysec", "always"] {
        // Runs long enough to hold a few of `everysec`'s fsyncs; with `always` an fsync per
        // window of every connection, so far fewer requests make a run as long.
        let per_conn = if policy == "always" {
            scale.ingest_per_conn / 100
        } else {
            scale.ingest_per_conn
        };
        println!(
            "== ingest with a write-ahead log, fsync {policy}: {per_conn} sets per connection"
        );
        let ours_dir = tempfile::tempdir_in(dir)?;
        let state = ours_dir.path().join("state");
        let server = SpudServer::start(&[
            "--state",
            state.to_str().context("path")?,
            "--fsync",
            policy,
        ]);
        let theirs_dir = tempfile::tempdir_in(dir)?;
        let (_redis, redis_addr) = redis(Some(policy), theirs_dir.path())?;
        let [plain, spud, lpush] = interleaved(
            scale.trials,
            &[
                (no_log.addr, Speaks::Spud),
                (server.addr, Speaks::Spud),
                (redis_addr, Speaks::Redis("LPUSH")),
            ],
            per_conn,
        )?[..] else {
            unreachable!("three contenders")
        };
        println!(
            "  spud set {} (no log: {}), redis LPUSH (appendonly, appendfsync {policy}) {}",
            fmt_rate(spud),
            fmt_rate(plain),
            fmt_rate(lpush)
        );
        let target = if policy == "everysec" {
            format!(
                "; {:.2}× SPUD without a log ({}), target ≥ 0.80×",
                spud / plain,
                fmt_rate(plain)
            )
        } else {
            String::new()
        };
        report.push(format!(
            "| ingest, write-ahead log, fsync {policy}, same client (median of {}) | {} | redis LPUSH, appendonly yes, appendfsync {policy}: {} | {:.2}×{target} |",
            scale.trials,
            fmt_rate(spud),
            fmt_rate(lpush),
            spud / lpush
        ));
    }
    Ok(())
}
