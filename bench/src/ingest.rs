//! qset ingest, every history verified, beside redis `lpush` and the original Perl server.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use spud_tests::{free_port, OriginalServer, Process, SpudServer};

use crate::common::*;
use crate::Scale;

/// Four connections, each pipelining qsets over its own 250 of 1,000 keys; then every
/// key's whole history is read back and checked. Returns sets per second.
pub fn ingest_once(addr: SocketAddr, per_conn: usize, verify: bool) -> Result<f64> {
    const CONNS: usize = 4;
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
    let start = Arc::new(Barrier::new(CONNS + 1));
    let workers: Vec<_> = payloads
        .into_iter()
        .enumerate()
        .map(|(c, payload)| {
            let start = Arc::clone(&start);
            thread::spawn(move || -> Result<()> {
                let mut stream = TcpStream::connect(addr)?;
                start.wait();
                for chunk in payload.chunks(64 * 1024) {
                    stream.write_all(chunk)?;
                }
                // The answer to this get comes after every qset before it was stored.
                stream.write_all(format!("get ingest.c{c}.k0\r\n").as_bytes())?;
                read_until_done(&mut stream)?;
                Ok(())
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    for w in workers {
        w.join().expect("worker")?;
    }
    let rate = (CONNS * per_conn) as f64 / t0.elapsed().as_secs_f64();

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

fn redis_lpush(trials: usize, requests: usize) -> Result<f64> {
    let addr = free_port();
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &addr.port().to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    let _redis =
        Process::start_listening(cmd, addr, Duration::from_secs(20)).map_err(anyhow::Error::msg)?;
    let mut rates = Vec::new();
    for _ in 0..trials {
        let out = Command::new("redis-benchmark")
            .args([
                "-p",
                &addr.port().to_string(),
                "-t",
                "lpush",
                "-P",
                "100",
                "-c",
                "4",
                "-q",
            ])
            .args(["-n", &requests.to_string()])
            .output()
            .context("redis-benchmark")?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "LPUSH: 1510574.00 requests per second, p50=..." (after \r progress lines)
        let rate = text
            .rsplit('\r')
            .chain(text.lines())
            .find_map(|l| {
                let rest = l.trim().strip_prefix("LPUSH: ")?;
                rest.split(' ').next()?.parse::<f64>().ok()
            })
            .with_context(|| format!("no rate in redis-benchmark output: {text:?}"))?;
        rates.push(rate);
    }
    Ok(median(rates))
}

pub fn ingest(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
    println!("== qset ingest: 4 connections pipelining over 1,000 keys, verified");
    let server = SpudServer::start(&[]);
    let mut ours = Vec::new();
    for t in 0..scale.trials {
        let r = ingest_once(server.addr, scale.ingest_per_conn, true)?;
        println!(
            "  spud-server trial {t}: {} (all 1,000 histories verified)",
            fmt_rate(r)
        );
        ours.push(r);
    }
    let ours = median(ours);
    drop(server);

    match redis_lpush(scale.trials, 4 * scale.ingest_per_conn) {
        Ok(redis) => {
            println!("  redis-server lpush -P 100 -c 4: {}", fmt_rate(redis));
            report.push(format!(
                "| qset ingest, 4 conns × 1,000 keys (median of {}) | {} | redis lpush -P 100 -c 4: {} | {:.2}× |",
                scale.trials,
                fmt_rate(ours),
                fmt_rate(redis),
                ours / redis
            ));
        }
        Err(e) => report.push(format!(
            "| qset ingest | {} | redis: not measured ({e}) | |",
            fmt_rate(ours)
        )),
    }

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
