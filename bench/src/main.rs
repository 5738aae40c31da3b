//! `spud-bench`: the stat server's figures, each beside its reference, measured in one run.
//!
//! `cargo run --release -p spud-bench [-- --quick] [ingest|fanout|latency|memory|new-keys|host|reload|http|isolation|isolation-reloads]`. Starts the release `spud-server`,
//! Debian's `redis-server` (with `redis-benchmark`) and the original Perl server from the
//! seed; a reference that cannot run here is reported as missing, not guessed.
//! Every throughput figure is the median of several trials; the machine is shared.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

mod isolation;

use anyhow::{bail, Context, Result};
use spud_tests::{free_port, plugin, Client, OriginalServer, Process, SpudHost, SpudServer};

struct Scale {
    trials: usize,
    /// qsets per connection in the ingest run.
    ingest_per_conn: usize,
    fanout_sets: usize,
    memory_keys: usize,
    new_keys: usize,
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick {
        Scale {
            trials: 1,
            ingest_per_conn: 200_000,
            fanout_sets: 50_000,
            memory_keys: 10_000,
            new_keys: 100_000,
        }
    } else {
        Scale {
            trials: 5,
            ingest_per_conn: 1_000_000,
            fanout_sets: 300_000,
            memory_keys: 100_000,
            new_keys: 1_000_000,
        }
    };
    // Sections named on the command line run alone; none named, all run.
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| named.is_empty() || named.iter().any(|n| n == name);
    let mut report = Vec::new();
    if wanted("ingest") {
        ingest(&scale, &mut report)?;
    }
    if wanted("fanout") {
        fanout(&scale, &mut report)?;
    }
    if wanted("latency") {
        latency(&mut report)?;
    }
    if wanted("memory") {
        memory(&scale, &mut report)?;
    }
    if wanted("new-keys") {
        new_keys(&scale, &mut report)?;
    }
    if wanted("host") {
        host_jobs(&scale, &mut report)?;
        host_emit(&mut report)?;
    }
    if wanted("http") {
        http(&scale, &mut report)?;
    }
    if wanted("isolation") {
        isolation::collects(quick, &mut report)?;
    }
    if wanted("isolation-reloads") {
        isolation::reloads(quick, &mut report)?;
    }
    if wanted("reload") {
        reload_latency(&scale, &mut report)?;
        config_latency(&scale, &mut report)?;
        reload_growth(&scale, &mut report)?;
    }

    println!("\n| figure | spud-server | reference | ratio |");
    println!("|---|---|---|---|");
    for row in &report {
        println!("{row}");
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M/s", r / 1e6)
    } else {
        format!("{:.0}k/s", r / 1e3)
    }
}

// ---- qset ingest, verified ----

/// Four connections, each pipelining qsets over its own 250 of 1,000 keys; then every
/// key's whole history is read back and checked. Returns sets per second.
fn ingest_once(addr: SocketAddr, per_conn: usize, verify: bool) -> Result<f64> {
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

fn read_until_done(stream: &mut TcpStream) -> Result<()> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"OK done\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            bail!("connection closed early");
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(())
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

fn ingest(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
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

// ---- fan-out ----

/// Subscribers that count the lines (pushes) they receive.
fn subscribers(addr: SocketAddr, n: usize, pattern: &str) -> Result<Vec<TcpStream>> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr)?;
            s.write_all(format!("sub {pattern}\r\n").as_bytes())?;
            let mut buf = [0u8; 64];
            let mut got = Vec::new();
            while !got.ends_with(b"\r\n") {
                let k = s.read(&mut buf)?;
                got.extend_from_slice(&buf[..k]);
            }
            Ok(s)
        })
        .collect()
}

