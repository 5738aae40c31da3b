//! A fleet's paths, against Debian's `nats-server` (one node, JetStream on its file store)
//! and the release `spud-server`: one host's output to NATS and to a remote server (a full
//! spool drained, so no producer shares the cores), a central reader's intake from NATS,
//! each NATS figure beside `async-nats` alone doing the same; a host's ingest with a spool
//! beside the same with the memory buffer; and the time from a sample entering a host to a
//! subscriber of a central server seeing it, directly and through NATS. The targets
//! are printed as targets.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use spud_tests::nats::Nats;
use spud_tests::{free_port, Client, SpudHost, SpudServer};

use crate::common::*;

mod bare_nats;

/// How long a rate is measured, after a warm-up of `WARM`.
const WINDOW: Duration = Duration::from_secs(5);
const WARM: Duration = Duration::from_secs(2);

/// The rate of a growing count over `WINDOW`, after `WARM`.
fn rate(mut count: impl FnMut() -> Result<u64>) -> Result<f64> {
    thread::sleep(WARM);
    let (n0, t0) = (count()?, Instant::now());
    thread::sleep(WINDOW);
    let (n1, t1) = (count()?, Instant::now());
    Ok(n1.saturating_sub(n0) as f64 / (t1 - t0).as_secs_f64())
}

/// A flood job (the chaos plugin: a thousand keys as fast as it can) and `rest`.
fn flood_host(rest: &str) -> SpudHost {
    SpudHost::start(
        &["chaos"],
        &format!(
            "{rest}\n[[job]]\nname = \"flood\"\nplugin = \"chaos\"\noptions = {{ mode = \"flood\" }}\n"
        ),
    )
}

/// A `/metrics` counter of a `spud-server`.
fn counter(http: SocketAddr, series: &str) -> Result<u64> {
    let (_, body) = spud_tests::http::get(&format!("http://{http}/metrics"));
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .with_context(|| format!("no {series} in /metrics"))
}

fn row(report: &mut Vec<String>, figure: &str, ours: f64, target: f64) {
    report.push(format!(
        "| {figure} | {} | target {} | {:.2}× |",
        fmt_rate(ours),
        fmt_rate(target),
        ours / target
    ));
}

