//! Set-to-push latency at a steady 10k sets/s.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
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
