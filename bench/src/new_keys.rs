//! New keys per second, beside the original server.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use spud_tests::{OriginalServer, SpudServer};

use crate::common::*;
use crate::Scale;

/// Creates `n` new keys with pipelined `qset`s, while a second connection samples the
/// server's key count (`uptime`) every 20 ms. Returns the rate in each tenth of the run.
fn new_keys_rates(addr: SocketAddr, n: usize) -> Result<Vec<f64>> {
    let mut probe = TcpStream::connect(addr)?;
    let mut probe_reader = BufReader::new(probe.try_clone()?);
    let mut key_count = || -> Result<usize> {
        probe.write_all(b"uptime\r\n")?;
        let mut count = None;
        for _ in 0..3 {
            let mut line = String::new();
            probe_reader.read_line(&mut line)?;
            if let Some(rest) = line.strip_suffix(" total keys\r\n") {
                count = rest.rsplit(' ').next().and_then(|c| c.parse().ok());
            }
        }
        count.context("no key count in uptime")
    };
    let base = key_count()?;
    let writer = thread::spawn(move || -> Result<()> {
        let mut stream = TcpStream::connect(addr)?;
        let mut payload = Vec::new();
        for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
            payload.clear();
            for i in chunk {
                writeln!(payload, "qset 1 newkey.{i} 1\r").unwrap();
            }
            stream.write_all(&payload)?;
        }
        Ok(())
    });
    // (seconds since start, keys made), sampled until every key exists.
    let t0 = Instant::now();
    let mut samples = vec![(0.0, 0usize)];
    while samples.last().unwrap().1 < n && t0.elapsed() < Duration::from_secs(600) {
        thread::sleep(Duration::from_millis(20));
        // The server's own keys are in `base` too.
        let made = key_count()?.saturating_sub(base).min(n);
        samples.push((t0.elapsed().as_secs_f64(), made));
    }
    // When the count crossed each tenth, interpolating between samples.
    let crossing = |target: usize| -> f64 {
        let i = samples
            .iter()
            .position(|s| s.1 >= target)
            .unwrap_or(samples.len() - 1);
        if i == 0 {
            return 0.0;
        }
        let ((t1, k1), (t2, k2)) = (samples[i - 1], samples[i]);
        t1 + (t2 - t1) * (target - k1) as f64 / (k2 - k1).max(1) as f64
    };
    let window = n / 10;
    let rates = (1..=10)
        .map(|k| window as f64 / (crossing(k * window) - crossing((k - 1) * window)))
        .collect();
    writer.join().expect("writer")?;
    Ok(rates)
}

pub fn new_keys(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
    println!("== new keys: {} distinct keys", scale.new_keys);
    let server = SpudServer::start(&[]);
    let rates = new_keys_rates(server.addr, scale.new_keys)?;
    let shown: Vec<String> = rates.iter().map(|r| fmt_rate(*r)).collect();
    println!("  rate per tenth: {}", shown.join(", "));
    let first = rates[0];
    let last = *rates.last().unwrap();
    let ours = median(rates.clone());
    let reference = match OriginalServer::start() {
        Ok(original) => {
            let n = 5000;
            let perl = new_keys_rates(original.addr, n)?;
            let tail = *perl.last().unwrap();
            println!(
                "  original Perl server, keys {}..{n}: {:.0} keys/s",
                n - n / 10,
                tail
            );
            format!("original at {}k keys: {:.0} keys/s", n / 1000, tail)
        }
        Err(e) => format!("original: not measured ({e})"),
    };
    report.push(format!(
        "| new keys, {}M distinct (median of tenths; first → last tenth) | {} ({} → {}) | {reference} | |",
        scale.new_keys as f64 / 1e6,
        fmt_rate(ours),
        fmt_rate(first),
        fmt_rate(last),
    ));
    Ok(())
}
