//! Fault drills: what SPUD does when the things around it fail, and what is lost. (Plugin
//! faults — segfault, hang, leaked threads, unbounded allocation — are in `isolation.rs`.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use spud_tests::{binary, Client, Process, SpudHost, SpudServer};

const T: Duration = Duration::from_secs(30);

/// (time, value) of every stored sample of `key`, oldest first.
fn samples(c: &mut Client, key: &str) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = c
        .history(key)
        .iter()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            let (_, _, time, value) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            Some((time.parse().ok()?, value.parse().ok()?))
        })
        .collect();
    v.reverse();
    v
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn kill_9_of_the_server_while_the_host_pushes_loses_at_most_the_last_second() {
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().join("state");
    let state = state.to_str().unwrap();
    let server = SpudServer::start(&["--state", state, "--snapshot-every", "1"]);
    let addr = server.addr;
    let host = SpudHost::start(
        &["chaos"],
        &format!(
            "[server]\nremote = \"{addr}\"\n\n[[job]]\nname = \"pushed\"\nplugin = \"chaos\"\ninterval = \"100ms\"\noptions = {{ mode = \"ok\" }}\n"
        ),
    );
    let mut c = server.connect();
    let deadline = Instant::now() + T;
    while samples(&mut c, "pushed.tick").len() < 25 {
        assert!(Instant::now() < deadline, "{}", host.process.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(c);
    server.process.signal("KILL");
    let killed_at = unix_now();
    drop(server);
    std::thread::sleep(Duration::from_millis(1500));
    let again = SpudServer::start(&["--listen", &addr.to_string(), "--state", state]);
    let restarted_at = unix_now();
    let mut c = again.connect();
    let deadline = Instant::now() + T;
    let got = loop {
        let got = samples(&mut c, "pushed.tick");
        if got.last().is_some_and(|(t, _)| *t > restarted_at + 1) {
            break got;
        }
        assert!(Instant::now() < deadline, "{}", host.process.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    let values: Vec<u64> = got.iter().map(|(_, v)| *v).collect();
    assert_eq!(
        values[0], 1,
        "the first ticks survived in the snapshot: {values:?}"
    );
    // What the server acknowledged after its last snapshot is in its write-ahead log
    // (`everysec`: written within milliseconds of each batch, fsynced once a second), and
    // the host re-sent the rest: at most a gap of the last second, ten ticks.
    let gaps: Vec<(u64, u64)> = values
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(gaps.len() <= 1, "gaps {gaps:?} in {values:?}");
    let lost: u64 = gaps.iter().map(|(a, b)| b - a - 1).sum();
    assert!(lost <= 10, "{lost} ticks lost: {values:?}");
    // Ticks made while no server listened arrived afterwards, with their own times.
    let while_down = got
        .iter()
        .filter(|(t, _)| *t >= killed_at && *t < restarted_at)
        .count();
    assert!(
        while_down >= 5,
        "{while_down} ticks from the outage: {got:?}"
    );
    println!("drill: kill -9 of the server: {lost} acknowledged ticks lost; {while_down} ticks from the outage delivered with their times");
}

#[test]
fn a_thousand_idle_connections_and_a_slow_subscriber_keep_memory_bounded() {
    let server = SpudServer::start(&["--max-pending", "1048576"]);
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    // A subscriber to everything that never reads.
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"sub *\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let before = server.process.rss_kib();

    // 200,000 sets of 100-byte values to 100 keys: ~20 MB of pushes for the slow one.
    let mut writer = TcpStream::connect(server.addr).unwrap();
    let value = "v".repeat(100);
    let mut batch = String::new();
    for i in 0..200_000 {
        batch.push_str(&format!("qset flood.{} {value}\r\n", i % 100));
        if batch.len() > 64 * 1024 {
            writer.write_all(batch.as_bytes()).unwrap();
            batch.clear();
        }
    }
    writer.write_all(batch.as_bytes()).unwrap();
    let mut c = server.connect();
    assert_eq!(c.history("flood.99").len(), 100);
    let after = server.process.rss_kib();

    // The slow one was cut off with a reason; everyone else is untouched.
    slow.set_read_timeout(Some(T)).unwrap();
    let mut pushed = Vec::new();
    let _ = slow.read_to_end(&mut pushed);
    assert!(
        String::from_utf8_lossy(&pushed)
            .ends_with("ERR slow_subscriber Too far behind; disconnected\r\n")
            || String::from_utf8_lossy(&pushed).contains("ERR slow_subscriber"),
        "the slow subscriber was not told"
    );
    let mut some_idle = Client::connect(server.addr);
    drop(idle);
    assert_eq!(some_idle.history("flood.0").len(), 100);
    let growth = after.saturating_sub(before);
    println!("drill: 1,000 idle connections + 1 slow subscriber: RSS {before} → {after} KiB (+{growth} KiB) over 200,000 sets");
    // The slow subscriber's backlog is capped at 1 MiB; the store holds 100 keys × 100.
    assert!(growth < 48 * 1024, "RSS grew by {growth} KiB");
}

/// Starts `spud-server` whose `--state` directory is a 256 KiB tmpfs of its own (a mount
/// namespace through `unshare`, no privileges needed where user namespaces are allowed).
/// None where they are not.
fn server_on_a_small_disk(dir: &str, extra: &str) -> Option<(Process, std::net::SocketAddr)> {
    let allowed = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !allowed {
        return None;
    }
    let script = format!(
        "mount -t tmpfs -o size=256k tmpfs {dir} && exec {} --listen 127.0.0.1:0 --no-http --state {dir}/state --snapshot-every 1 {extra}",
        binary("spud-server").display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .env("RUST_LOG", "info");
    let (process, line) = Process::start(cmd, "listening on ", T);
    let addr = line.rsplit(' ').next()?.parse().ok()?;
    Some((process, addr))
}

#[test]
fn a_full_disk_while_snapshotting_keeps_the_previous_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    // The write-ahead log is off here (`no`, and its file is checked for below) so that the
    // snapshot alone meets the full disk.
    let Some((server, addr)) = server_on_a_small_disk(&d, "--fsync no") else {
        spud_tests::skip(
            "a_full_disk_while_snapshotting_keeps_the_previous_snapshot",
            "user namespaces are not allowed here, so no private small disk",
        );
        return;
    };
    // What the server sees, from outside its mount namespace.
    let seen = format!("/proc/{}/root{d}", server.pid());
    let mut c = Client::connect(addr);
    c.ask("set 1 before.full kept", "\r\n");
    let deadline = Instant::now() + T;
    while !server.process_log_contains("snapshot written") {
        assert!(Instant::now() < deadline, "no snapshot written");
        std::thread::sleep(Duration::from_millis(50));
    }
    let good = std::fs::read(format!("{seen}/state")).unwrap();

    // Far more than 256 KiB of samples: the next snapshot cannot fit.
    let value = "x".repeat(200);
    let mut batch = String::new();
    for i in 0..5_000 {
        batch.push_str(&format!("qset big.{i} {value}\r\n"));
    }
    c.send(batch);
    assert_eq!(c.history("big.4999").len(), 1);
    let deadline = Instant::now() + T;
    while !server.process_log_contains("snapshot not written, the previous one is kept") {
        assert!(Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        server.log().contains("No space left on device"),
        "{}",
        server.log()
    );
    // The previous snapshot is there, whole, and nothing half-written lies beside it.
    assert_eq!(std::fs::read(format!("{seen}/state")).unwrap(), good);
    let mut left: Vec<String> = std::fs::read_dir(&seen)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    // Beside the snapshot: its write-ahead log, rotated for the snapshot that failed.
    assert_eq!(left, ["state", "state.wal", "state.wal.old"]);
    // The running server lost nothing, and the kept snapshot loads.
    assert_eq!(c.history("big.0").len(), 1);
    let copy = tempfile::tempdir().unwrap();
    let copy_state = copy.path().join("state");
    std::fs::write(&copy_state, &good).unwrap();
    let restored = SpudServer::start(&["--state", copy_state.to_str().unwrap()]);
    assert_eq!(
        restored.connect().history("before.full"),
        ["OK 1 1 kept".to_string()]
    );
}

trait LogExt {
    fn process_log_contains(&self, text: &str) -> bool;
}

impl LogExt for Process {
    fn process_log_contains(&self, text: &str) -> bool {
        self.log().contains(text)
    }
}

#[test]
fn deleting_the_config_while_running_changes_nothing_until_it_is_back() {
    let host = SpudHost::start(
        &["chaos"],
        "[[job]]\nname = \"steady\"\nplugin = \"chaos\"\ninterval = \"100ms\"\noptions = { mode = \"ok\" }\n",
    );
    host.wait_for("steady.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 3);
    let conf = host.dir.path().join("gatherer.toml");
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::remove_file(&conf).unwrap();
    let deadline = Instant::now() + T;
    while !host.process.log().contains("gatherer.toml")
        || !host.process.log().contains("No such file")
    {
        assert!(Instant::now() < deadline, "{}", host.process.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The job runs on, unchanged.
    let mut c = host.connect();
    let now: u64 = c.history("steady.tick")[0]
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    host.wait_for("steady.tick", T, |v| {
        v.parse::<u64>().unwrap_or(0) >= now + 5
    });
    // Back, with one more job: applied as any edit.
    std::fs::write(
        &conf,
        format!("{text}\n[[job]]\nname = \"back\"\nplugin = \"chaos\"\ninterval = \"100ms\"\noptions = {{ mode = \"ok\" }}\n"),
    )
    .unwrap();
    host.wait_for("back.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 2);
    let log = host.process.log();
    let deleted_line = log
        .lines()
        .find(|l| l.contains("No such file"))
        .unwrap_or("");
    println!("drill: config deleted: {deleted_line}");
}

/// Two connections pipeline `set`s (windows of 20) over keys of their own, each value one
/// more than the last, and note every value the server acknowledges, with when, until the
/// server is killed with SIGKILL after `run`. Returns, per key, the acknowledged values.
fn acknowledged_until_killed(
    server: &SpudServer,
    run: Duration,
) -> (Vec<Vec<(u64, Instant)>>, Instant) {
    use std::io::BufRead;
    const KEYS: usize = 20;
    let addr = server.addr;
    let writers: Vec<_> = (0..2)
        .map(|conn| {
            std::thread::spawn(move || {
                let mut acked = vec![Vec::new(); KEYS];
                let Ok(stream) = TcpStream::connect(addr) else {
                    return acked;
                };
                let mut out = stream.try_clone().unwrap();
                let mut replies = std::io::BufReader::new(stream);
                let mut line = String::new();
                for round in 0u64.. {
                    let mut batch = String::new();
                    for n in 0..20u64 {
                        let i = round * 20 + n;
                        batch.push_str(&format!("set w{conn}.k{} {i}\r\n", i % KEYS as u64));
                    }
                    if out.write_all(batch.as_bytes()).is_err() {
                        return acked;
                    }
                    for n in 0..20u64 {
                        line.clear();
                        match replies.read_line(&mut line) {
                            Ok(0) | Err(_) => return acked,
                            Ok(_) if line == "OK \r\n" => {
                                let i = round * 20 + n;
                                acked[(i % KEYS as u64) as usize].push((i, Instant::now()));
                            }
                            Ok(_) => panic!("unexpected reply {line:?}"),
                        }
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(run);
    server.process.signal("KILL");
    let killed = Instant::now();
    let mut all = Vec::new();
    for w in writers {
        all.extend(w.join().unwrap());
    }
    (all, killed)
}

/// For each key of `acked` (connection-major, as `acknowledged_until_killed` returns them),
/// the acknowledged values the restarted server lacks: any newer than the oldest sample it
/// keeps of the key (a key keeps 100, and a set sent but not yet acknowledged may be
/// among them), and the newest acknowledged one in any case.
fn missing_after_restart(
    c: &mut Client,
    acked: &[Vec<(u64, Instant)>],
) -> Vec<(String, u64, Instant)> {
    let mut missing = Vec::new();
    for (n, values) in acked.iter().enumerate() {
        let key = format!("w{}.k{}", n / 20, n % 20);
        let stored: std::collections::HashSet<u64> =
            samples(c, &key).into_iter().map(|(_, v)| v).collect();
        let oldest = stored.iter().min().copied().unwrap_or(0);
        for (i, (value, when)) in values.iter().enumerate() {
            let newest = i + 1 == values.len();
            if (*value >= oldest || newest) && !stored.contains(value) {
                missing.push((key.clone(), *value, *when));
            }
        }
    }
    missing
}

#[test]
fn kill_9_under_load_with_fsync_always_loses_no_acknowledged_set() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    // Snapshots every second: the log is rotated and compacted under the load too.
    let server = SpudServer::start(&[
        "--state",
        state,
        "--snapshot-every",
        "1",
        "--fsync",
        "always",
    ]);
    let (acked, _) = acknowledged_until_killed(&server, Duration::from_millis(2500));
    let total: usize = acked.iter().map(Vec::len).sum();
    assert!(total > 1000, "only {total} sets acknowledged");
    drop(server);
    let again = SpudServer::start(&["--state", state, "--fsync", "always"]);
    let missing = missing_after_restart(&mut again.connect(), &acked);
    assert!(
        missing.is_empty(),
        "{} acknowledged sets lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    println!("drill: kill -9 under load, fsync always: {total} sets acknowledged, 0 lost");
}

#[test]
fn kill_9_under_load_with_fsync_everysec_loses_at_most_the_last_second() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let server = SpudServer::start(&["--state", state, "--snapshot-every", "1"]);
    let (acked, killed) = acknowledged_until_killed(&server, Duration::from_millis(2500));
    let total: usize = acked.iter().map(Vec::len).sum();
    assert!(total > 1000, "only {total} sets acknowledged");
    drop(server);
    let again = SpudServer::start(&["--state", state]);
    let missing = missing_after_restart(&mut again.connect(), &acked);
    let older: Vec<_> = missing
        .iter()
        .filter(|(_, _, when)| killed.duration_since(*when) > Duration::from_secs(1))
        .collect();
    assert!(
        older.is_empty(),
        "lost sets older than a second: {:?}",
        &older[..older.len().min(5)]
    );
    println!(
        "drill: kill -9 under load, fsync everysec: {total} sets acknowledged, {} lost (all within the last second)",
        missing.len()
    );
}

#[test]
fn a_log_cut_mid_record_is_cut_back_and_the_rest_loads() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state_s = state.to_str().unwrap();
    let server = SpudServer::start(&["--state", state_s, "--fsync", "always"]);
    let mut c = server.connect();
    for i in 1..=10 {
        c.ask(&format!("set {i} cut.k {i}"), "\r\n");
    }
    server.process.signal("KILL");
    drop(server);
    let wal = dir.path().join("state.wal");
    let whole = std::fs::read(&wal).unwrap();
    std::fs::write(&wal, &whole[..whole.len() - 3]).unwrap();
    // `always`, so that the set after the cut is on disk once acknowledged.
    let again = SpudServer::start(&["--state", state_s, "--fsync", "always"]);
    let log = again.process.log();
    assert!(
        log.contains("a frame is cut short") && log.contains("cut off there"),
        "{log}"
    );
    let values: Vec<u64> = samples(&mut again.connect(), "cut.k")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, (1..=9).collect::<Vec<_>>());
    // It goes on logging after the cut.
    again.connect().ask("set 11 cut.k 11", "\r\n");
    again.process.signal("KILL");
    drop(again);
    let third = SpudServer::start(&["--state", state_s]);
    let values: Vec<u64> = samples(&mut third.connect(), "cut.k")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, [1, 2, 3, 4, 5, 6, 7, 8, 9, 11]);
}

#[test]
fn a_full_disk_while_appending_is_said_and_not_acknowledged_with_fsync_always() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let Some((server, addr)) = server_on_a_small_disk(&d, "--fsync always") else {
        spud_tests::skip(
            "a_full_disk_while_appending_is_said_and_not_acknowledged_with_fsync_always",
            "user namespaces are not allowed here, so no private small disk",
        );
        return;
    };
    let mut c = Client::connect(addr);
    assert_eq!(c.ask("set 1 before.full kept", "\r\n"), "OK \r\n");
    // 200-byte values until the 256 KiB disk is full.
    let value = "x".repeat(200);
    let mut refused = None;
    for i in 0..5_000 {
        let reply = c.ask(&format!("set big.{i} {value}"), "\r\n");
        if reply != "OK \r\n" {
            refused = Some((i, reply));
            break;
        }
    }
    let (at, reply) = refused.expect("the disk never filled");
    assert!(reply.starts_with("ERR not_durable "), "{reply}");
    server.wait_log("No space left on device", T);
    // It keeps serving from memory: what it refused to acknowledge is there, and so is
    // everything before; later sets are refused too, not acknowledged.
    assert_eq!(c.history(&format!("big.{at}")).len(), 1);
    assert_eq!(c.history("before.full"), ["OK 1 1 kept".to_string()]);
    // While the disk stays full, such sets stay refused; a qset is answered too.
    for i in 0..5 {
        let reply = c.ask(&format!("set later.{i} {value}"), "\r\n");
        assert!(reply.starts_with("ERR not_durable"), "{reply}");
    }
    let reply = c.ask(
        &format!("qset later.q {value}\r\nget later.q"),
        "OK done\r\n",
    );
    assert!(reply.starts_with("ERR not_durable "), "{reply}");
    println!("drill: full disk with fsync always: set {at} refused with ERR not_durable; served from memory");
}

/// Where a host with this pid keeps its private plugin copies, if anywhere.
fn copies_of(pid: u32) -> Option<std::path::PathBuf> {
    [
        std::env::var_os("XDG_RUNTIME_DIR").map(std::path::PathBuf::from),
        Some("/dev/shm".into()),
        Some(std::env::temp_dir()),
    ]
    .into_iter()
    .flatten()
    .map(|place| place.join(format!("spud-host-{pid}")))
    .find(|dir| dir.exists())
}

#[test]
fn plugin_copies_in_memory_do_not_outlive_their_host() {
    let config = "[[job]]\nname = \"t\"\nplugin = \"test\"\ninterval = \"100ms\"\n";
    let killed = SpudHost::start(&["test"], config);
    killed.wait_for("test.t", T, |_| true);
    let pid = killed.process.pid();
    let left = copies_of(pid).expect("the host keeps a private copy of its plugin");
    killed.process.signal("KILL");
    drop(killed);
    assert!(left.exists(), "a killed host cannot clean up after itself");

    // The next host removes what a host that is gone left; its own go when it stops.
    let mut next = SpudHost::start(&["test"], config);
    next.wait_for("test.t", T, |_| true);
    assert!(!left.exists(), "{} is still there", left.display());
    let pid = next.process.pid();
    let own = copies_of(pid).expect("its own copy");
    next.process.signal("TERM");
    next.process.wait(T).expect("it stops");
    assert!(
        !own.exists(),
        "{} is still there after a clean stop",
        own.display()
    );
}

/// Every tick of `key` the server holds.
fn ticks(c: &mut Client, key: &str) -> std::collections::BTreeSet<u64> {
    samples(c, key).into_iter().map(|(_, v)| v).collect()
}

#[test]
fn switching_the_remote_server_by_a_config_edit_loses_nothing() {
    // Two central servers that keep every tick of this test.
    let a = SpudServer::start(&["--history", "20000", "--no-http"]);
    let b = SpudServer::start(&["--history", "20000", "--no-http"]);
    const JOBS: usize = 20;
    let jobs: String = (0..JOBS)
        .map(|i| {
            format!("[[job]]\nname = \"load.{i}\"\nplugin = \"chaos\"\ninterval = \"10ms\"\noptions = {{ mode = \"ok\" }}\n\n")
        })
        .collect();
    let config = |addr: std::net::SocketAddr| format!("[server]\nremote = \"{addr}\"\n\n{jobs}");
    let mut host = SpudHost::start(&["chaos"], &config(a.addr));
    let (mut ca, mut cb) = (a.connect(), b.connect());
    let wait = |c: &mut Client, at_least: usize| {
        let deadline = Instant::now() + T;
        while (0..JOBS).any(|i| ticks(c, &format!("load.{i}.tick")).len() < at_least) {
            assert!(Instant::now() < deadline, "{}", host.process.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait(&mut ca, 100);

    // The edit: another server, while 2,000 samples a second flow.
    let conf = host.dir.path().join("gatherer.toml");
    let tmp = host.dir.path().join(".gatherer.toml.tmp");
    std::fs::write(&tmp, config(b.addr)).unwrap();
    std::fs::rename(&tmp, &conf).unwrap();
    host.process.wait_log("switching from", T);
    wait(&mut cb, 100);
    let log = host.process.log();
    assert!(
        !log.contains("take effect when") && !log.contains("takes effect when"),
        "{log}"
    );

    // Stopped: the host sends what it holds, then every tick is at one server or the other.
    host.process.signal("TERM");
    assert!(host.process.wait(T).expect("stops on SIGTERM").success());
    let mut switched = 0;
    for i in 0..JOBS {
        let key = format!("load.{i}.tick");
        let (at_a, at_b) = (ticks(&mut ca, &key), ticks(&mut cb, &key));
        let last = *at_b.last().unwrap();
        let all: std::collections::BTreeSet<u64> = at_a.union(&at_b).copied().collect();
        let missing: Vec<u64> = (1..=last).filter(|t| !all.contains(t)).collect();
        assert!(
            missing.is_empty(),
            "{key}: ticks {missing:?} reached neither server"
        );
        switched += usize::from(*at_a.last().unwrap() < last);
    }
    assert_eq!(
        switched, JOBS,
        "every job's later ticks went to the new server"
    );
}
