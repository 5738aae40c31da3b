//! What SPUD takes from other systems' senders, through the receiving plugins running in
//! `spud-host` with its embedded server:
//! - StatsD: an offered-rate ladder, the same datagrams to SPUD's `statsd`, collectd's
//!   `statsd` plugin and Netdata's statsd (both Debian's, the strongest C servers), and Etsy's
//!   statsd (npm); loss from each daemon's own count of metrics received, and the kernel's
//!   drops for its socket (`/proc/net/udp`). A daemon's rate is the highest step it took
//!   with under 1% loss (where the sender kept up with the step).
//! - Graphite plaintext and Influx line protocol: lines per second over 4 TCP connections
//!   (target 1M/s).
//! - collectd: values per second from packets a real collectd sent, captured and replayed.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use spud_tests::collectd::Collectd;
use spud_tests::etsy::EtsyStatsd;
use spud_tests::netdata::Netdata;
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

// ---------------------------------------------------------------------------------------
// StatsD

/// One step of the ladder: metrics a second offered for this long.
const STEP: Duration = Duration::from_secs(2);
/// Offered rates, each √2 times the one before (so two steps are exactly twice): 50k …
/// 18M metrics a second.
fn ladder_rates() -> impl Iterator<Item = f64> {
    (0..18).map(|n| 50e3 * 2f64.powf(n as f64 / 2.0))
}

/// One datagram of the benchmark: its bytes, how many metrics it holds, and how many of
/// them a daemon that cannot count sets (collectd) is held to.
struct Datagram {
    bytes: Vec<u8>,
    metrics: usize,
    countable: usize,
}

/// The full mix, in datagrams of up to 1,400 bytes (a client's pipeline, as StatsD clients
/// batch): 70% counters over 1,000 names (one in five tagged), 20% timers over 100 (half
/// tagged), 8% gauges over 100 (moved by `+1`, so a sum says how many came), 2% sets.
/// Tags are DogStatsD's `|#k:v`; `tags = false` leaves them out of the same lines.
fn statsd_datagrams(metrics: usize, tags: bool) -> Vec<Datagram> {
    let mut out = Vec::new();
    let mut next = Datagram {
        bytes: Vec::with_capacity(1400),
        metrics: 0,
        countable: 0,
    };
    for i in 0..metrics {
        let (mut line, tag, countable) = match i % 50 {
            0..=34 => (
                format!("bench.c{}:1|c", i % 1000),
                (i % 5 == 0).then(|| format!("|#env:prod,shard:{}", i % 4)),
                true,
            ),
            35..=44 => (
                format!("bench.t{}:{}.{}|ms", i % 100, i % 500, i % 10),
                (i % 2 == 0).then(|| format!("|#route:/api/v{}", i % 3)),
                true,
            ),
            45..=48 => (format!("bench.g{}:+1|g", i % 100), None, true),
            _ => (format!("bench.s{}:u{}|s", i % 10, i % 5000), None, false),
        };
        if let Some(tag) = tag.filter(|_| tags) {
            line.push_str(&tag);
        }
        if next.bytes.len() + line.len() + 1 > 1400 {
            out.push(std::mem::replace(
                &mut next,
                Datagram {
                    bytes: Vec::with_capacity(1400),
                    metrics: 0,
                    countable: 0,
                },
            ));
        }
        if !next.bytes.is_empty() {
            next.bytes.push(b'\n');
        }
        next.bytes.extend_from_slice(line.as_bytes());
        next.metrics += 1;
        next.countable += countable as usize;
    }
    out.push(next);
    out
}

/// The kernel's count of datagrams dropped for UDP sockets bound to `port`.
fn udp_drops(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let suffix = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(&suffix))
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

