//! Every receiver has a lock. Influx checks tokens from the server's tokens file, sent by
//! Debian's python3-influxdb client (v1 user and password) and as v2's `Authorization:
//! Token`; StatsD, Graphite and collectd take data only from their `allow` networks, a
//! refused source counted and logged at most once a second. A receiver told to listen
//! beyond loopback without a lock refuses to start, unless `open = true` says so knowingly.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use spud_tests::{free_port, http, SpudHost};

const T: Duration = Duration::from_secs(20);
const WRITER: &str = "writer-secret-0123456789";
const READER: &str = "reader-secret-0123456789";

#[test]
fn receivers_take_only_what_their_lock_lets_through() {
    let (influx, statsd, graphite, collectd) = (free_port(), free_port(), free_port(), free_port());
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntokens = \"tokens.toml\"\n\n\
         [[job]]\nname = \"influx\"\nplugin = \"influx\"\ninterval = \"200ms\"\noptions = {{ listen = \"{influx}\", auth = true }}\n\n\
         [[job]]\nname = \"statsd\"\nplugin = \"statsd\"\ninterval = \"200ms\"\noptions = {{ listen = \"{statsd}\", allow = [\"10.0.0.0/8\"] }}\n\n\
         [[job]]\nname = \"graphite\"\nplugin = \"graphite\"\ninterval = \"200ms\"\noptions = {{ listen = \"{graphite}\", allow = [\"127.0.0.0/8\", \"::1\"] }}\n\n\
         [[job]]\nname = \"collectd\"\nplugin = \"collectd\"\ninterval = \"200ms\"\noptions = {{ listen = \"{collectd}\", allow = [\"192.0.2.0/24\"] }}\n"
    );
    let dir = SpudHost::prepare(&["influx", "statsd", "graphite", "collectd"], &config);
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "anonymous = [\"read\"]\n\
             [[token]]\nname = \"collectors\"\nsecret = \"{WRITER}\"\nroles = [\"write\"]\n\
             [[token]]\nname = \"dashboards\"\nsecret = \"{READER}\"\nroles = [\"read\"]\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
    let host = SpudHost::start_in(dir);

    // Influx, v1: the python client's user and password; the password is the secret.
    let port = influx.port();
    let out = spud_tests::python_influxdb(&format!(
        r#"
from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError
ok = InfluxDBClient('127.0.0.1', {port}, username='collectors', password='{WRITER}', database='db')
ok.write_points([{{"measurement": "locked", "time": 1700000000, "fields": {{"v": 1.0}}}}], time_precision='s')
print('written')
for who, password in [('collectors', 'not-the-secret-at-all'), ('dashboards', '{READER}')]:
    try:
        InfluxDBClient('127.0.0.1', {port}, username=who, password=password, database='db').write_points(
            [{{"measurement": "intruder", "time": 1700000000, "fields": {{"v": 6.0}}}}], time_precision='s')
        print('accepted', who)
    except InfluxDBClientError as e:
        print('refused', who, e.code, e.content)
"#
    ));
    assert!(out.contains("written"), "{out}");
    assert!(
        out.contains("refused collectors 401") && out.contains("authorization failed"),
        "{out}"
    );
    assert!(
        out.contains("refused dashboards 403") && out.contains("token dashboards may not write"),
        "{out}"
    );
    host.wait_for("influx.locked.v", T, |v| v == "1.0");

    // Influx, v2: `Authorization: Token`; none at all is refused too.
    let url = format!("http://{influx}/api/v2/write?precision=s");
    let body = b"locked2 v=2 1700000001";
    let (status, _) = http::post_with(&url, &[("Authorization", &format!("Token {WRITER}"))], body);
    assert_eq!(status, 204);
    host.wait_for("influx.locked2.v", T, |v| v == "2");
    let (status, answer) = http::post_with(&url, &[], b"intruder v=7 1700000001");
    assert_eq!(
        (status, answer.as_str()),
        (401, "{\"error\":\"authorization failed\"}")
    );
    host.wait_for("host.job.influx.refused", T, |v| v == "3");
    let mut c = host.connect();
    assert_eq!(c.history("influx.intruder.v"), Vec::<String>::new());

    // StatsD allows 10.0.0.0/8 only: loopback's datagrams and connections are refused.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    for _ in 0..50 {
        udp.send_to(b"refused.count:1|c", statsd).unwrap();
    }
    let mut tcp = TcpStream::connect(statsd).unwrap();
    let _ = tcp.write_all(b"refused.tcp:1|c\n");
    host.wait_for("host.job.statsd.refused", T, |v| v == "51");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.history("statsd.refused.count"), Vec::<String>::new());
    let said = host
        .process
        .log()
        .lines()
        .filter(|l| l.contains("statsd") && l.contains("is not allowed to send"))
        .count();
    let seconds = started.elapsed().as_secs() as usize + 1;
    assert!(
        (1..=seconds + 1).contains(&said),
        "{said} lines in {seconds} s:\n{}",
        host.process.log()
    );

    // Graphite allows loopback: taken over TCP and UDP.
    let mut g = TcpStream::connect(graphite).unwrap();
    g.write_all(b"allowed.tcp 4 1700000000\n").unwrap();
    drop(g);
    udp.send_to(b"allowed.udp 5 1700000000\n", graphite)
        .unwrap();
    host.wait_for("graphite.allowed.tcp", T, |v| v == "4");
    host.wait_for("graphite.allowed.udp", T, |v| v == "5");
    host.wait_for("host.job.graphite.refused", T, |v| v == "0");

    // collectd allows 192.0.2.0/24 only: refused before a byte is parsed.
    udp.send_to(b"\x00\x00\x00\x0elocalhost\x00", collectd)
        .unwrap();
    host.wait_for("host.job.collectd.refused", T, |v| v == "1");
    host.wait_for("host.job.collectd.bad", T, |v| v == "0");
}

