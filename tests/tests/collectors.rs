//! The collectors, each loaded by the real spud-host and pointed at the real service:
//! Debian's memcached and perlbal, started here on loopback. MogileFS is not packaged: its
//! tracker's text protocol and mogstored's HTTP usage document are served by small
//! responders below, in the formats of the seed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use spud_tests::{free_port, Client, Process, SpudHost};

const T: Duration = Duration::from_secs(30);

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn start_memcached(addr: SocketAddr) -> Process {
    let mut cmd = Command::new("memcached");
    cmd.args([
        "-l",
        "127.0.0.1",
        "-p",
        &addr.port().to_string(),
        "-U",
        "0",
        "-u",
        "root",
    ]);
    Process::start_listening(cmd, addr, T).expect("memcached starts")
}

fn values(c: &mut Client, key: &str) -> Vec<String> {
    c.history(key)
        .iter()
        .filter_map(|l| l.splitn(4, ' ').nth(3).map(str::to_string))
        .collect()
}

#[test]
fn memcached_stats_slabs_items_and_a_restart() {
    assert!(
        have("memcached"),
        "memcached is missing: run scripts/setup-test-deps"
    );
    let addr = free_port();
    let memcached = start_memcached(addr);
    let mut mc = TcpStream::connect(addr).unwrap();
    mc.write_all(b"set greeting 0 0 5\r\nhello\r\nset other 0 0 2\r\nhi\r\n")
        .unwrap();
    let mut reply = [0u8; 16];
    mc.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"STORED\r\nSTORED\r\n");

    let host = SpudHost::start(
        &["memcached"],
        &format!(
            "[[job]]\nname = \"mc\"\nplugin = \"memcached\"\ninterval = \"200ms\"\noptions = {{ address = \"{addr}\", slabs = true, items = true }}\n"
        ),
    );
    assert_eq!(host.wait_for("mc.curr_items", T, |_| true), "2");
    assert_eq!(host.wait_for("mc.status", T, |_| true), "ok");
    assert!(host.wait_for("mc.version", T, |_| true).starts_with("1."));
    host.wait_for("mc.slabs.active_slabs", T, |v| {
        v.parse::<u64>().unwrap_or(0) >= 1
    });
    let mut c = host.connect();
    let slab_keys = c.get("mc.slabs.*.chunk_size");
    assert!(!slab_keys.is_empty(), "no per-slab figures");
    let items = c.get("mc.items.*.number");
    // Patterns are unanchored: keep `number` itself, not `number_hot` and the like.
    let total: u64 = items
        .iter()
        .filter(|l| l.split(' ').nth(1).is_some_and(|k| k.ends_with(".number")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(total, 2, "{items:?}");

    // Down: a status sample and one log line, not a dead job.
    drop(memcached);
    assert_eq!(host.wait_for("mc.status", T, |v| v == "down"), "down");
    std::thread::sleep(Duration::from_millis(800));
    let log = host.process.log();
    assert_eq!(log.matches("status down").count(), 1, "{log}");
    assert!(
        values(&mut c, "mc.status")
            .iter()
            .filter(|v| *v == "down")
            .count()
            >= 3
    );
    // Back: it carries on by itself.
    let _again = start_memcached(addr);
    assert_eq!(host.wait_for("mc.status", T, |v| v == "ok"), "ok");
    assert_eq!(host.wait_for("mc.curr_items", T, |_| true), "0");
    host.process.wait_log("status ok (was down)", T);
}

#[test]
fn perlbal_states_and_uptime() {
    assert!(
        have("perlbal"),
        "perlbal is missing: run scripts/setup-test-deps"
    );
    let (manage, web) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("perlbal.conf");
    std::fs::write(
        &conf,
        format!(
            "CREATE SERVICE mgmt\n  SET role = management\n  SET listen = {manage}\nENABLE mgmt\n\n\
             CREATE SERVICE web\n  SET role = web_server\n  SET listen = {web}\n  SET docroot = {}\nENABLE web\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("perlbal");
    cmd.arg(format!("--config={}", conf.display()));
    let _perlbal = Process::start_listening(cmd, manage, T).expect("perlbal starts");
    // A client that sent half a request: perlbal counts it as reading its headers. The web
    // service may start listening a moment after the management one.
    let deadline = Instant::now() + T;
    let mut idle = loop {
        match TcpStream::connect(web) {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("perlbal's web service never listened on {web}: {e}"),
        }
    };
    idle.write_all(b"GET / HTTP/1.0\r\n").unwrap();

    let host = SpudHost::start(
        &["perlbal"],
        &format!("[[job]]\nname = \"pb\"\nplugin = \"perlbal\"\ninterval = \"200ms\"\noptions = {{ address = \"{manage}\" }}\n"),
    );
    assert_eq!(
        host.wait_for("pb.ClientHTTP.reading_headers", T, |_| true),
        "1"
    );
    assert_eq!(host.wait_for("pb.version", T, |_| true), "1.80");
    host.wait_for("pb.uptime", T, |v| v.parse::<u64>().is_ok());
    assert_eq!(host.wait_for("pb.status", T, |_| true), "ok");
}

/// Answers one line-protocol request per connection line with `reply`, forever.
fn line_responder(reply: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line.trim_end() == "!stats" && writer.write_all(reply.as_bytes()).is_err() {
                        break;
                    }
                    line.clear();
                }
            });
        }
    });
    addr
}

