//! The influx collector with Debian's python3-influxdb client writing line protocol through
//! `/write` (plain and gzip, several precisions); then malformed and oversized bodies.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use spud_tests::{free_port, SpudHost};

const T: Duration = Duration::from_secs(20);

fn job(listen: SocketAddr, options: &str) -> String {
    format!(
        "[[job]]\nname = \"influx\"\nplugin = \"influx\"\ninterval = \"1s\"\noptions = {{ listen = \"{listen}\"{options} }}\n"
    )
}

#[test]
fn the_influxdb_python_client_writes_points() {
    let listen = free_port();
    let host = SpudHost::start(&["influx"], &job(listen, ""));
    let port = listen.port();
    let out = spud_tests::python_influxdb(&format!(
        r#"
from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError
c = InfluxDBClient('127.0.0.1', {port}, database='telegraf')
c.ping()
c.create_database('telegraf')
c.write_points([{{"measurement": "cpu", "tags": {{"host": "web1", "cpu": "cpu0"}}, "time": 1700000000,
                 "fields": {{"usage_idle": 97.5, "procs": 3, "ok": True, "note": "fine"}}}}], time_precision='s')
c.write(['mem,host=web1 used=123i 1700000001000'], params={{'db': 'telegraf', 'precision': 'ms'}}, protocol='line')
gz = InfluxDBClient('127.0.0.1', {port}, database='telegraf', gzip=True)
gz.write_points([{{"measurement": "disk", "tags": {{"path": "/"}}, "time": 1700000002000000000, "fields": {{"free": 1.5}}}}])
try:
    c.write(['good v=1 1700000003', 'bad line here', 'good2 v=2 1700000004'], params={{'db': 'telegraf', 'precision': 's'}}, protocol='line')
    print('accepted')
except InfluxDBClientError as e:
    print('refused', e.code, e.content)
"#
    ));
    assert!(
        out.contains("refused 400")
            && out.contains("partial write: 1 line(s) refused, the first: line 2"),
        "{out}"
    );
    let mut c = host.connect();
    host.wait_for("influx.good2.v", T, |_| true);
    for (key, line) in [
        (
            "influx.cpu.cpu:cpu0.host:web1.usage_idle",
            "OK 1 1700000000 97.5",
        ),
        ("influx.cpu.cpu:cpu0.host:web1.procs", "OK 1 1700000000 3"),
        ("influx.cpu.cpu:cpu0.host:web1.ok", "OK 1 1700000000 1"),
        ("influx.cpu.cpu:cpu0.host:web1.note", "OK 1 1700000000 fine"),
        ("influx.mem.host:web1.used", "OK 1 1700000001 123"),
        ("influx.disk.path:_.free", "OK 1 1700000002 1.5"),
        ("influx.good.v", "OK 1 1700000003 1"),
        ("influx.good2.v", "OK 1 1700000004 2"),
    ] {
        assert_eq!(c.history(key), vec![line.to_string()], "{key}");
    }
    host.wait_for("host.job.influx.bad", T, |v| v == "1");
    host.wait_for("host.job.influx.received", T, |v| v == "8");
}

#[test]
fn bad_precision_gzip_and_oversized_bodies_get_clear_answers() {
    let listen = free_port();
    let host = SpudHost::start(&["influx"], &job(listen, ", max_body = 65536"));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = |q: &str| format!("http://{listen}/write?db=x{q}");
    let send = |q: &str, body: Vec<u8>, gzip: bool| {
        let mut r = agent.post(&url(q));
        if gzip {
            r = r.header("Content-Encoding", "gzip");
        }
        let mut resp = r.send(&body[..]).unwrap();
        (
            resp.status().as_u16(),
            resp.body_mut().read_to_string().unwrap_or_default(),
        )
    };
    let (status, body) = send("&precision=fortnight", b"m v=1".to_vec(), false);
    assert_eq!(status, 400);
    assert!(
        body.contains("precision \\\"fortnight\\\" is not one of"),
        "{body}"
    );
    let (status, body) = send("", b"not gzip at all".to_vec(), true);
    assert_eq!((status, body.contains("gzip")), (400, true), "{body}");
    // The 413 goes out as soon as max_body is passed and the connection closes; a client
    // still writing the rest may see the close first. It is the answer that is tested.
    let oversized = (0..5).find_map(|_| {
        let r = agent.post(&url("")).send(&vec![b'x'; 100_000][..]).ok()?;
        Some(r.status().as_u16())
    });
    assert_eq!(oversized, Some(413));
    // A gzip bomb: small on the wire, past max_body inflated.
    let bomb = gzip(&vec![b'a'; 1 << 20]);
    assert!(bomb.len() < 65536);
    let (status, _) = send("", bomb, true);
    assert_eq!(status, 413);
    let (status, _) = send("&precision=s", b"\xff\xfe v=1".to_vec(), false);
    assert_eq!(status, 400);
    // And a good write still goes through.
    let (status, _) = send("&precision=s", gzip(b"after,t=1 v=7 1700000009"), true);
    assert_eq!(status, 204);
    assert_eq!(host.wait_for("influx.after.t:1.v", T, |_| true), "7");
    host.wait_for("host.job.influx.dropped", T, |v| {
        v.parse::<u64>().unwrap() >= 2
    });
    let log = host.process.wait_log("body too large", T);
    for kind in ["bad precision", "bad gzip body", "body is not UTF-8"] {
        assert_eq!(log.matches(&format!("{kind}:")).count(), 1, "{kind}\n{log}");
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out.stdout
}

#[test]
fn a_flood_of_large_bodies_is_taken_in_bounded_memory_and_counted() {
    let listen = free_port();
    let host = SpudHost::start(&["influx"], &job(listen, ", max_requests = 4"));
    // 24 senders at once, each a half-MiB body of lines over the same 100 keys: the store
    // does not grow, so what the host holds beyond it is the bodies being read.
    let body: String = (0..10_000)
        .map(|i| format!("flood,host=h{} value={}.5 1700000000\n", i % 100, i))
        .collect();
    let lines = 10_000u64;
    let url = format!("http://{listen}/write?db=x&precision=s");
    host.wait_for("host.job.influx.received", T, |_| true);
    let rss = host.process.rss_kib();
    std::thread::scope(|s| {
        for _ in 0..24 {
            s.spawn(|| {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                let status = agent
                    .post(&url)
                    .send(body.as_str())
                    .unwrap()
                    .status()
                    .as_u16();
                assert_eq!(status, 204);
            });
        }
    });
    let want = (24 * lines).to_string();
    assert_eq!(
        host.wait_for("host.job.influx.received", T, |v| v == want),
        want
    );
    let growth = host.process.rss_kib().saturating_sub(rss);
    assert!(
        growth < 96 * 1024,
        "32 MiB of bodies grew the host by {growth} KiB"
    );
}