#[test]
fn a_receiver_beyond_loopback_without_a_lock_refuses_to_start() {
    let open_port: SocketAddr = free_port();
    let mut config = String::from("[server]\nlisten = \"127.0.0.1:0\"\n\n");
    for plugin in ["influx", "statsd", "graphite", "collectd"] {
        config.push_str(&format!(
            "[[job]]\nname = \"{plugin}\"\nplugin = \"{plugin}\"\noptions = {{ listen = \"0.0.0.0:0\" }}\n\n"
        ));
    }
    config.push_str(&format!(
        "[[job]]\nname = \"knowingly\"\nplugin = \"statsd\"\ninterval = \"200ms\"\noptions = {{ listen = \"0.0.0.0:{}\", open = true }}\n",
        open_port.port()
    ));
    let host = SpudHost::start(&["influx", "statsd", "graphite", "collectd"], &config);
    for (plugin, lock) in [
        ("influx", "auth = true"),
        ("statsd", "allow = [\"10.0.0.0/8\""),
        ("graphite", "allow = [\"10.0.0.0/8\""),
        ("collectd", "security_level = \"Sign\""),
    ] {
        assert_eq!(
            host.wait_for(&format!("host.job.{plugin}.state"), T, |v| v == "failed"),
            "failed"
        );
        let error = host.wait_for(&format!("host.job.{plugin}.last_error"), T, |_| true);
        assert!(
            error.contains("refusing to listen on 0.0.0.0:0 without a lock")
                && error.contains(lock),
            "{plugin}: {error}"
        );
    }
    // Said knowingly: it listens everywhere and takes what comes.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to: SocketAddr = format!("127.0.0.1:{}", open_port.port()).parse().unwrap();
    let deadline = Instant::now() + T;
    loop {
        udp.send_to(b"open.count:1|c", to).unwrap();
        let mut c = host.connect();
        if !c.history("knowingly.open.count").is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{}", host.process.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}
