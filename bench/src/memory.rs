//! Memory per key: RSS with 100 samples of every key.

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use anyhow::Result;
use spud_tests::SpudServer;

use crate::common::*;
use crate::Scale;

pub fn memory(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
    let keys = scale.memory_keys;
    println!("== memory: {keys} keys × 100 numeric values");
    let server = SpudServer::start(&[]);
    thread::sleep(Duration::from_millis(300));
    let before = server.process.rss_kib();
    let conns = 4;
    let workers: Vec<_> = (0..conns)
        .map(|c| {
            let addr = server.addr;
            thread::spawn(move || -> Result<()> {
                let mut stream = TcpStream::connect(addr)?;
                let mut payload = Vec::new();
                let mine: Vec<usize> = (c..keys).step_by(conns).collect();
                for round in 0..100u64 {
                    payload.clear();
                    for &k in &mine {
                        // Counters that grow, as monitoring values do.
                        writeln!(
                            payload,
                            "qset {} mem.host{}.stat{} {}\r",
                            1_790_000_000 + round * 5,
                            k / 100,
                            k % 100,
                            1_000_000 + round * 37 + k as u64
                        )
                        .unwrap();
                    }
                    stream.write_all(&payload)?;
                }
                stream.write_all(b"get mem.host0.stat0\r\n")?;
                read_until_done(&mut stream)
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker")?;
    }
    thread::sleep(Duration::from_millis(300));
    let after = server.process.rss_kib();
    let per_key = (after.saturating_sub(before)) as f64 * 1024.0 / keys as f64;
    println!("  RSS {before} KiB → {after} KiB: {per_key:.0} bytes per key");
    report.push(format!(
        "| RSS per key, {keys} keys × 100 numeric samples | {:.2} KiB | target ≤ 2 KiB | {:.2}× the target |",
        per_key / 1024.0,
        per_key / 2048.0
    ));
    Ok(())
}
