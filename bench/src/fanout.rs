//! Fan-out: sets pushed to ten subscribers of `*`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Instant;

use anyhow::{bail, Result};
use spud_tests::SpudServer;

use crate::common::*;
use crate::Scale;

pub fn fanout(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
    println!("== fan-out: 10 subscribers to *");
    let server = SpudServer::start(&[]);
    let mut rates = Vec::new();
    for t in 0..scale.trials.min(3) {
        let subs = subscribers(server.addr, 10, "*")?;
        let sets = scale.fanout_sets;
        let readers: Vec<_> = subs
            .into_iter()
            .map(|mut s| {
                thread::spawn(move || -> Result<Instant> {
                    let mut lines = 0;
                    let mut buf = vec![0u8; 256 * 1024];
                    while lines < sets {
                        let k = s.read(&mut buf)?;
                        if k == 0 {
                            bail!("subscriber cut off after {lines} pushes");
                        }
                        lines += memchr_count(&buf[..k]);
                    }
                    Ok(Instant::now())
                })
            })
            .collect();
        let mut payload = Vec::with_capacity(sets * 30);
        for i in 0..sets {
            writeln!(payload, "qset fan.k{} {i}\r", i % 1000).unwrap();
        }
        let mut setter = TcpStream::connect(server.addr)?;
        let t0 = Instant::now();
        for chunk in payload.chunks(64 * 1024) {
            setter.write_all(chunk)?;
        }
        let mut last = t0;
        for r in readers {
            last = last.max(r.join().expect("reader")?);
        }
        let rate = (sets * 10) as f64 / (last - t0).as_secs_f64();
        println!("  trial {t}: {} pushes delivered", fmt_rate(rate));
        rates.push(rate);
    }
    report.push(format!(
        "| fan-out, 10 subscribers to `*` | {} pushes delivered | (no reference named) | |",
        fmt_rate(median(rates))
    ));
    Ok(())
}
