//! A fleet against real parts: hosts pushing to central servers directly (spooled) and
//! through a NATS JetStream cluster (Debian's `nats-server`), and remote write into
//! VictoriaMetrics (Debian's `victoria-metrics`, with `vmagent`). The drills kill what a
//! fleet loses in production (a NATS node, a central server, hosts restarted meanwhile)
//! and then count every sample, by key and time, on every central server.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use spud_tests::nats::Nats;
use spud_tests::victoria::{Victoria, VmAgent};
use spud_tests::{free_port, Client, SpudHost, SpudServer};

const T: Duration = Duration::from_secs(60);

/// Samples' times in the drills: far from now, so a sample stored at its delivery time
/// instead of its own would show.
const EPOCH: u64 = 1_600_000_000;

/// Every sample each of `keys` holds: (time, value), oldest first.
fn samples(c: &mut Client, keys: &[String]) -> HashMap<String, Vec<(u64, String)>> {
    // A reply ends with `OK done` (a history) or is one `ERR` line (no such key).
    fn is_end(line: &str) -> bool {
        line == "OK done" || line.starts_with("ERR")
    }
    let mut out = HashMap::new();
    for chunk in keys.chunks(200) {
        let mut ask = String::new();
        for key in chunk {
            ask.push_str(&format!("get {key}\r\n"));
        }
        c.send(ask);
        let replies = c.read_until(T, |b| {
            b.ends_with(b"\r\n")
                && String::from_utf8_lossy(b)
                    .split_terminator("\r\n")
                    .filter(|l| is_end(l))
                    .count()
                    >= chunk.len()
        });
        let text = String::from_utf8_lossy(&replies);
        let mut lines = text.split_terminator("\r\n");
        for key in chunk {
            let mut held = Vec::new();
            for line in lines.by_ref() {
                if is_end(line) {
                    break;
                }
                // `OK <n> <time> <value>`: a line of the key's history. A key the server
                // does not hold is taken as a pattern, answered `OK <key> <time> <value>`
                // for each key it matches: not this key's samples.
                let mut parts = line.splitn(4, ' ');
                let (_, n, time, value) = (parts.next(), parts.next(), parts.next(), parts.next());
                if let (Some(Ok(_)), Some(Ok(time)), Some(value)) =
                    (n.map(str::parse::<u64>), time.map(str::parse::<u64>), value)
                {
                    held.push((time, value.to_string()));
                }
            }
            held.reverse();
            out.insert(key.clone(), held);
        }
    }
    out
}

/// What a drill's hosts were sent: key → (time, value).
type Sent = BTreeMap<String, (u64, String)>;

/// Compares what a central server holds with what was sent: (missing, doubled, wrong time).
fn compare(c: &mut Client, sent: &Sent) -> (Vec<String>, Vec<String>, Vec<String>) {
    let keys: Vec<String> = sent.keys().cloned().collect();
    let held = samples(c, &keys);
    let (mut missing, mut doubled, mut wrong) = (Vec::new(), Vec::new(), Vec::new());
    for (key, (time, value)) in sent {
        match held.get(key).map(Vec::as_slice) {
            None | Some([]) => missing.push(key.clone()),
            Some([(t, v)]) if t == time && v == value => {}
            Some([_]) => wrong.push(format!("{key}: {:?}, sent {time} {value}", held[key])),
            Some(_) => doubled.push(format!("{key}: {:?}", held[key])),
        }
    }
    (missing, doubled, wrong)
}

