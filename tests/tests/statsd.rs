//! The statsd collector beside Etsy's statsd (npm), the same datagrams sent to both; then
//! tags, bad input and floods, and a reload under traffic.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use spud_tests::etsy::EtsyStatsd;
use spud_tests::{free_port, Client, SpudHost};

const T: Duration = Duration::from_secs(20);

fn job(listen: SocketAddr, interval: &str, options: &str) -> String {
    format!(
        "[[job]]\nname = \"statsd\"\nplugin = \"statsd\"\ninterval = \"{interval}\"\noptions = {{ listen = \"{listen}\"{options} }}\n"
    )
}

/// `(time, value)` of every sample of `key`, newest first.
fn samples(c: &mut Client, key: &str) -> Vec<(u64, f64)> {
    c.history(key)
        .iter()
        .filter_map(|l| {
            let mut f = l.splitn(4, ' ').skip(2);
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .collect()
}

/// Datagrams of up to 1,400 bytes holding `lines`.
fn packets(lines: &[String]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![Vec::new()];
    for l in lines {
        let last = out.last_mut().unwrap();
        if !last.is_empty() && last.len() + l.len() + 1 > 1400 {
            out.push(Vec::new());
        }
        let last = out.last_mut().unwrap();
        if !last.is_empty() {
            last.push(b'\n');
        }
        last.extend_from_slice(l.as_bytes());
    }
    out
}

struct Workload {
    lines: Vec<String>,
    timer_count: f64,
    counter_total: f64,
    set_members: usize,
}

/// A round's traffic: a counter with sample rates, a timer of 500 values (some sampled),
/// a gauge moved by deltas, a set with repeats. Names carry the round so rounds differ.
fn workload(round: u32) -> Workload {
    let mut rng = fastrand_like(round as u64 + 7);
    let mut lines = Vec::new();
    let (mut timer_count, mut counter_total) = (0.0, 0.0);
    for i in 0..500 {
        let v = (rng() % 100_000) as f64 / 100.0;
        if i % 10 == 0 {
            lines.push(format!("t{round}:{v}|ms|@0.5"));
            timer_count += 2.0;
        } else {
            lines.push(format!("t{round}:{v}|ms"));
            timer_count += 1.0;
        }
        let n = rng() % 5 + 1;
        match i % 3 {
            0 => {
                lines.push(format!("c{round}:{n}|c"));
                counter_total += n as f64;
            }
            1 => {
                lines.push(format!("c{round}:{n}|c|@0.1"));
                counter_total += n as f64 * 10.0;
            }
            _ => {}
        }
    }
    for i in 0..300 {
        lines.push(format!("s{round}:member{}|s", i % 120));
    }
    lines.push(format!("g{round}:100|g"));
    lines.push(format!("g{round}:+25.5|g"));
    lines.push(format!("g{round}:-5|g"));
    Workload {
        lines,
        timer_count,
        counter_total,
        set_members: 120,
    }
}

/// A small deterministic generator (xorshift), so both daemons get identical values.
fn fastrand_like(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn counters_timers_gauges_and_sets_agree_with_etsy_statsd() {
    let listen = free_port();
    let host = SpudHost::start(&["statsd"], &job(listen, "2s", ", percentiles = [90, 99]"));
    let etsy = EtsyStatsd::start(2000, &[90.0, 99.0], "");
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut c = host.connect();
    // A burst can straddle either daemon's flush; such a round is sent again under new names.
    for round in 0..4 {
        let w = workload(round);
        for p in packets(&w.lines) {
            sender.send_to(&p, listen).unwrap();
            sender.send_to(&p, etsy.addr).unwrap();
            // Etsy's statsd drops datagrams under a burst; a breath every packet keeps
            // this a test of arithmetic, not of loss (the benchmark measures loss).
            std::thread::sleep(Duration::from_micros(300));
        }
        let count_key = format!("statsd.t{round}.count");
        host.wait_for(&count_key, T, |_| true);
        std::thread::sleep(Duration::from_millis(4500));
        let flushes = etsy.flushes();
        let theirs = flushes
            .iter()
            .find(|f| f.get(&format!("stats.timers.t{round}.count")) == Some(&w.timer_count));
        let ours_time = samples(&mut c, &count_key)
            .into_iter()
            .find(|(_, v)| *v == w.timer_count)
            .map(|(t, _)| t);
        let (Some(theirs), Some(time)) = (theirs, ours_time) else {
            eprintln!("round {round} straddled a flush; again under new names");
            continue;
        };
        let mut ours = |suffix: &str| -> f64 {
            let key = format!("statsd.t{round}.{suffix}");
            samples(&mut c, &key)
                .into_iter()
                .find(|(t, _)| *t == time)
                .unwrap_or_else(|| panic!("no {key} at {time}"))
                .1
        };
        for (etsy_name, our_name) in [
            ("count", "count"),
            ("sum", "sum"),
            ("mean", "mean"),
            ("lower", "min"),
            ("upper", "max"),
            ("median", "median"),
            ("upper_90", "p90"),
            ("upper_99", "p99"),
        ] {
            let reference = theirs[&format!("stats.timers.t{round}.{etsy_name}")];
            let got = ours(our_name);
            assert!(
                close(got, reference),
                "timer {our_name}: ours {got}, Etsy's {etsy_name} {reference}"
            );
        }
        // Counters: the totals over every flush (a burst's counts may split and still add up).
        let etsy_total: f64 = flushes
            .iter()
            .filter_map(|f| f.get(&format!("stats.counters.c{round}.count")))
            .sum();
        let our_total: f64 = samples(&mut c, &format!("statsd.c{round}.count"))
            .iter()
            .map(|(_, v)| v)
            .sum();
        assert!(
            close(etsy_total, w.counter_total),
            "Etsy {etsy_total}, sent {}",
            w.counter_total
        );
        assert!(
            close(our_total, w.counter_total),
            "ours {our_total}, sent {}",
            w.counter_total
        );
        let etsy_set = flushes
            .iter()
            .filter_map(|f| f.get(&format!("stats.sets.s{round}.count")))
            .fold(0.0, |a: f64, b| a.max(*b));
        let our_set = samples(&mut c, &format!("statsd.s{round}.count"))
            .iter()
            .fold(0.0, |a: f64, (_, v)| a.max(*v));
        assert_eq!(
            (our_set, etsy_set),
            (w.set_members as f64, w.set_members as f64)
        );
        let etsy_gauge = flushes
            .iter()
            .rev()
            .find_map(|f| f.get(&format!("stats.gauges.g{round}")))
            .copied();
        let our_gauge = samples(&mut c, &format!("statsd.g{round}"))
            .first()
            .map(|s| s.1);
        assert_eq!((our_gauge, etsy_gauge), (Some(120.5), Some(120.5)));
        return;
    }
    panic!("every round straddled a flush");
}

#[test]
fn dogstatsd_tags_tcp_and_bad_input_counted_with_one_line_per_kind() {
    let listen = free_port();
    let host = SpudHost::start(
        &["statsd"],
        &job(listen, "1s", ", max_keys = 1000, max_line = 1024"),
    );
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender
        .send_to(
            b"req:5|ms|#route:/a,env:prod\nreq:7|ms|#env:prod,route:/a\nhits:1|c|#canary",
            listen,
        )
        .unwrap();
    assert_eq!(
        host.wait_for("statsd.req.env:prod.route:_a.count", T, |v| v == "2"),
        "2"
    );
    host.wait_for("statsd.hits.canary.count", T, |v| v == "1");

    // Over TCP, lines split anywhere across writes.
    let mut tcp = std::net::TcpStream::connect(listen).unwrap();
    use std::io::Write;
    tcp.write_all(b"tcpcount:4|c\ntcpc").unwrap();
    tcp.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    tcp.write_all(b"ount:6|c\n").unwrap();
    drop(tcp);
    host.wait_for("statsd.tcpcount.count", T, |v| v == "10");

    let bad: &[&[u8]] = &[
        b"nocolon",
        b"a:1|x",
        b"a:1",
        b"a:one|c",
        b"a:1|c|@7",
        b"\xff\xfe:1|c",
        b"_e{5,4}:title|text",
    ];
    for b in bad {
        sender.send_to(b, listen).unwrap();
    }
    let mut tcp = std::net::TcpStream::connect(listen).unwrap();
    tcp.write_all(&vec![b'x'; 1 << 20]).unwrap();
    tcp.write_all(b"\nafter:1|c\n").unwrap();
    drop(tcp);
    host.wait_for("statsd.after.count", T, |v| v == "1");
    host.wait_for("host.job.statsd.bad", T, |v| v.parse::<u64>().unwrap() >= 8);
    let log = host.process.wait_log("line too long", T);
    for kind in [
        "no ':' after the name",
        "unknown metric type",
        "no '|type'",
        "value is not a number",
        "sample rate not in (0, 1]",
        "not UTF-8",
        "DogStatsD events and service checks are not taken",
    ] {
        assert_eq!(log.matches(kind).count(), 1, "{kind}:\n{log}");
    }

    // A flood of new names: kept to max_keys, the rest counted as dropped, memory flat.
    let rss_before = host.process.rss_kib();
    for chunk in 0..200 {
        let lines: Vec<String> = (0..250)
            .map(|i| format!("flood{}:1|c", chunk * 250 + i))
            .collect();
        for p in packets(&lines) {
            sender.send_to(&p, listen).unwrap();
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    host.wait_for("host.job.statsd.dropped", T, |v| {
        v.parse::<u64>().unwrap() >= 40_000
    });
    let growth = host.process.rss_kib().saturating_sub(rss_before);
    assert!(
        growth < 64 * 1024,
        "the host grew by {growth} KiB under a flood of names"
    );
    let log = host.process.log();
    assert_eq!(log.matches("too many names").count(), 1, "{log}");
    // The job carries on for the names it holds.
    sender.send_to(b"after:3|c", listen).unwrap();
    host.wait_for("statsd.after.count", T, |v| v == "3");
}

#[test]
fn a_reload_under_traffic_loses_no_count() {
    let listen = free_port();
    let host = SpudHost::start(&["statsd"], &job(listen, "1s", ""));
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(b"warm:1|c", listen).unwrap();
    host.wait_for("statsd.warm.count", T, |v| v == "1");
    let config = host.dir.path().join("gatherer.toml");
    let sent = std::thread::scope(|s| {
        let sending = s.spawn(|| {
            let mut sent = 0u64;
            let end = Instant::now() + Duration::from_secs(4);
            while Instant::now() < end {
                sender.send_to(b"r:1|c", listen).unwrap();
                sent += 1;
                std::thread::sleep(Duration::from_micros(500));
            }
            sent
        });
        std::thread::sleep(Duration::from_millis(1500));
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, text.replace("\" }", "\", percentiles = [50] }")).unwrap();
        host.process.wait_log("1 changed", T);
        sending.join().unwrap()
    });
    let mut c = host.connect();
    let deadline = Instant::now() + T;
    loop {
        let total: f64 = samples(&mut c, "statsd.r.count")
            .iter()
            .map(|(_, v)| v)
            .sum();
        if total == sent as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sent {sent}, counted {total}\n{}",
            host.process.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_replaced_so_under_traffic_loses_no_count_run_after_run() {
    let listen = free_port();
    let host = SpudHost::start(&["statsd"], &job(listen, "1s", ""));
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe.send_to(b"warm:1|c", listen).unwrap();
    host.wait_for("statsd.warm.count", T, |v| v == "1");
    let plugins = host.dir.path().join("plugins");
    let original = std::fs::read(spud_tests::plugin("statsd")).unwrap();
    // Forty counts a datagram from four senders (four source ports: under SO_REUSEPORT the
    // kernel would spread them over the old and the new generation's sockets).
    let datagram = "r:1|c\n".repeat(40);
    let datagram = datagram.trim_end().as_bytes();
    let mut c = host.connect();
    let mut sent_total = 0u64;
    let mut generation = 0u8;
    for run in 1..=3 {
        let sent: u64 = std::thread::scope(|s| {
            let senders: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                        let (mut sent, end) = (0u64, Instant::now() + Duration::from_secs(3));
                        while Instant::now() < end {
                            socket.send_to(datagram, listen).unwrap();
                            sent += 40;
                            std::thread::sleep(Duration::from_micros(500));
                        }
                        sent
                    })
                })
                .collect();
            // Two new copies of the .so (each with a different last byte), renamed over it.
            for _ in 0..2 {
                std::thread::sleep(Duration::from_millis(1000));
                generation += 1;
                let mut bytes = original.clone();
                bytes.push(generation);
                let tmp = plugins.join(".statsd.so.tmp");
                std::fs::write(&tmp, &bytes).unwrap();
                std::fs::rename(&tmp, plugins.join("statsd.so")).unwrap();
                host.process
                    .wait_log(&format!("generation {}", generation + 1), T);
            }
            senders.into_iter().map(|h| h.join().unwrap()).sum()
        });
        sent_total += sent;
        let deadline = Instant::now() + T;
        loop {
            let counted: f64 = samples(&mut c, "statsd.r.count")
                .iter()
                .map(|(_, v)| v)
                .sum();
            if counted == sent_total as f64 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "run {run}: sent {sent_total}, counted {counted}\n{}",
                host.process.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let log = host.process.log();
    assert!(!log.contains("dropped"), "{log}");
}