pub fn fleet(scale: &crate::Scale, report: &mut Vec<String>) -> Result<()> {
    let nats = Nats::single("");
    let servers = nats.servers_toml();
    let url = nats.urls()[0].clone();
    let dead = format!("[\"nats://{}\"]", free_port());
    let nats_output = |servers: &str, extra: &str| {
        format!(
            "[[output]]\ntype = \"nats\"\nname = \"n\"\nservers = {servers}\nstream = \"BENCH\"\n\
             subject = \"bench\"\nbuffer = 1000000\n{extra}"
        )
    };
    let spools = tempfile::tempdir()?;

    println!("== one host's output to NATS JetStream (one node, file store): a spool drained");
    let spool = spools.path().join("nats");
    let spooled = format!("spool = \"{}\"\nspool_max = 8000000000\n", spool.display());
    fill(&nats_output(&dead, &spooled))?;
    let host = SpudHost::start(&[], &nats_output(&servers, &spooled));
    let to_nats = rate(|| {
        nats.stream_messages("BENCH")
            .context("the stream was not made")
    })?;
    drop(host);
    let bare = bare_nats::publish(&url, "BARE", 300_000, 8192)?;
    println!(
        "  {}; async-nats alone {}",
        fmt_rate(to_nats),
        fmt_rate(bare)
    );
    row(
        report,
        "one host's output to NATS, samples/s",
        to_nats,
        500e3,
    );
    report.push(format!(
        "| … the same messages from async-nats alone (the engine here) | {} | ours {} | {:.2}× |",
        fmt_rate(bare),
        fmt_rate(to_nats),
        to_nats / bare
    ));

    println!("== a central reader's intake from NATS (the stream filled above)");
    let filled = nats.stream_messages("BENCH").unwrap_or(0);
    let reader = SpudHost::start(
        &["nats"],
        &format!(
            "[[job]]\nname = \"fleet\"\nplugin = \"nats\"\ninterval = \"1s\"\n\
             options = {{ servers = {servers}, stream = \"BENCH\", durable = \"bench\" }}\n"
        ),
    );
    // From the first acknowledgement to the last: the whole stream, read and stored.
    let started = Instant::now();
    let mut first: Option<(Instant, u64)> = None;
    let intake = loop {
        let acked = nats.consumer_acked("BENCH", "bench").unwrap_or(0);
        if first.is_none() && acked > 0 {
            first = Some((Instant::now(), acked));
        }
        if acked >= filled {
            let (t0, n0) = first.context("nothing read")?;
            break (acked - n0) as f64 / t0.elapsed().as_secs_f64().max(1e-3);
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("the reader took {acked} of {filled} in 300 s");
        }
        thread::sleep(Duration::from_millis(20));
    };
    drop(reader);
    let bare = bare_nats::consume(&url, "BENCH", "bare", filled as usize)?;
    println!(
        "  {}; async-nats alone {}",
        fmt_rate(intake),
        fmt_rate(bare)
    );
    row(
        report,
        "a central reader's intake from NATS, samples/s",
        intake,
        1e6,
    );
    report.push(format!(
        "| … the same stream read and acknowledged by async-nats alone | {} | ours {} | {:.2}× |",
        fmt_rate(bare),
        fmt_rate(intake),
        intake / bare
    ));

    println!("== one host's output to a remote spud-server: a spool drained");
    let central = SpudServer::start(&[]);
    let http = central.http.context("the server's HTTP address")?;
    let spool = spools.path().join("remote");
    let remote = |to: &str| {
        format!(
            "[server]\nremote = \"{to}\"\nspool = \"{}\"\nspool_max = 8000000000\n",
            spool.display()
        )
    };
    fill(&remote(&free_port().to_string()))?;
    let host = SpudHost::start(&[], &remote(&central.addr.to_string()));
    let series = "spud_server_commands_total{command=\"set\"}";
    let to_server = rate(|| counter(http, series))?;
    drop(host);
    println!("  {}", fmt_rate(to_server));
    row(
        report,
        "one host's output to a remote server, samples/s",
        to_server,
        500e3,
    );

    println!("== a host's ingest with its NATS output spooled, beside the memory buffer");
    let (mut memory, mut spooled) = (Vec::new(), Vec::new());
    for _ in 0..scale.trials.min(3) {
        for (with_spool, into) in [(false, &mut memory), (true, &mut spooled)] {
            let extra = if with_spool {
                let dir = spools.path().join(format!("ingest{}", into.len()));
                format!("spool = \"{}\"\nspool_max = 8000000000\n", dir.display())
            } else {
                String::new()
            };
            let host = flood_host(&nats_output(&servers, &extra));
            let mut c = host.connect();
            into.push(rate(|| {
                Ok(newest(&mut c, "flood.seq")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0))
            })?);
        }
    }
    let (memory, spooled) = (median(memory), median(spooled));
    println!(
        "  memory {}  spool {}  ({:.2}×)",
        fmt_rate(memory),
        fmt_rate(spooled),
        spooled / memory
    );
    report.push(format!(
        "| a host's ingest with a spooled NATS output, samples/s | {} | memory buffer {} | {:.2}× (target ≥ 0.8×) |",
        fmt_rate(spooled),
        fmt_rate(memory),
        spooled / memory
    ));

    println!("== a sample entering a host, seen by a central subscriber");
    let central = SpudServer::start(&[]);
    let graphite = free_port();
    let direct = SpudHost::start(
        &["graphite"],
        &format!(
            "[server]\nremote = \"{}\"\n\n{}",
            central.addr,
            graphite_job(graphite)
        ),
    );
    let (d50, d99) = latency(graphite, central.addr)?;
    drop(direct);
    let reader = SpudHost::start(
        &["nats"],
        &format!(
            "[[job]]\nname = \"fleet\"\nplugin = \"nats\"\ninterval = \"1s\"\n\
             options = {{ servers = {servers}, stream = \"LAT\", durable = \"lat\" }}\n"
        ),
    );
    let graphite = free_port();
    let edge = SpudHost::start(
        &["graphite"],
        &format!(
            "{}\n[[output]]\ntype = \"nats\"\nname = \"n\"\nservers = {servers}\nstream = \"LAT\"\n\
             subject = \"lat\"\nmatch = \"lat.*\"\n",
            graphite_job(graphite)
        ),
    );
    let (n50, n99) = latency(graphite, reader.addr.context("the reader's address")?)?;
    drop(edge);
    println!(
        "  direct p50 {d50:.2} ms p99 {d99:.2} ms; through NATS p50 {n50:.2} ms p99 {n99:.2} ms"
    );
    report.push(format!(
        "| host → central subscriber, direct (`[server] remote`), p50 / p99 | {d50:.2} / {d99:.2} ms | (no target named) | |"
    ));
    report.push(format!(
        "| host → central subscriber, through NATS, p50 / p99 | {n50:.2} / {n99:.2} ms | direct {d50:.2} / {d99:.2} ms | {:.1}× at p50 |",
        n50 / d50
    ));
    Ok(())
}