/// Serves `body` for every HTTP request.
fn http_responder(body: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn mogilefs_tracker_and_storage_node() {
    // The tracker's reply, as mogilefsd's `!stats` answers: `name value` lines, then `.`.
    let tracker = line_responder("uptime 86400\r\nqueries 1234\r\npending_queries 0\r\n.\r\n");
    let good = http_responder("available: 734003200\ndevice: dev1\ntime: 1700000000\ntotal: 1048576000\nused: 314572800\n");
    let bad = http_responder("<html>no usage here</html>\n");
    let nowhere = free_port();
    let host = SpudHost::start(
        &["mogilefsd", "mogstored"],
        &format!(
            "[[job]]\nname = \"mfs\"\nplugin = \"mogilefsd\"\ninterval = \"200ms\"\noptions = {{ address = \"{tracker}\" }}\n\n\
             [[job]]\nname = \"dev1\"\nplugin = \"mogstored\"\ninterval = \"200ms\"\noptions = {{ url = \"http://{good}/dev1/usage\" }}\n\n\
             [[job]]\nname = \"dev2\"\nplugin = \"mogstored\"\ninterval = \"200ms\"\noptions = {{ url = \"http://{bad}/dev2/usage\" }}\n\n\
             [[job]]\nname = \"dev3\"\nplugin = \"mogstored\"\ninterval = \"200ms\"\ntimeout = \"500ms\"\noptions = {{ url = \"http://{nowhere}/dev3/usage\" }}\n"
        ),
    );
    assert_eq!(host.wait_for("mfs.queries", T, |_| true), "1234");
    assert_eq!(host.wait_for("mfs.uptime", T, |_| true), "86400");
    assert_eq!(host.wait_for("mfs.status", T, |_| true), "ok");

    assert_eq!(host.wait_for("dev1.status", T, |_| true), "success");
    assert_eq!(host.wait_for("dev1.used", T, |_| true), "314572800");
    assert_eq!(host.wait_for("dev1.available", T, |_| true), "734003200");
    assert_eq!(host.wait_for("dev1.total", T, |_| true), "1048576000");
    assert_eq!(host.wait_for("dev1.time", T, |_| true), "1700000000");
    let delay: f64 = host
        .wait_for("dev1.delay", T, |_| true)
        .trim()
        .parse()
        .unwrap();
    assert!((0.0..1.0).contains(&delay));
    assert_eq!(host.wait_for("dev2.status", T, |_| true), "parse_failure");
    assert_eq!(host.wait_for("dev3.status", T, |_| true), "fetch_failure");
}

#[test]
fn exec_runs_commands_and_kills_what_outlives_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("stats.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'queue.depth 17'\necho\necho 'not a pair'\necho 'workers 4'\nexit 3\n",
    )
    .unwrap();
    let pidfile = dir.path().join("child.pid");
    let hang = dir.path().join("hang.sh");
    std::fs::write(
        &hang,
        format!(
            "#!/bin/sh\nsleep 600 &\necho $! > {}\nwait\n",
            pidfile.display()
        ),
    )
    .unwrap();
    for s in [&script, &hang] {
        Command::new("chmod").arg("+x").arg(s).status().unwrap();
    }
    let host = SpudHost::start(
        &["exec"],
        &format!(
            "[[job]]\nname = \"x\"\nplugin = \"exec\"\ninterval = \"300ms\"\noptions = {{ command = [\"{}\"] }}\n\n\
             [[job]]\nname = \"h\"\nplugin = \"exec\"\ninterval = \"5s\"\ntimeout = \"600ms\"\noptions = {{ command = [\"{}\"] }}\n\n\
             [[job]]\nname = \"missing\"\nplugin = \"exec\"\ninterval = \"300ms\"\noptions = {{ command = [\"/no/such/program\"] }}\n",
            script.display(),
            hang.display()
        ),
    );
    assert_eq!(host.wait_for("x.queue.depth", T, |_| true), "17");
    assert_eq!(host.wait_for("x.workers", T, |_| true), "4");
    assert_eq!(host.wait_for("x.exit_code", T, |_| true), "3");
    assert_eq!(host.wait_for("x.status", T, |_| true), "failed");
    assert_eq!(host.wait_for("missing.status", T, |_| true), "failed");

    assert_eq!(host.wait_for("h.status", T, |_| true), "timeout");
    // The command's own child went with its process group.
    let child: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + T;
    while std::path::Path::new(&format!("/proc/{child}")).exists() {
        let state = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        if state.contains(") Z ") {
            break; // a zombie waiting for its parent: dead
        }
        assert!(
            Instant::now() < deadline,
            "the timed-out command's child {child} is still running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A timeout inside the plugin is not a host-level wedge.
    assert!(
        !host.process.log().contains("past its"),
        "{}",
        host.process.log()
    );
}

#[test]
fn discovery_turns_a_file_of_targets_into_jobs_live() {
    let tracker = line_responder("uptime 1\r\n.\r\n");
    let other = line_responder("uptime 2\r\n.\r\n");
    let dir = tempfile::tempdir().unwrap();
    let targets = dir.path().join("targets.toml");
    let write = |list: &str| {
        let tmp = dir.path().join(".targets.tmp");
        std::fs::write(&tmp, format!("[[group]]\nplugin = \"mogilefsd\"\nprefix = \"trackers\"\ninterval = \"200ms\"\ntargets = [{list}]\n")).unwrap();
        std::fs::rename(&tmp, &targets).unwrap();
    };
    write(&format!("\"{tracker}\""));
    let host = SpudHost::start(
        &["discovery", "mogilefsd"],
        &format!("[[helper]]\nplugin = \"discovery\"\ninterval = \"200ms\"\noptions = {{ file = \"{}\" }}\n", targets.display()),
    );
    let a = format!("trackers.{tracker}");
    let b = format!("trackers.{other}");
    assert_eq!(host.wait_for(&format!("{a}.uptime"), T, |_| true), "1");
    write(&format!("\"{other}\""));
    assert_eq!(host.wait_for(&format!("{b}.uptime"), T, |_| true), "2");
    host.wait_for(&format!("host.job.{a}.state"), T, |v| v == "stopped");
}

#[test]
fn procstat_reads_the_machine_as_proc_does() {
    let host = SpudHost::start(
        &["procstat"],
        "[[job]]\nname = \"box\"\nplugin = \"procstat\"\ninterval = \"500ms\"\n",
    );
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{name}:"))?
                    .split_whitespace()
                    .next()
                    .map(str::to_string)
            })
            .unwrap()
    };
    assert_eq!(
        host.wait_for("box.mem.total_kb", T, |_| true),
        field("MemTotal")
    );
    assert_eq!(
        host.wait_for("box.swap.total_kb", T, |_| true),
        field("SwapTotal")
    );
    let load: f64 = host.wait_for("box.load.1", T, |_| true).parse().unwrap();
    let ours: f64 = std::fs::read_to_string("/proc/loadavg")
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((load - ours).abs() < 1.0, "{load} vs {ours}");
    // Rates appear from the second collect on.
    host.wait_for("box.ctxt_per_s", T, |v| {
        v.parse::<f64>().unwrap_or(0.0) > 0.0
    });
    host.wait_for("box.net.lo.rx_bytes_per_s", T, |v| v.parse::<f64>().is_ok());
    let mut c = host.connect();
    let lines = c.get("box.cpu.*");
    // The modes' shares, not `cpu.count` beside them.
    let cpu: f64 = lines
        .iter()
        .filter(|l| !l.contains("box.cpu.count "))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!((cpu - 100.0).abs() < 1.0, "CPU modes add up to {cpu}");
    let count: usize = host.wait_for("box.cpu.count", T, |_| true).parse().unwrap();
    let online = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    assert_eq!(
        count, online,
        "cpu.count against the cpuN lines of /proc/stat"
    );
}