/// Waits until `central` holds every sample once; panics with what is wrong after `within`.
fn wait_complete(name: &str, addr: SocketAddr, sent: &Sent, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let mut c = Client::connect(addr);
        let (missing, doubled, wrong) = compare(&mut c, sent);
        if missing.is_empty() && doubled.is_empty() && wrong.is_empty() {
            return;
        }
        if Instant::now() > deadline || !doubled.is_empty() || !wrong.is_empty() {
            panic!(
                "{name}: of {} samples, {} missing (first {:?}), {} doubled ({:?}), {} with a wrong time or value ({:?})",
                sent.len(),
                missing.len(),
                missing.iter().take(5).collect::<Vec<_>>(),
                doubled.len(),
                doubled.iter().take(5).collect::<Vec<_>>(),
                wrong.len(),
                wrong.iter().take(5).collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One edge host of a drill: a Graphite receiver on a port of its own (kept across
/// restarts), the test's connection to it, and what it was sent.
struct Edge {
    host: Option<SpudHost>,
    dir: Option<tempfile::TempDir>,
    graphite: SocketAddr,
    feed: Option<TcpStream>,
}

impl Edge {
    /// A host whose samples go where `sink` (TOML: `[server] remote` or an `[[output]]`)
    /// says, spooled in its directory.
    fn start(sink: &str) -> Edge {
        let graphite = free_port();
        let config = format!(
            "{sink}\n[[job]]\nname = \"graphite\"\nplugin = \"graphite\"\ninterval = \"1s\"\n\
             options = {{ listen = \"{graphite}\", absolute = true, udp = false }}\n"
        );
        let host = SpudHost::start(&["graphite"], &config);
        Edge {
            host: Some(host),
            dir: None,
            graphite,
            feed: None,
        }
    }

    /// Sends one sample; whether the host took it (its socket accepted the line).
    fn send(&mut self, key: &str, value: &str, time: u64) -> bool {
        if self.host.is_none() {
            return false;
        }
        if self.feed.is_none() {
            self.feed = TcpStream::connect(self.graphite).ok();
        }
        let Some(feed) = &mut self.feed else {
            return false;
        };
        if feed
            .write_all(format!("{key} {value} {time}\n").as_bytes())
            .is_err()
        {
            self.feed = None;
            return false;
        }
        true
    }

    /// Stops it as an operator would (SIGTERM), after what it was sent has been read.
    fn stop(&mut self) {
        self.feed = None;
        std::thread::sleep(Duration::from_millis(500));
        if let Some(mut host) = self.host.take() {
            host.process.signal("TERM");
            assert!(
                host.process.wait(T).is_some(),
                "the host did not stop:\n{}",
                host.process.log()
            );
            self.dir = Some(host.dir);
        }
    }

    /// Starts it again in the same directory (its config, its spool).
    fn restart(&mut self) {
        let dir = self.dir.take().expect("stopped");
        self.host = Some(SpudHost::start_in(dir));
    }
}

/// Feeds every edge one sample per round until `rounds` are done, calling `at(round)` before
/// each: keys `drill.<edge>.s<round>`, value the round, time EPOCH + round.
fn feed(
    edges: &mut [Edge],
    rounds: u64,
    every: Duration,
    mut at: impl FnMut(u64, &mut [Edge]),
) -> Sent {
    let mut sent = Sent::new();
    for round in 0..rounds {
        at(round, edges);
        let started = Instant::now();
        for (i, edge) in edges.iter_mut().enumerate() {
            let key = format!("drill.h{i}.s{round}");
            let time = EPOCH + round;
            if edge.send(&key, &round.to_string(), time) {
                sent.insert(key, (time, round.to_string()));
            }
        }
        std::thread::sleep(every.saturating_sub(started.elapsed()));
    }
    sent
}

#[test]
fn the_fleet_drill_over_nats_loses_nothing_and_doubles_nothing() {
    let mut nats = Nats::cluster(3);
    let servers = nats.servers_toml();
    // Two central servers, each reading the whole stream through its own durable consumer,
    // keeping their state across a kill -9.
    let central = |durable: &str| {
        SpudHost::start(
            &["nats"],
            &format!(
                "[server]\nlisten = \"127.0.0.1:0\"\nstate = \"spud.state\"\n\n\
                 [[job]]\nname = \"fleet\"\nplugin = \"nats\"\ninterval = \"1s\"\n\
                 options = {{ servers = {servers}, stream = \"DRILL\", durable = \"{durable}\" }}\n"
            ),
        )
    };
    let mut edges: Vec<Edge> = (0..20)
        .map(|_| {
            Edge::start(&format!(
                "[[output]]\ntype = \"nats\"\nname = \"nats\"\nservers = {servers}\n\
                 stream = \"DRILL\"\nsubject = \"drill\"\nreplicas = 3\nmatch = \"drill.*\"\n\
                 spool = \"spool\"\n"
            ))
        })
        .collect();
    let a = central("central-a");
    let b = central("central-b");
    let mut a = Some(a);
    let mut a_dir = None;
    let sent = feed(
        &mut edges,
        200,
        Duration::from_millis(200),
        |round, edges| {
            match round {
                // A NATS node dies: its clients move to the others; the stream has two copies
                // left.
                20 => nats.kill(1),
                // Central server A dies, and is away for 30 s.
                40 => {
                    let host = a.take().unwrap();
                    host.process.signal("KILL");
                    a_dir = Some(host.dir);
                }
                // Five hosts restart meanwhile.
                60..=64 => {
                    let edge = &mut edges[(round - 60) as usize];
                    edge.stop();
                    edge.restart();
                }
                190 => a = Some(SpudHost::start_in(a_dir.take().unwrap())),
                _ => {}
            }
        },
    );
    let a = a.unwrap();
    assert!(sent.len() > 3500, "only {} samples sent", sent.len());
    wait_complete("central A", a.addr.unwrap(), &sent, T);
    wait_complete("central B", b.addr.unwrap(), &sent, T);
    // The stream took each sample once, resends and all.
    assert_eq!(nats.stream_messages("DRILL"), Some(sent.len() as u64));
    println!(
        "drill over NATS: {} samples from 20 hosts; each central server holds every one once, at its time; so does the stream",
        sent.len()
    );
    for edge in &edges {
        let log = edge.host.as_ref().unwrap().process.log();
        assert!(!log.contains("ERROR"), "{log}");
    }
}

#[test]
fn the_fleet_drill_direct_with_spools_loses_nothing() {
    let listen = free_port().to_string();
    let state = tempfile::tempdir().unwrap();
    let state_file = state.path().join("central.state");
    let start_central =
        || SpudServer::start(&["--listen", &listen, "--state", state_file.to_str().unwrap()]);
    let mut central = Some(start_central());
    let mut edges: Vec<Edge> = (0..20)
        .map(|_| {
            Edge::start(&format!(
                "[server]\nremote = \"{listen}\"\nspool = \"spool\"\nspool_max = 100000000\n"
            ))
        })
        .collect();
    let sent = feed(
        &mut edges,
        400,
        Duration::from_millis(200),
        |round, edges| {
            match round {
                // The central server dies and is away for 60 s; five hosts restart meanwhile.
                25 => central.take().unwrap().process.signal("KILL"),
                50..=54 => {
                    let edge = &mut edges[(round - 50) as usize];
                    edge.stop();
                    edge.restart();
                }
                325 => central = Some(start_central()),
                _ => {}
            }
        },
    );
    assert!(sent.len() > 7000, "only {} samples sent", sent.len());
    wait_complete(
        "the central server",
        central.as_ref().unwrap().addr,
        &sent,
        T,
    );
    println!(
        "direct drill: {} samples from 20 hosts; the central server holds every one once, at its time",
        sent.len()
    );
    // A restarted host said what its spool held for the server.
    let log = edges[0].host.as_ref().unwrap().process.log();
    assert!(log.contains("wait to be sent"), "{log}");
}

/// A host feeding itself through a Graphite receiver, with `rest` (outputs, rules) added.
fn graphite_host(rest: &str) -> (SpudHost, SocketAddr) {
    let graphite = free_port();
    let host = SpudHost::start(
        &["graphite"],
        &format!(
            "[[job]]\nname = \"graphite\"\nplugin = \"graphite\"\ninterval = \"1s\"\n\
             options = {{ listen = \"{graphite}\", absolute = true, udp = false }}\n\n{rest}"
        ),
    );
    (host, graphite)
}

/// Sends `lines` to a Graphite receiver over one connection.
fn send_graphite(addr: SocketAddr, lines: &[String]) {
    let mut feed = TcpStream::connect(addr).unwrap();
    for line in lines {
        feed.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
}

/// `n` samples `<prefix>.s<i>`, value i, time EPOCH + i + `from`: their lines and the map.
fn batch(prefix: &str, from: u64, n: u64) -> (Vec<String>, Sent) {
    let mut lines = Vec::new();
    let mut sent = Sent::new();
    for i in from..from + n {
        let key = format!("{prefix}.s{i}");
        lines.push(format!("{key} {i} {}", EPOCH + i));
        sent.insert(key, (EPOCH + i, i.to_string()));
    }
    (lines, sent)
}

/// The reading job of a central server.
fn nats_reader(servers: &str, durable: &str, extra: &str) -> SpudHost {
    SpudHost::start(
        &["nats"],
        &format!(
            "[[job]]\nname = \"fleet\"\nplugin = \"nats\"\ninterval = \"1s\"\n\
             options = {{ servers = {servers}, durable = \"{durable}\"{extra} }}\n"
        ),
    )
}

#[test]
fn nats_carries_samples_with_their_times_through_an_outage_and_says_a_wrong_token_once() {
    let mut nats = Nats::single("authorization {\n  token: \"s3cret\"\n}");
    let servers = nats.servers_toml();
    let central = nats_reader(&servers, "central", ", token = \"s3cret\"");
    let (edge, graphite) = graphite_host(&format!(
        "[[output]]\ntype = \"nats\"\nname = \"n\"\nservers = {servers}\ntoken = \"s3cret\"\n\
         match = \"edge.*\"\nspool = \"spool\"\n\n\
         [[output]]\ntype = \"nats\"\nname = \"wrong\"\nservers = {servers}\ntoken = \"nope\"\n\
         stream = \"OTHER\"\nmatch = \"edge.*\"\n"
    ));
    let (lines, mut sent) = batch("edge", 0, 50);
    send_graphite(graphite, &lines);
    wait_complete("the central server", central.addr.unwrap(), &sent, T);

    // NATS away: the samples wait in the spool, then arrive once each.
    nats.kill(0);
    let (lines, more) = batch("edge", 50, 50);
    send_graphite(graphite, &lines);
    sent.extend(more);
    edge.wait_for("host.output.n.spooled", T, |v| {
        v.parse::<u64>().unwrap_or(0) >= 50
    });
    edge.wait_for("host.output.n.oldest_age", T, |v| {
        v.parse::<u64>().unwrap_or(0) >= 1
    });
    nats.start_node(0);
    nats.wait_ready();
    wait_complete("the central server", central.addr.unwrap(), &sent, T);
    assert_eq!(nats.stream_messages("SPUD"), Some(100));

    // A burst of several windows' worth: publishes wait for acknowledgements, never for
    // each other.
    let (lines, more) = batch("edge", 100, 30_000);
    send_graphite(graphite, &lines);
    sent.extend(more);
    wait_complete("the central server", central.addr.unwrap(), &sent, T);
    assert_eq!(nats.stream_messages("SPUD"), Some(30_100));
    edge.wait_for("host.output.n.spooled", T, |v| v == "0");
    assert_eq!(edge.wait_for("host.output.n.dropped", T, |_| true), "0");
    assert_eq!(
        edge.wait_for("host.output.n.sent", T, |v| v == "30100"),
        "30100"
    );

    // The output with a wrong token says so in one line while it keeps trying; the other
    // output and the host carry on.
    let log = edge.process.log();
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("output wrong: NATS nats://"))
        .collect();
    assert_eq!(said.len(), 1, "{log}");
    assert!(
        said[0].to_lowercase().contains("authorization"),
        "{}",
        said[0]
    );
    assert_eq!(
        edge.wait_for("host.output.wrong.connected", T, |_| true),
        "0"
    );
}

#[test]
fn durable_consumers_each_get_everything_and_a_shared_one_splits_the_work() {
    let nats = Nats::single("");
    let servers = nats.servers_toml();
    let (a, b) = (
        nats_reader(&servers, "a", ""),
        nats_reader(&servers, "b", ""),
    );
    let (c, d) = (
        nats_reader(&servers, "shared", ""),
        nats_reader(&servers, "shared", ""),
    );
    let (_edge, graphite) = graphite_host(&format!(
        "[[output]]\ntype = \"nats\"\nname = \"n\"\nservers = {servers}\nmatch = \"split.*\"\n"
    ));
    // Let both sharing readers pull before the samples come.
    std::thread::sleep(Duration::from_secs(2));
    let mut sent = Sent::new();
    for round in 0..20 {
        let (lines, part) = batch("split", round * 20, 20);
        send_graphite(graphite, &lines);
        sent.extend(part);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Each durable of its own: everything (high availability).
    wait_complete("reader a", a.addr.unwrap(), &sent, T);
    wait_complete("reader b", b.addr.unwrap(), &sent, T);
    // One durable shared: every sample at exactly one of the two (scale).
    let keys: Vec<String> = sent.keys().cloned().collect();
    let deadline = Instant::now() + T;
    loop {
        let at_c = samples(&mut c.connect(), &keys);
        let at_d = samples(&mut d.connect(), &keys);
        let count =
            |m: &HashMap<String, Vec<(u64, String)>>| m.values().filter(|v| !v.is_empty()).count();
        let both = keys
            .iter()
            .filter(|k| !at_c[*k].is_empty() && !at_d[*k].is_empty())
            .count();
        let either = keys
            .iter()
            .filter(|k| !at_c[*k].is_empty() || !at_d[*k].is_empty())
            .count();
        assert_eq!(both, 0, "a sample read by both sharing readers");
        if either == keys.len() {
            assert!(
                count(&at_c) > 0 && count(&at_d) > 0,
                "one reader did all the work: {} and {}",
                count(&at_c),
                count(&at_d)
            );
            break;
        }
        assert!(Instant::now() < deadline, "{either} of {} read", keys.len());
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn remote_write_reaches_victoria_metrics_directly_and_through_vmagent() {
    let vm = Victoria::start();
    let agent = VmAgent::start(&vm.write_url());
    let (host, graphite) = graphite_host(&format!(
        "[[metrics.rule]]\nmatch = \"vm.*\"\nname = \"vm_value\"\nlabels = {{ key = \"$1\" }}\n\n\
         [[output]]\ntype = \"prometheus_remote_write\"\nname = \"direct\"\nurl = \"{}\"\n\
         match = \"vm.*\"\nlabels = {{ path = \"direct\" }}\nflush = \"100ms\"\n\n\
         [[output]]\ntype = \"prometheus_remote_write\"\nname = \"agent\"\nurl = \"{}\"\n\
         match = \"vm.*\"\nlabels = {{ path = \"vmagent\" }}\nflush = \"100ms\"\nspool = \"spool-agent\"\n",
        vm.write_url(),
        agent.write_url()
    ));
    // An hour of history, a sample a minute on three keys: what a fleet keeps for months.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let start = (now - 3 * 3600) / 60 * 60;
    let lines: Vec<String> = (0..60)
        .map(|i| format!("vm.k{} {i} {}", i % 3, start + 60 * i))
        .collect();
    send_graphite(graphite, &lines);
    let expected = |key: u64| -> Vec<(i64, f64)> {
        (0..60u64)
            .filter(|i| i % 3 == key)
            .map(|i| (((start + 60 * i) * 1000) as i64, i as f64))
            .collect()
    };
    let deadline = Instant::now() + T;
    loop {
        let series = vm.export("{__name__=\"vm_value\"}");
        let complete = series.len() == 6 && series.iter().all(|(_, s)| s.len() == 20);
        if complete {
            for (labels, samples) in &series {
                let key: u64 = labels["key"].as_str().unwrap()[1..].parse().unwrap();
                assert_eq!(samples, &expected(key), "{labels}");
                assert!(["direct", "vmagent"].contains(&labels["path"].as_str().unwrap()));
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "VictoriaMetrics holds {series:?}\n{}",
            host.process.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // PromQL over the history, as a dashboard asks it.
    let end = start + 60 * 60;
    let counted = vm.query(&format!(
        "sum by (path) (count_over_time(vm_value[2h] @ {end}))"
    ));
    assert_eq!(counted.len(), 2, "{counted:?}");
    assert!(counted.iter().all(|(_, n)| *n == 60.0), "{counted:?}");
    // A central server with `--promql` answers a key's range from there: it holds none of
    // it in memory. The same rules name the key's series.
    let rules = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        rules.path(),
        "[[rule]]\nmatch = \"vm.*\"\nname = \"vm_value\"\nlabels = { key = \"$1\" }\n",
    )
    .unwrap();
    let central = spud_tests::SpudServer::start(&[
        "--promql",
        &format!("http://{}", vm.addr),
        "--metrics-rules",
        rules.path().to_str().unwrap(),
    ]);
    let mut c = central.connect();
    let answer = c.ask(
        &format!("range vm.k0 {} {end} 600", start - 600),
        "OK done\r\n",
    );
    let points: Vec<[f64; 4]> = answer
        .lines()
        .filter(|l| *l != "OK done")
        .map(|l| {
            let n: Vec<f64> = l[3..].split(' ').map(|w| w.parse().unwrap()).collect();
            [n[0], n[1], n[2], n[3]]
        })
        .collect();
    // k0 is every third minute's value (0, 3, … 57): ten-minute steps of them.
    assert!(points.len() >= 6, "{answer}\n{}", central.process.log());
    for [t, avg, min, max] in &points {
        assert!(
            min <= avg && avg <= max && *min >= 0.0 && *max <= 57.0,
            "at {t}: {answer}"
        );
        assert!(*t >= (start - 600) as f64 && *t < end as f64, "{answer}");
    }
    assert_eq!(points.first().unwrap()[2], 0.0, "{answer}");
    assert_eq!(points.last().unwrap()[3], 57.0, "{answer}");
    // A key the rules send nowhere is unknown there too.
    assert!(c
        .ask("range nothing.here 1 1000 10", "\r\n")
        .starts_with("ERR not_found"));
    assert_eq!(host.wait_for("host.output.agent.refused", T, |_| true), "0");
    assert_eq!(
        host.wait_for("host.output.direct.refused", T, |_| true),
        "0"
    );
}

#[test]
fn nats_over_mutual_tls_with_a_user_and_password() {
    let pki = spud_tests::Pki::new();
    let nats = Nats::single(&format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n}}\n\
         authorization {{\n  user: spud\n  password: \"pw\"\n}}",
        pki.file("server.pem"),
        pki.file("server.key"),
        pki.file("ca.pem")
    ));
    let servers = nats.servers_toml();
    let tls = format!(
        "user = \"spud\", password = \"pw\", tls_ca = \"{}\", tls_cert = \"{}\", tls_key = \"{}\"",
        pki.file("ca.pem"),
        pki.file("client.pem"),
        pki.file("client.key")
    );
    let central = nats_reader(&servers, "central", &format!(", {tls}"));
    let (_edge, graphite) = graphite_host(&format!(
        "[[output]]\ntype = \"nats\"\nname = \"n\"\nservers = {servers}\nmatch = \"tls.*\"\n{}\n",
        tls.replace(", ", "\n")
    ));
    let (lines, sent) = batch("tls", 0, 20);
    send_graphite(graphite, &lines);
    wait_complete("the central server", central.addr.unwrap(), &sent, T);
}