fn fanout(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
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

fn memchr_count(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

// ---- latency at a steady 10k sets/s ----

fn latency(report: &mut Vec<String>) -> Result<()> {
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

// ---- memory per key ----

fn memory(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
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

// ---- new keys ----

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

fn new_keys(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
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

// ---- spud-host ----

/// CPU time (user + system) of a process so far.
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold blanks) start at ") ".
    let rest = &stat[stat.rfind(") ").context("stat format")? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let per_sec: u64 = String::from_utf8(Command::new("getconf").arg("CLK_TCK").output()?.stdout)?
        .trim()
        .parse()
        .unwrap_or(100);
    Ok(Duration::from_secs_f64(ticks as f64 / per_sec as f64))
}

fn newest(c: &mut Client, key: &str) -> Option<String> {
    c.history(key)
        .first()
        .and_then(|l| l.splitn(4, ' ').nth(3))
        .map(str::to_string)
}

fn host_jobs(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
    let jobs = if scale.trials == 1 { 2_000 } else { 10_000 };
    println!("== spud-host: {jobs} no-op jobs at a 1 s interval");
    let mut config = String::from("[host]\nworkers = 4\n\n");
    for i in 0..jobs {
        std::fmt::Write::write_fmt(
            &mut config,
            format_args!("[[job]]\nname = \"noop.{i}\"\nplugin = \"chaos\"\ninterval = \"1s\"\noptions = {{ mode = \"noop\" }}\n\n"),
        )
        .unwrap();
    }
    let host = SpudHost::start(&["chaos"], &config);
    let pid = host.process.pid();
    // Let every job tick a few times, then measure over whole report windows.
    thread::sleep(Duration::from_secs(6));
    let (cpu0, t0) = (cpu_time(pid)?, Instant::now());
    let mut c = host.connect();
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for _ in 0..3 {
        thread::sleep(Duration::from_secs(5));
        p50s.push(
            newest(&mut c, "host.scheduler.lateness_p50_ms")
                .context("no lateness report")?
                .parse::<f64>()?,
        );
        p99s.push(
            newest(&mut c, "host.scheduler.lateness_p99_ms")
                .context("no lateness report")?
                .parse::<f64>()?,
        );
    }
    let share = (cpu_time(pid)? - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    let collects = newest(&mut c, "host.scheduler.collects").unwrap_or_default();
    println!(
        "  CPU {:.1}% of one core; lateness p50 {:?} ms, p99 {:?} ms (per 5 s window; {collects} collects in the last)",
        share * 100.0,
        p50s,
        p99s
    );
    report.push(format!(
        "| spud-host, {jobs} no-op jobs at 1 s: CPU | {:.1}% of a core | target < 10% | {:.2}× the target |",
        share * 100.0,
        share / 0.10
    ));
    report.push(format!(
        "| spud-host, {jobs} no-op jobs at 1 s: tick lateness (median of 5 s windows) | p50 {:.3} ms, p99 {:.3} ms | target p99 < 5 ms | {:.2}× the target |",
        median(p50s),
        median(p99s.clone()),
        median(p99s) / 5.0
    ));
    Ok(())
}

/// Samples per second from a plugin's `set` into the embedded store: one job alone, and
/// four at once.
fn host_emit(report: &mut Vec<String>) -> Result<()> {
    for jobs in [1usize, 4] {
        println!("== spud-host: {jobs} job(s) emitting as fast as they can");
        let mut config = String::new();
        for i in 0..jobs {
            config.push_str(&format!(
                "[[job]]\nname = \"flood.{i}\"\nplugin = \"chaos\"\noptions = {{ mode = \"flood\" }}\n\n"
            ));
        }
        let host = SpudHost::start(&["chaos"], &config);
        let mut c = host.connect();
        thread::sleep(Duration::from_secs(1));
        let read = |c: &mut Client| -> u64 {
            (0..jobs)
                .map(|i| {
                    newest(c, &format!("flood.{i}.seq"))
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                })
                .sum()
        };
        let (n0, t0) = (read(&mut c), Instant::now());
        thread::sleep(Duration::from_secs(3));
        let (n1, t1) = (read(&mut c), Instant::now());
        let rate = (n1 - n0) as f64 / (t1 - t0).as_secs_f64();
        println!("  {}", fmt_rate(rate));
        report.push(format!(
            "| samples from plugin `set` into the embedded store, {jobs} job(s) | {} | (no reference named) | |",
            fmt_rate(rate)
        ));
    }
    Ok(())
}

// ---- hot reload ----

fn publish(plugins: &std::path::Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = plugins.join(format!(".{name}.so.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, plugins.join(format!("{name}.so")))?;
    Ok(())
}

/// Publishes version 2 of the versioned plugin on even rounds and version 1 on odd ones,
/// and returns the time from the rename to its job's first sample.
fn swap_version(
    plugins: &std::path::Path,
    versions: &[Vec<u8>; 2],
    round: usize,
    sub: &mut BufReader<TcpStream>,
) -> Result<Duration> {
    let (bytes, version) = if round.is_multiple_of(2) {
        (&versions[1], "2")
    } else {
        (&versions[0], "1")
    };
    let t = Instant::now();
    publish(plugins, "versioned", bytes)?;
    wait_push(sub, "v.version", version)?;
    let took = t.elapsed();
    // Let the next rename be a separate change.
    thread::sleep(Duration::from_millis(25));
    Ok(took)
}

/// Waits for a push whose line ends with ` <key> <value>`.
fn wait_push(sub: &mut BufReader<TcpStream>, key: &str, value: &str) -> Result<()> {
    let want = format!(" {key} {value}\r\n");
    let mut line = String::new();
    loop {
        line.clear();
        if sub.read_line(&mut line)? == 0 {
            bail!("subscription closed");
        }
        if line.ends_with(&want) {
            return Ok(());
        }
    }
}

fn subscribe(addr: SocketAddr, pattern: &str) -> Result<BufReader<TcpStream>> {
    let mut s = TcpStream::connect(addr)?;
    s.write_all(format!("sub {pattern}\r\n").as_bytes())?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    Ok(r)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// From the rename of a new `.so` to the new generation's first sample, with 50 other jobs
/// ticking every 100 ms.
fn reload_latency(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
    let n = if scale.trials == 1 { 20 } else { 100 };
    println!("== reload latency: rename of a new .so to its first sample, {n} reloads");
    let versions = [
        std::fs::read(plugin("versioned"))?,
        std::fs::read(plugin("versioned-v2"))?,
    ];
    let mut config =
        String::from("[[job]]\nname = \"v\"\nplugin = \"versioned\"\ninterval = \"1s\"\n\n");
    for i in 0..50 {
        config.push_str(&format!("[[job]]\nname = \"other.{i}\"\nplugin = \"chaos\"\ninterval = \"100ms\"\noptions = {{ mode = \"ok\" }}\n\n"));
    }
    let host = SpudHost::start(&["chaos", "versioned"], &config);
    let addr = host.addr.context("embedded server")?;
    let plugins = host.dir.path().join("plugins");
    let mut sub = subscribe(addr, "v.version")?;
    let mut ms = Vec::new();
    for i in 0..n {
        ms.push(swap_version(&plugins, &versions, i, &mut sub)?.as_secs_f64() * 1000.0);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99) = (percentile(&ms, 0.5), percentile(&ms, 0.99));
    println!(
        "  p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        ms[ms.len() - 1]
    );
    let skipped: u64 = {
        let mut c = host.connect();
        thread::sleep(Duration::from_secs(6));
        (0..50)
            .filter_map(|i| newest(&mut c, &format!("host.job.other.{i}.skipped")))
            .filter_map(|v| v.parse::<u64>().ok())
            .sum()
    };
    println!("  ticks skipped by the 50 other jobs meanwhile: {skipped}");
    report.push(format!(
        "| reload: rename of a new .so → first sample of the new generation ({n} reloads) | p50 {p50:.1} ms, p99 {p99:.1} ms | target p50 < 100 ms (original: up to 1 s of polling plus a fork) | {:.2}× the target |",
        p50 / 100.0
    ));
    Ok(())
}

/// From the rename of an edited `gatherer.toml` adding a job to that job's first sample.
fn config_latency(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
    let n = if scale.trials == 1 { 20 } else { 100 };
    println!("== config-edit latency: {n} edits, each adding a job");
    let mut jobs = String::new();
    let host = SpudHost::start(&["versioned"], "");
    let addr = host.addr.context("embedded server")?;
    let path = host.dir.path().join("gatherer.toml");
    let mut sub = subscribe(addr, "cfg.*")?;
    let mut ms = Vec::new();
    for i in 0..n {
        jobs.push_str(&format!(
            "[[job]]\nname = \"cfg.{i}\"\nplugin = \"versioned\"\ninterval = \"10s\"\n\n"
        ));
        let text = format!("[server]\nlisten = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\n{jobs}");
        let tmp = host.dir.path().join(".gatherer.toml.tmp");
        std::fs::write(&tmp, text)?;
        let t = Instant::now();
        std::fs::rename(&tmp, &path)?;
        wait_push(&mut sub, &format!("cfg.{i}.version"), "1")?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        thread::sleep(Duration::from_millis(30));
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99) = (percentile(&ms, 0.5), percentile(&ms, 0.99));
    println!(
        "  p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        ms[ms.len() - 1]
    );
    report.push(format!(
        "| config edit → first sample of the added job ({n} edits) | p50 {p50:.1} ms, p99 {p99:.1} ms | target p50 < 100 ms | {:.2}× the target |",
        p50 / 100.0
    ));
    Ok(())
}

/// RSS and memory maps after many reloads: abi_stable never unloads a library.
fn reload_growth(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
    let n = if scale.trials == 1 { 100 } else { 1000 };
    println!("== growth over {n} reloads");
    let versions = [
        std::fs::read(plugin("versioned"))?,
        std::fs::read(plugin("versioned-v2"))?,
    ];
    let host = SpudHost::start(
        &["versioned"],
        "[[job]]\nname = \"v\"\nplugin = \"versioned\"\ninterval = \"1s\"\n",
    );
    let addr = host.addr.context("embedded server")?;
    let plugins = host.dir.path().join("plugins");
    let pid = host.process.pid();
    let maps = || {
        std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .map(|m| m.lines().count())
            .unwrap_or(0)
    };
    let mut sub = subscribe(addr, "v.version")?;
    thread::sleep(Duration::from_millis(300));
    let (rss0, maps0) = (host.process.rss_kib(), maps());
    let started = Instant::now();
    for i in 0..n {
        swap_version(&plugins, &versions, i, &mut sub)?;
    }
    let (rss1, maps1) = (host.process.rss_kib(), maps());
    let per_rss = (rss1.saturating_sub(rss0)) as f64 / n as f64;
    let per_maps = (maps1.saturating_sub(maps0)) as f64 / n as f64;
    let limit: f64 = std::fs::read_to_string("/proc/sys/vm/max_map_count")?
        .trim()
        .parse()?;
    println!(
        "  {n} reloads in {:?}: RSS {rss0} → {rss1} KiB ({per_rss:.0} KiB each), maps {maps0} → {maps1} ({per_maps:.1} each); vm.max_map_count {limit} is reached after about {:.0} reloads",
        started.elapsed(),
        (limit - maps1 as f64) / per_maps.max(0.001) + n as f64
    );
    report.push(format!(
        "| growth per in-process reload ({n} reloads) | {per_rss:.0} KiB RSS, {per_maps:.1} maps | reference measured before: ~400 KiB, 4 maps | limit reached after ~{:.0} reloads |",
        (limit - maps1 as f64) / per_maps.max(0.001) + n as f64
    ));
    Ok(())
}

// ---- HTTP ----

/// One HTTP/1.1 GET on a new connection: (milliseconds to the whole body, body bytes).
fn http_get(addr: SocketAddr, path: &str) -> Result<(f64, usize)> {
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

fn http(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
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