/// Sends `rate` metrics a second for STEP; returns how many metrics were sent and how many
/// of them `counted` holds the daemon to.
fn offer(
    sender: &UdpSocket,
    to: SocketAddr,
    datagrams: &[Datagram],
    counted: fn(&Datagram) -> usize,
    rate: f64,
) -> Result<(u64, u64)> {
    let start = Instant::now();
    let (mut sent, mut held_to, mut i) = (0u64, 0u64, 0usize);
    while start.elapsed() < STEP {
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            let datagram = &datagrams[i % datagrams.len()];
            sender.send_to(&datagram.bytes, to).context("send")?;
            sent += datagram.metrics as u64;
            held_to += counted(datagram) as u64;
            i += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok((sent, held_to))
}

struct Step {
    offered: f64,
    /// Metrics a second the sender managed (at the top of the ladder, maybe below `offered`).
    rate: f64,
    sent: u64,
    taken: u64,
    kernel_drops: u64,
}

impl Step {
    fn loss(&self) -> f64 {
        1.0 - self.taken as f64 / self.sent as f64
    }
}

/// Runs the ladder of `datagrams` against one daemon; `taken` says how many metrics it has
/// counted so far, of those `counted` holds it to. Stops after two steps in a row lose more
/// than 10%.
fn ladder(
    name: &str,
    to: SocketAddr,
    datagrams: &[Datagram],
    counted: fn(&Datagram) -> usize,
    mut taken: impl FnMut() -> u64,
) -> Result<Vec<Step>> {
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    let mut steps = Vec::new();
    let mut bad_in_a_row = 0;
    for rate in ladder_rates() {
        let (before, drops) = (taken(), udp_drops(to.port()));
        let (metrics, sent) = offer(&sender, to, datagrams, counted, rate)?;
        // Let the daemon finish what is queued and report it.
        std::thread::sleep(Duration::from_millis(2500));
        let step = Step {
            offered: rate,
            rate: metrics as f64 / STEP.as_secs_f64(),
            sent,
            taken: taken() - before,
            kernel_drops: udp_drops(to.port()) - drops,
        };
        println!(
            "  {name}: offered {}/s: sent {} ({}), counted {} of {}, loss {:.2}%, kernel drops {} datagrams",
            fmt_rate(rate).trim_end_matches("/s"),
            metrics,
            fmt_rate(step.rate),
            step.taken,
            step.sent,
            100.0 * step.loss(),
            step.kernel_drops
        );
        bad_in_a_row = if step.loss() > 0.10 {
            bad_in_a_row + 1
        } else {
            0
        };
        steps.push(step);
        if bad_in_a_row == 2 {
            break;
        }
    }
    Ok(steps)
}

/// The highest offered rate taken with under 1% loss, in a step where the sender kept up
/// (within 1% of it).
fn sustained(steps: &[Step]) -> f64 {
    steps
        .iter()
        .filter(|s| s.loss() < 0.01 && s.rate >= 0.99 * s.offered)
        .map(|s| s.offered)
        .fold(0.0, f64::max)
}

/// What collectd's statsd plugin says it took, from the csv files it writes: counters'
/// totals (`derive-…`, kept since `DeleteCounters` is off), the timers' values counted per
/// interval (`gauge-bench.t…-count`, `TimerCount`), and the gauges' sums (each moved by 1).
fn collectd_taken(dir: &std::path::Path) -> u64 {
    let mut taken = 0.0;
    for file in files_under(dir) {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let values = text
            .lines()
            .skip(1)
            .filter_map(|l| l.split(',').nth(1)?.parse::<f64>().ok());
        if name.starts_with("gauge-bench.t") && name.contains("-count-") {
            taken += values.sum::<f64>();
        } else if name.starts_with("derive-bench.c") || name.starts_with("gauge-bench.g") {
            taken += values.last().unwrap_or(0.0);
        }
    }
    taken as u64
}

pub fn statsd(report: &mut Vec<String>) -> Result<()> {
    println!("== statsd: an offered-rate ladder, the same datagrams to SPUD's statsd, collectd's statsd plugin, Netdata's statsd and Etsy's statsd");
    let datagrams = statsd_datagrams(200_000, true);
    let all: fn(&Datagram) -> usize = |d| d.metrics;
    let ours = {
        let listen = free_port();
        let host = SpudHost::start(
            &["statsd"],
            &format!("[[job]]\nname = \"statsd\"\nplugin = \"statsd\"\ninterval = \"1s\"\noptions = {{ listen = \"{listen}\", tcp = false }}\n"),
        );
        ladder("spud", listen, &datagrams, all, || {
            figure(&host, "statsd", "received")
        })?
    };
    let collectd = {
        // Its parser refuses a line with tags (only `|@rate` may follow the type), so it
        // gets the same lines without them; it cannot say how many set members came, so
        // it is held to the other 98%.
        let untagged = statsd_datagrams(200_000, false);
        let listen = free_port();
        let csv = collectd_dir()?;
        let daemon = Collectd::start(
            "bench",
            &format!(
                "LoadPlugin statsd\n<Plugin statsd>\n  Host \"{}\"\n  Port \"{}\"\n  DeleteCounters false\n  DeleteTimers false\n  DeleteGauges false\n  DeleteSets false\n  TimerCount true\n</Plugin>\n\
                 LoadPlugin csv\n<Plugin csv>\n  DataDir \"{}\"\n  StoreRates false\n</Plugin>\n",
                listen.ip(),
                listen.port(),
                csv.path().display()
            ),
        );
        let steps = ladder(
            "collectd",
            listen,
            &untagged,
            |d| d.countable,
            || collectd_taken(csv.path()),
        )?;
        drop(daemon);
        steps
    };
    let netdata = {
        let daemon = Netdata::start_statsd();
        ladder("netdata", daemon.statsd, &datagrams, all, || {
            let mut tries = 0;
            loop {
                match daemon.statsd_totals() {
                    Some((taken, _)) => break taken,
                    None if tries < 20 => tries += 1,
                    None => panic!("netdata's statsd figures cannot be read"),
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })?
    };
    let etsy = {
        let daemon = EtsyStatsd::start(1000, &[90.0], "");
        ladder("etsy", daemon.addr, &datagrams, all, || {
            daemon
                .flushes()
                .iter()
                .filter_map(|f| f.get("stats.counters.statsd.metrics_received.count"))
                .sum::<f64>() as u64
        })?
    };
    let ours_rate = sustained(&ours);
    let peers = [
        ("collectd's statsd plugin", sustained(&collectd)),
        ("Netdata's statsd", sustained(&netdata)),
    ];
    let (best, best_rate) = peers
        .iter()
        .copied()
        .fold(("", 0.0), |a, b| if b.1 > a.1 { b } else { a });
    for (name, rate) in peers {
        report.push(format!(
            "| statsd metrics/s taken with < 1% loss, full mix with tags (offered-rate ladder, 1,400-byte datagrams) | {} | {name}: {} | {:.1}× |",
            fmt_rate(ours_rate),
            fmt_rate(rate),
            ours_rate / rate
        ));
    }
    report.push(format!(
        "| statsd: SPUD beside the best C peer ({best}) | {} | {} | {:.1}× (target ≥ 2×) |",
        fmt_rate(ours_rate),
        fmt_rate(best_rate),
        ours_rate / best_rate
    ));
    let etsy_rate = sustained(&etsy);
    report.push(format!(
        "| statsd metrics/s taken with < 1% loss, the same ladder | {} | Etsy's statsd: {} | {:.1}× (target ≥ 10×) |",
        fmt_rate(ours_rate),
        fmt_rate(etsy_rate),
        ours_rate / etsy_rate
    ));
    let loss_at = |steps: &[Step], offered: f64| {
        steps
            .iter()
            .find(|s| s.offered == offered)
            .map_or(f64::NAN, |s| 100.0 * s.loss())
    };
    if let Some(top) = etsy
        .iter()
        .filter(|s| s.loss() < 0.01)
        .map(|s| s.offered)
        .reduce(f64::max)
    {
        report.push(format!(
            "| statsd loss at Etsy's sustained rate | {:.2}% | Etsy's statsd: {:.2}% | |",
            loss_at(&ours, top),
            loss_at(&etsy, top)
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// collectd

pub fn collectd(report: &mut Vec<String>) -> Result<()> {
    println!("== collectd network protocol: packets a real collectd sent, captured, replayed on a ladder");
    let capture = UdpSocket::bind("127.0.0.1:0")?;
    capture.set_read_timeout(Some(Duration::from_millis(200)))?;
    let plugins = Collectd::network(capture.local_addr()?, "")
        + "LoadPlugin cpu\nLoadPlugin interface\nLoadPlugin df\nLoadPlugin processes\nLoadPlugin vmem\n";
    let daemon = Collectd::start("bench.example", &plugins);
    let mut packets = Vec::new();
    let until = Instant::now() + Duration::from_secs(6);
    let mut buf = [0u8; 65536];
    while Instant::now() < until {
        if let Ok(n) = capture.recv(&mut buf) {
            let mut lists = Vec::new();
            spud_plugin_collectd::packet::parse(
                &buf[..n],
                spud_plugin_collectd::packet::Security::None,
                &Default::default(),
                &mut lists,
            )
            .map_err(|e| anyhow::anyhow!("a captured packet does not parse: {e:?}"))?;
            let values = lists.iter().map(|l| l.values.len()).sum();
            packets.push((buf[..n].to_vec(), values));
        }
    }
    drop(daemon);
    if packets.is_empty() {
        bail!("collectd sent nothing in 6 s");
    }
    let values: usize = packets.iter().map(|p| p.1).sum();
    println!(
        "  captured {} packets, {values} values ({:.0} bytes a value)",
        packets.len(),
        packets.iter().map(|p| p.0.len()).sum::<usize>() as f64 / values as f64
    );
    let listen = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let host = SpudHost::start(
        &["collectd"],
        &format!("[[job]]\nname = \"collectd\"\nplugin = \"collectd\"\ninterval = \"1s\"\noptions = {{ listen = \"{listen}\" }}\n"),
    );
    let datagrams: Vec<Datagram> = packets
        .into_iter()
        .map(|(bytes, values)| Datagram {
            bytes,
            metrics: values,
            countable: values,
        })
        .collect();
    let steps = ladder(
        "spud",
        listen,
        &datagrams,
        |d| d.metrics,
        || figure(&host, "collectd", "received"),
    )?;
    let rate = sustained(&steps);
    report.push(format!(
        "| collectd network values/s taken with < 1% loss (replayed captured packets, offered-rate ladder) | {} | target ≥ 1M/s | {:.2}× the target |",
        fmt_rate(rate),
        rate / 1e6
    ));
    Ok(())
}
