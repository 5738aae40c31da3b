//! HTTP: `/metrics` beside the line protocol, and ingest with a dashboard and Prometheus
//! watching.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use spud_tests::SpudServer;

use crate::common::*;
use crate::ingest::ingest_once;
use crate::Scale;

/// One HTTP/1.1 GET on a new connection: (milliseconds to the whole body, body bytes).
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(f64, usize)> {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    if !body.starts_with(b"HTTP/1.1 200") {
        bail!(
            "GET {path}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
    }
    Ok((t.elapsed().as_secs_f64() * 1000.0, body.len()))
}

/// What a dashboard holds open: the coalesced event stream of `*`, read as it comes.
fn dashboard_stream(addr: SocketAddr) -> Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "GET /api/stream?match=*&every=500ms HTTP/1.1\r\nHost: bench\r\n\r\n"
    )?;
    let mut reader = s.try_clone()?;
    thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    });
    Ok(s)
}

pub fn http(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
    let keys = scale.memory_keys;
    println!("== HTTP: /metrics at {keys} keys; ingest with a dashboard open and Prometheus scraping every second");
    let server = SpudServer::start(&[]);
    let http = server.http.context("the server serves no HTTP")?;
    {
        let mut s = TcpStream::connect(server.addr)?;
        let mut payload = Vec::new();
        for k in 0..keys {
            writeln!(
                payload,
                "qset metrics.host{}.stat{} {}\r",
                k / 100,
                k % 100,
                k
            )?;
        }
        s.write_all(&payload)?;
        s.write_all(b"get metrics.host0.stat0\r\n")?;
        read_until_done(&mut s)?;
    }
    let mut render = Vec::new();
    let mut line_get = Vec::new();
    let mut bytes = 0;
    for _ in 0..10 {
        let (ms, n) = http_get(http, "/metrics")?;
        render.push(ms);
        bytes = n;
        // The same keys' newest values through the line protocol, for scale.
        let t = Instant::now();
        let mut s = TcpStream::connect(server.addr)?;
        s.write_all(b"get metrics.*\r\n")?;
        read_until_done(&mut s)?;
        line_get.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (render, line_get) = (median(render), median(line_get));
    println!("  GET /metrics: {render:.1} ms ({} KiB); `get metrics.*` over the line protocol: {line_get:.1} ms", bytes / 1024);
    report.push(format!(
        "| GET /metrics at {keys} keys (median of 10) | {render:.1} ms, {} KiB | `get metrics.*` on the line protocol: {line_get:.1} ms | {:.2}× |",
        bytes / 1024,
        render / line_get
    ));

    // Prometheus scraping every second (stopped with SIGSTOP between trials), or a loop
    // that scrapes the same way where Prometheus is not installed.
    let prometheus = if spud_tests::prometheus::Prometheus::installed() {
        Some(spud_tests::prometheus::Prometheus::start(
            &format!("global: {{ scrape_interval: 1s, scrape_timeout: 1s }}\nscrape_configs:\n  - job_name: spud\n    honor_labels: true\n    static_configs:\n      - targets: ['{http}']\n"),
            &[],
        ))
    } else {
        None
    };
    let scraping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if prometheus.is_none() {
        let scraping = Arc::clone(&scraping);
        thread::spawn(move || loop {
            if scraping.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = http_get(http, "/metrics");
            }
            thread::sleep(Duration::from_secs(1));
        });
    }
    let pause = |on: bool| {
        if let Some(p) = &prometheus {
            p.process.signal(if on { "CONT" } else { "STOP" });
        }
        scraping.store(on, std::sync::atomic::Ordering::Relaxed);
    };
    let (mut plain, mut watched) = (Vec::new(), Vec::new());
    for t in 0..scale.trials {
        pause(false);
        thread::sleep(Duration::from_millis(500));
        let a = ingest_once(server.addr, scale.ingest_per_conn, false)?;
        pause(true);
        let stream = dashboard_stream(http)?;
        thread::sleep(Duration::from_millis(1500));
        let b = ingest_once(server.addr, scale.ingest_per_conn, false)?;
        drop(stream);
        println!(
            "  trial {t}: alone {}, with a dashboard and scrapes {}",
            fmt_rate(a),
            fmt_rate(b)
        );
        plain.push(a);
        watched.push(b);
    }
    pause(true);
    let (plain, watched) = (median(plain), median(watched));
    let scraper = if prometheus.is_some() {
        "Prometheus"
    } else {
        "a scrape loop"
    };
    report.push(format!(
        "| qset ingest with a dashboard stream open and {scraper} scraping /metrics every 1 s, {keys} keys stored (median of {}) | {} | the same, alone: {} | {:.2}× |",
        scale.trials,
        fmt_rate(watched),
        fmt_rate(plain),
        watched / plain
    ));
    Ok(())
}