/// Fills a spool: a flood job for a few seconds, its destination (in `sink`) away.
fn fill(sink: &str) -> Result<()> {
    let host = flood_host(sink);
    thread::sleep(Duration::from_secs(4));
    // SIGTERM: the spool's last buffered bytes are written out.
    host.process.signal("TERM");
    let mut host = host;
    host.process.wait(Duration::from_secs(30));
    Ok(())
}

fn graphite_job(listen: SocketAddr) -> String {
    format!(
        "[[job]]\nname = \"graphite\"\nplugin = \"graphite\"\ninterval = \"1s\"\n\
         options = {{ listen = \"{listen}\", absolute = true, udp = false }}\n"
    )
}

/// Sends 500 samples, 5 ms apart, into a host's Graphite receiver and times each until a
/// subscriber of `central` sees it: (p50, p99) in ms.
fn latency(graphite: SocketAddr, central: SocketAddr) -> Result<(f64, f64)> {
    const N: usize = 500;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut sub = subscribe(central, "lat.*")?;
    let seen = Arc::clone(&sent);
    let watcher = thread::spawn(move || -> Result<Vec<f64>> {
        let mut took = Vec::new();
        let mut line = String::new();
        while took.len() < N {
            line.clear();
            if sub.read_line(&mut line)? == 0 {
                bail!("the subscription ended");
            }
            let Some(key) = line.split(' ').nth(2) else {
                continue;
            };
            if let Some(at) = seen.lock().unwrap().remove(key) {
                took.push(at.elapsed().as_secs_f64() * 1000.0);
            }
        }
        Ok(took)
    });
    let mut feed = TcpStream::connect(graphite)?;
    feed.set_nodelay(true)?;
    // A warm-up sample: connections made, consumers bound.
    let mut c = Client::connect(central);
    feed.write_all(b"lat.warm 1 1600000000\n")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while newest(&mut c, "lat.warm").is_none() {
        if Instant::now() > deadline {
            bail!("the warm-up sample never arrived");
        }
        thread::sleep(Duration::from_millis(20));
    }
    for i in 0..N {
        let key = format!("lat.k{i}");
        sent.lock().unwrap().insert(key.clone(), Instant::now());
        feed.write_all(format!("{key} {i} {}\n", 1_600_000_000 + i).as_bytes())?;
        thread::sleep(Duration::from_millis(5));
    }
    let mut took = watcher.join().expect("the watcher")?;
    took.sort_by(f64::total_cmp);
    Ok((percentile(&took, 0.5), percentile(&took, 0.99)))
}
