//! The graphite collector: a real collectd's `write_graphite` pointed at it; plaintext lines
//! over TCP and UDP with their own times; bad lines, floods and too many connections; and a
//! reload under traffic.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use spud_tests::collectd::Collectd;
use spud_tests::{free_port, SpudHost};

const T: Duration = Duration::from_secs(20);

fn job(listen: SocketAddr, options: &str) -> String {
    format!(
        "[[job]]\nname = \"graphite\"\nplugin = \"graphite\"\ninterval = \"1s\"\noptions = {{ listen = \"{listen}\"{options} }}\n"
    )
}

#[test]
fn collectd_write_graphite_load_and_memory_arrive() {
    let listen = free_port();
    let host = SpudHost::start(&["graphite"], &job(listen, ""));
    let plugin = format!(
        "<LoadPlugin write_graphite>\n  FlushInterval 1\n</LoadPlugin>\n<Plugin write_graphite>\n  <Node \"spud\">\n    Host \"{}\"\n    Port \"{}\"\n    Protocol \"tcp\"\n    Prefix \"collectd.\"\n    StoreRates true\n  </Node>\n</Plugin>\n",
        listen.ip(),
        listen.port()
    );
    let _collectd = Collectd::start("graphite.example", &plugin);
    let load: f64 = host
        .wait_for(
            "graphite.collectd.graphite_example.load.load.shortterm",
            T,
            |_| true,
        )
        .parse()
        .unwrap();
    assert!(
        (load - spud_tests::loadavg1()).abs() < 1.0,
        "collectd said {load}, /proc/loadavg {}",
        spud_tests::loadavg1()
    );
    let used: f64 = host
        .wait_for(
            "graphite.collectd.graphite_example.memory.memory-used",
            T,
            |_| true,
        )
        .parse()
        .unwrap();
    assert!(used > 1e6, "memory used {used}");
    let mut c = host.connect();
    let line = c.history("graphite.collectd.graphite_example.load.load.midterm")[0].clone();
    let time: u64 = line.split(' ').nth(2).unwrap().parse().unwrap();
    assert!(time.abs_diff(spud_now()) <= 5, "{line}");
}

fn spud_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn lines_keep_their_text_and_time_and_bad_input_is_counted() {
    let listen = free_port();
    let host = SpudHost::start(
        &["graphite"],
        &job(listen, ", max_line = 1024, max_connections = 4"),
    );
    let mut tcp = TcpStream::connect(listen).unwrap();
    tcp.write_all(
        b"web1.disk.used 12.30 1700000000\r\nweb1.tagged;rack=a1;dc=x 5 1700000001\nweb1.now 1e6\n",
    )
    .unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"web2.a 1 1700000002\nweb2.b -0 1700000003", listen)
        .unwrap();
    host.wait_for("graphite.web2.b", T, |_| true);
    host.wait_for("graphite.web1.now", T, |_| true);
    let mut c = host.connect();
    assert_eq!(
        c.history("graphite.web1.disk.used"),
        vec!["OK 1 1700000000 12.30"]
    );
    assert_eq!(
        c.history("graphite.web1.tagged.dc:x.rack:a1"),
        vec!["OK 1 1700000001 5"]
    );
    assert_eq!(c.history("graphite.web2.b"), vec!["OK 1 1700000003 -0"]);

    for bad in [
        &b"lonely\n"[..],
        b"a.b abc 1\n",
        b"a.b 1 yesterday\n",
        b"a 1 2 3\n",
        b"a \xff 1\n",
    ] {
        tcp.write_all(bad).unwrap();
    }
    tcp.write_all(&vec![b'x'; 4 << 20]).unwrap();
    tcp.write_all(b"\nweb1.after 1\n").unwrap();
    host.wait_for("graphite.web1.after", T, |_| true);
    host.wait_for("host.job.graphite.bad", T, |v| v == "6");
    let log = host.process.log();
    for kind in [
        "no value",
        "value is not a number",
        "bad timestamp",
        "more than three fields",
        "not UTF-8",
        "line too long",
    ] {
        assert_eq!(log.matches(&format!("{kind}:")).count(), 1, "{kind}\n{log}");
    }

    // Beyond max_connections: refused at once and counted; the open ones carry on.
    let extra: Vec<TcpStream> = (0..6)
        .map(|_| TcpStream::connect(listen).unwrap())
        .collect();
    host.wait_for("host.job.graphite.dropped", T, |v| {
        v.parse::<u64>().unwrap() >= 3
    });
    drop(extra);
    tcp.write_all(b"web1.still 2\n").unwrap();
    host.wait_for("graphite.web1.still", T, |v| v == "2");

    // A flood of garbage over UDP: counted, memory flat.
    let rss = host.process.rss_kib();
    let junk = vec![b'#'; 60_000];
    for _ in 0..2000 {
        udp.send_to(&junk, listen).unwrap();
    }
    host.wait_for("host.job.graphite.bad", T, |v| {
        v.parse::<u64>().unwrap() > 100
    });
    let growth = host.process.rss_kib().saturating_sub(rss);
    assert!(growth < 64 * 1024, "grew by {growth} KiB");
}

#[test]
fn a_reload_under_traffic_keeps_the_port_and_every_datagram() {
    let listen = free_port();
    let host = SpudHost::start(&["graphite"], &job(listen, ", udp = true"));
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"warm 1", listen).unwrap();
    host.wait_for("host.job.graphite.received", T, |v| v == "1");
    let config = host.dir.path().join("gatherer.toml");
    let sent = std::thread::scope(|s| {
        let sending = s.spawn(|| {
            let mut sent = 1u64;
            let end = Instant::now() + Duration::from_secs(4);
            while Instant::now() < end {
                udp.send_to(format!("seq.{sent} 1").as_bytes(), listen)
                    .unwrap();
                sent += 1;
                std::thread::sleep(Duration::from_micros(500));
            }
            sent
        });
        std::thread::sleep(Duration::from_millis(1500));
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(
            &config,
            text.replace("udp = true", "udp = true, max_line = 2048"),
        )
        .unwrap();
        host.process.wait_log("1 changed", T);
        sending.join().unwrap()
    });
    let want = sent.to_string();
    let got = host.wait_for("host.job.graphite.received", T, |v| v == want);
    assert_eq!(got, want);
}