#[test]
fn procstat_rates_handle_wrap_and_reset() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir(r.join("net")).unwrap();
    std::fs::write(r.join("stat"), "cpu 100 0 100 800 0 0 0 0 0 0\nctxt 1000\nprocesses 10\nprocs_running 1\nprocs_blocked 0\n").unwrap();
    std::fs::write(r.join("loadavg"), "0.50 0.40 0.30 1/100 4242\n").unwrap();
    std::fs::write(
        r.join("meminfo"),
        "MemTotal: 1000 kB\nMemFree: 400 kB\nSwapTotal: 100 kB\nSwapFree: 40 kB\n",
    )
    .unwrap();
    std::fs::write(r.join("diskstats"), "").unwrap();
    let net = |rx: u64| {
        let tmp = r.join("net/.dev");
        std::fs::write(
            &tmp,
            format!(
                "Inter-|   Receive\n face |bytes\n  eth9: {rx} 10 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n"
            ),
        )
        .unwrap();
        std::fs::rename(&tmp, r.join("net/dev")).unwrap();
    };
    net(4_294_967_000); // just under 2^32
    let host = SpudHost::start(
        &["procstat"],
        &format!("[[job]]\nname = \"fake\"\nplugin = \"procstat\"\ninterval = \"1s\"\noptions = {{ root = \"{}\" }}\n", r.display()),
    );
    assert_eq!(host.wait_for("fake.swap.used_kb", T, |_| true), "60");
    assert_eq!(host.wait_for("fake.load.15", T, |_| true), "0.30");
    // The job collected as it started; from its second collect on, it ticks every second.
    let mut c = host.connect();
    let deadline = std::time::Instant::now() + T;
    while c.history("fake.load.1").len() < 2 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    // The 32-bit counter wraps: 4,294,967,000 → 704 is 1,000 bytes.
    net(704);
    let rate: f64 = host
        .wait_for("fake.net.eth9.rx_bytes_per_s", T, |v| {
            v.parse::<f64>().unwrap_or(0.0) > 0.0
        })
        .parse()
        .unwrap();
    assert!(
        (800.0..1250.0).contains(&rate),
        "1,000 bytes in about a second: {rate}"
    );
    // A counter far from 2^32 that goes down was reset: that collect gives no rate.
    net(100_000);
    std::thread::sleep(Duration::from_millis(1200));
    net(50);
    std::thread::sleep(Duration::from_millis(1200));
    let rates: Vec<f64> = values(&mut c, "fake.net.eth9.rx_bytes_per_s")
        .iter()
        .filter_map(|v| v.parse().ok())
        .collect();
    assert!(
        rates.iter().all(|r| *r < 200_000.0),
        "a reset read as a huge rate: {rates:?}"
    );
}

