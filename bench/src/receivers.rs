//! What SPUD takes from other systems' senders, through the receiving plugins running in
//! `spud-host` with its embedded server:
//! - StatsD: an offered-rate ladder, the same datagrams to SPUD's `statsd` and to Etsy's
//!   statsd (npm); loss from each daemon's own count of metrics received, and the kernel's
//!   drops for its socket (`/proc/net/udp`). A daemon's rate is the highest step it takes
//!   with under 1% loss.
//! - Graphite plaintext and Influx line protocol: lines per second over 4 TCP connections
//!   (target 1M/s).
//! - collectd: values per second from packets a real collectd sent, captured and replayed.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use spud_tests::collectd::Collectd;
use spud_tests::etsy::EtsyStatsd;
use spud_tests::{free_port, SpudHost};

use crate::common::*;

/// The figure `host.job.<job>.<what>` as a number (0 before the first publish).
fn figure(host: &SpudHost, job: &str, what: &str) -> u64 {
    let mut c = host.connect();
    newest(&mut c, &format!("host.job.{job}.{what}"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits until `host.job.<job>.received` reaches `want` or stops moving; returns it and
/// when it got there.
fn settle(host: &SpudHost, job: &str, want: u64, within: Duration) -> (u64, Instant) {
    let deadline = Instant::now() + within;
    let (mut last, mut last_change) = (figure(host, job, "received"), Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = figure(host, job, "received");
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
        if now >= want
            || Instant::now() > deadline
            || last_change.elapsed() > Duration::from_secs(3)
        {
            return (now, last_change);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Graphite and Influx

const CONNS: usize = 4;

fn graphite_lines(conn: usize, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 40);
    for i in 0..n {
        let key = (conn * n + i) % 100_000;
        writeln!(
            out,
            "bench.host{}.metric{key} {}.{} {}",
            key % 100,
            i % 1000,
            i % 100,
            1_700_000_000 + i / 1000
        )
        .unwrap();
    }
    out
}

pub fn graphite(scale: &crate::Scale, report: &mut Vec<String>) -> Result<()> {
    let per_conn = scale.ingest_per_conn / 2;
    println!("== graphite plaintext: {CONNS} TCP connections × {per_conn} lines, 100,000 keys");
    let listen = free_port();
    let host = SpudHost::start(
        &["graphite"],
        &format!("[[job]]\nname = \"graphite\"\nplugin = \"graphite\"\ninterval = \"100ms\"\noptions = {{ listen = \"{listen}\", udp = false }}\n"),
    );
    let bodies: Vec<Vec<u8>> = (0..CONNS).map(|c| graphite_lines(c, per_conn)).collect();
    let mut rates = Vec::new();
    for trial in 0..scale.trials {
        let before = figure(&host, "graphite", "received");
        let want = before + (CONNS * per_conn) as u64;
        let start = Instant::now();
        std::thread::scope(|s| {
            for body in &bodies {
                s.spawn(move || -> Result<()> {
                    let mut conn = TcpStream::connect(listen)?;
                    conn.write_all(body)?;
                    Ok(())
                });
            }
        });
        let (got, at) = settle(&host, "graphite", want, Duration::from_secs(120));
        if got < want {
            bail!("graphite took {} of {} lines", got - before, want - before);
        }
        let rate = (want - before) as f64 / at.duration_since(start).as_secs_f64();
        println!("  trial {trial}: {}", fmt_rate(rate));
        rates.push(rate);
    }
    let rate = median(rates);
    report.push(format!(
        "| graphite plaintext lines into keys, {CONNS} TCP conns (median) | {} | target 1M/s | {:.2}× |",
        fmt_rate(rate),
        rate / 1e6
    ));
    Ok(())
}

pub fn influx(scale: &crate::Scale, report: &mut Vec<String>) -> Result<()> {
    const BATCH: usize = 5000;
    let per_conn = scale.ingest_per_conn / 2;
    println!("== influx line protocol: {CONNS} HTTP connections POSTing {BATCH}-line bodies, {per_conn} lines each");
    let listen = free_port();
    let host = SpudHost::start(
        &["influx"],
        &format!("[[job]]\nname = \"influx\"\nplugin = \"influx\"\ninterval = \"100ms\"\noptions = {{ listen = \"{listen}\" }}\n"),
    );
    let bodies: Vec<Vec<String>> = (0..CONNS)
        .map(|c| {
            (0..per_conn / BATCH)
                .map(|b| {
                    let mut body = String::with_capacity(BATCH * 60);
                    for i in 0..BATCH {
                        let n = b * BATCH + i;
                        let key = (c * per_conn + n) % 100_000;
                        use std::fmt::Write as _;
                        writeln!(
                            body,
                            "bench,host=h{} m{key}={}.{} {}",
                            key % 100,
                            n % 1000,
                            n % 100,
                            1_700_000_000 + n / 1000
                        )
                        .unwrap();
                    }
                    body
                })
                .collect()
        })
        .collect();
    let url = format!("http://{listen}/write?db=bench&precision=s");
    let mut rates = Vec::new();
    for trial in 0..scale.trials {
        let before = figure(&host, "influx", "received");
        let want = before + (CONNS * (per_conn / BATCH) * BATCH) as u64;
        let start = Instant::now();
        std::thread::scope(|s| -> Result<()> {
            let handles: Vec<_> = bodies
                .iter()
                .map(|batches| {
                    let url = &url;
                    s.spawn(move || -> Result<()> {
                        let agent = ureq::Agent::new_with_defaults();
                        for body in batches {
                            let status = agent.post(url).send(body.as_str())?.status();
                            if status != 204 {
                                bail!("HTTP {status}");
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join().expect("sender")?;
            }
            Ok(())
        })?;
        // Every POST was answered after its lines were stored: the end is now.
        let elapsed = start.elapsed();
        let got = figure_wait(&host, "influx", want);
        if got < want {
            bail!("influx took {} of {} lines", got - before, want - before);
        }
        let rate = (want - before) as f64 / elapsed.as_secs_f64();
        println!("  trial {trial}: {}", fmt_rate(rate));
        rates.push(rate);
    }
    let rate = median(rates);
    report.push(format!(
        "| influx line protocol into keys, {CONNS} HTTP conns, {BATCH}-line bodies (median) | {} | target 1M/s | {:.2}× |",
        fmt_rate(rate),
        rate / 1e6
    ));
    Ok(())
}

fn figure_wait(host: &SpudHost, job: &str, want: u64) -> u64 {
    settle(host, job, want, Duration::from_secs(10)).0
}
