//! Ranges: a day of one key at a 5 s step (17,280 points) through `GET /api/range`, the
//! older part read from the server's RRD archive and the newest from memory.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use spud_archive::Archive;
use spud_tests::SpudServer;

use crate::common::*;
use crate::http::http_get;

const DAY: u64 = 86_400;
const STEP: u64 = 5;

pub fn range(report: &mut Vec<String>) -> Result<()> {
    println!(
        "== range: a day of one key at a 5 s step through /api/range, from the archive and memory"
    );
    let dir = tempfile::tempdir()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() / STEP * STEP;
    let from = now - DAY;
    // The archive's own writer lays down a day of 5 s samples (as the server's archiver
    // writes them); the server then keeps the newest in memory as usual.
    let mut archive = Archive::open(spud_archive::Place {
        dir: dir.path().to_path_buf(),
        rrdcached: None,
    })
    .map_err(anyhow::Error::msg)?;
    for t in (from..now).step_by(STEP as usize) {
        archive.add("bench.day".into(), t, (t % 600) as f64);
    }
    let figures = archive.flush(|key, r| {
        if let Err(e) = r {
            eprintln!("  {key}: {e}");
        }
    });
    println!("  archived: {figures}");
    let server = SpudServer::start(&["--archive", dir.path().to_str().unwrap()]);
    let mut c = server.connect();
    for t in (now - 500..now).step_by(STEP as usize) {
        c.ask(&format!("set {t} bench.day {}", t % 600), "\r\n");
    }
    let http = server.http.expect("HTTP is on");
    let path = format!("/api/range?key=bench.day&from={from}&to={now}&step={STEP}");
    let (_, bytes) = http_get(http, &path)?;
    let mut times = Vec::new();
    for _ in 0..50 {
        times.push(http_get(http, &path)?.0);
    }
    let body = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(http)?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
        )?;
        let mut b = String::new();
        s.read_to_string(&mut b)?;
        b
    };
    let points = body.matches("],[").count() + 1;
    if points < (DAY / STEP) as usize * 9 / 10 {
        bail!("a day at 5 s gave {points} points");
    }
    times.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    println!("  {points} points, {bytes} bytes: p50 {p50:.2} ms, p99 {p99:.2} ms (50 requests)");
    report.push(format!(
        "| one key, a day at a 5 s step via /api/range ({points} points, archive + memory) | p50 {p50:.2} ms, p99 {p99:.2} ms | target p50 < 5 ms | {:.2}× the target |",
        p50 / 5.0
    ));
    Ok(())
}