#[test]
fn probe_measures_tcp_and_http_targets() {
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let open_addr = open.local_addr().unwrap();
    let web = http_responder("ok\n");
    let closed = free_port();
    let host = SpudHost::start(
        &["probe"],
        &format!(
            "[[job]]\nname = \"p\"\nplugin = \"probe\"\ninterval = \"300ms\"\ntimeout = \"2s\"\noptions = {{ tcp = [\"{open_addr}\", \"{closed}\"], http = [\"http://{web}/health\", \"http://{closed}/x\"] }}\n"
        ),
    );
    // Targets are keyed by the one key rule (`:` kept, `/` made `_`).
    let key = spud_plugin_api::key_safe;
    let open_key = key(&open_addr.to_string());
    assert_eq!(host.wait_for(&format!("p.{open_key}.up"), T, |_| true), "1");
    let connect: f64 = host
        .wait_for(&format!("p.{open_key}.connect_ms"), T, |_| true)
        .parse()
        .unwrap();
    assert!(connect < 1000.0);
    assert_eq!(
        host.wait_for(&format!("p.{}.up", key(&closed.to_string())), T, |_| true),
        "0"
    );
    let web_key = key(&format!("http://{web}/health"));
    assert_eq!(
        host.wait_for(&format!("p.{web_key}.status"), T, |_| true),
        "200"
    );
    assert_eq!(host.wait_for(&format!("p.{web_key}.up"), T, |_| true), "1");
    host.wait_for(&format!("p.{web_key}.latency_ms"), T, |v| {
        v.parse::<f64>().is_ok()
    });
    let dead_key = key(&format!("http://{closed}/x"));
    assert_eq!(
        host.wait_for(&format!("p.{dead_key}.status"), T, |_| true),
        "error"
    );
    drop(open);
}

#[test]
fn a_server_that_answers_too_slowly_is_down_not_a_wedge() {
    // Drips a `stats` answer that never ends.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                for i in 0.. {
                    if write!(stream, "STAT drip_{i} 1\r\n").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
    });
    let host = SpudHost::start(
        &["memcached"],
        &format!("[[job]]\nname = \"slow\"\nplugin = \"memcached\"\ninterval = \"1s\"\ntimeout = \"500ms\"\noptions = {{ address = \"{addr}\" }}\n"),
    );
    assert_eq!(host.wait_for("slow.status", T, |_| true), "down");
    std::thread::sleep(Duration::from_millis(1500));
    let log = host.process.log();
    assert!(log.contains("no whole answer to \"stats\" within"), "{log}");
    assert!(
        !log.contains("past its"),
        "the collect overran the job's timeout: {log}"
    );
}
