//! The store on disk under load: the write-ahead log stays within its bound while sets go
//! on, kill -9 loses nothing acknowledged, a restart serves again quickly, and the default
//! config keeps its state across a restart.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use spud_tests::{workspace_root, Client, SpudHost};

const KEYS: usize = 100_000;
const CONNECTIONS: usize = 4;
const T: Duration = Duration::from_secs(30);

/// What the log's bound is for a snapshot of `bytes` (as `start::compaction` sets it).
fn bound(snapshot_bytes: u64) -> u64 {
    (2 * snapshot_bytes).max(64 << 20)
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Sets every key of its share round after round (`set drill.K ROUND`, pipelined a round at a
/// time) until `stop`; returns, per key, the last round the server acknowledged.
fn load(addr: SocketAddr, share: std::ops::Range<usize>, stop: Arc<AtomicBool>) -> Vec<u64> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(T)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut acked = vec![0u64; share.len()];
    let mut batch = Vec::new();
    let mut line = String::new();
    for round in 1.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        batch.clear();
        for k in share.clone() {
            writeln!(batch, "set drill.{k} {round}\r").unwrap();
        }
        if writer.write_all(&batch).is_err() {
            break;
        }
        for slot in acked.iter_mut() {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(n) if n > 0 && line == "OK \r\n" => *slot = round,
                _ => return acked,
            }
        }
    }
    acked
}

#[test]
fn under_load_the_log_stays_bounded_and_kill_9_loses_nothing_acknowledged() {
    // Optimized: the restart's time is a figure only there.
    let spud_host = spud_tests::release_binary("spud-host");
    let host = SpudHost::start_binary_in(
        &spud_host,
        SpudHost::prepare(
            &[],
            "[server]\nlisten = \"127.0.0.1:0\"\nstate = \"data/spud.state\"\n\
         fsync = \"always\"\nsnapshot_every = \"2s\"\n",
        ),
    );
    let state = host.dir.path().join("data/spud.state");
    let wal = host.dir.path().join("data/spud.state.wal");
    let addr = host.addr.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let per = KEYS / CONNECTIONS;
    let loaders: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || load(addr, i * per..(i + 1) * per, stop))
        })
        .collect();
    // Several snapshot intervals, the log's length sampled meanwhile beside its bound.
    let started = Instant::now();
    let (mut peak, mut peak_bound, mut snapshots_seen) = (0u64, 0u64, 0);
    let mut last_snapshot = 0;
    while started.elapsed() < Duration::from_secs(9) {
        let snapshot = len(&state);
        if snapshot != last_snapshot {
            snapshots_seen += 1;
            last_snapshot = snapshot;
        }
        let log = len(&wal);
        if log > peak {
            (peak, peak_bound) = (log, bound(snapshot));
        }
        thread::sleep(Duration::from_millis(20));
    }
    // kill -9 while the sets go on.
    host.process.signal("KILL");
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<u64> = loaders
        .into_iter()
        .flat_map(|l| l.join().unwrap())
        .collect();
    let SpudHost { process, dir, .. } = host;
    drop(process);
    let rounds = *acked.iter().min().unwrap();
    println!(
        "log peak {} MiB beside its bound {} MiB; {snapshots_seen} snapshots; {rounds}+ rounds of {KEYS} keys acknowledged",
        peak >> 20,
        peak_bound >> 20
    );
    assert!(snapshots_seen >= 3, "a snapshot every interval under load");
    assert!(rounds >= 2, "the load ran");
    assert!(
        peak <= peak_bound + peak_bound / 4,
        "the log reached {peak} bytes, its bound {peak_bound}"
    );

    // Restart: serving again quickly, with every acknowledged set.
    let restarting = Instant::now();
    let again = SpudHost::start_binary_in(&spud_host, dir);
    let restart = restarting.elapsed();
    println!("restart at {KEYS} keys: {restart:?}");
    assert!(
        restart < Duration::from_secs(2),
        "restart took {restart:?}: {}",
        again.process.log()
    );
    let mut c = again.connect();
    let newest: std::collections::HashMap<usize, u64> = c
        .get("drill.")
        .iter()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            let (_, key, _, value) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            Some((
                key.strip_prefix("drill.")?.parse().ok()?,
                value.parse().ok()?,
            ))
        })
        .collect();
    assert_eq!(newest.len(), KEYS);
    for (k, &round) in acked.iter().enumerate() {
        assert!(
            newest[&k] >= round,
            "drill.{k}: acknowledged round {round}, restored {}",
            newest[&k]
        );
    }
    // And no round missing in between: a sample of keys holds every round up to its newest.
    for k in (0..KEYS).step_by(KEYS / 50) {
        let rounds: Vec<u64> = c
            .history(&format!("drill.{k}"))
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        let expected: Vec<u64> = (1..=newest[&k]).rev().take(100).collect();
        assert_eq!(rounds, expected, "drill.{k}");
    }
}

/// The README's first command with the default config, twice: what was set the first time is
/// there the second, with its history.
#[test]
fn the_default_config_keeps_values_and_history_across_a_restart() {
    let default = std::fs::read_to_string(workspace_root().join("conf/gatherer.toml")).unwrap();
    assert!(
        default.contains("state = "),
        "the default config keeps state"
    );
    // The same file, on ports of its own (tests run side by side).
    let config = default
        .replace("127.0.0.1:9107", "127.0.0.1:0")
        .replace("[server]\n", "[server]\nhttp = \"off\"\n")
        .replace("127.0.0.1:8125", "127.0.0.1:0")
        .replace("127.0.0.1:2003", "127.0.0.1:0");
    spud_tests::strict_umask();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("conf")).unwrap();
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    for name in ["test", "procstat", "statsd", "graphite"] {
        spud_tests::install_plugin(
            &spud_tests::plugin(name),
            &dir.path().join(format!("plugins/{name}.so")),
        );
    }
    std::fs::write(dir.path().join("conf/gatherer.toml"), config).unwrap();
    let start = || {
        let mut cmd = std::process::Command::new(spud_tests::binary("spud-host"));
        cmd.current_dir(dir.path())
            .args(["--conf", "conf/gatherer.toml"]);
        let (process, _) = spud_tests::Process::start(cmd, "running ", T);
        let addr: SocketAddr = process
            .log()
            .lines()
            .find_map(|l| l.split("stat server listening on ").nth(1))
            .unwrap()
            .parse()
            .unwrap();
        (process, Client::connect(addr))
    };

    let (mut first, mut c) = start();
    assert!(
        dir.path().join("data").is_dir(),
        "data/ made on first start"
    );
    for i in 1..=3 {
        c.send(format!("qset 100{i} kept.value {i}\r\n"));
    }
    assert_eq!(c.history("kept.value").len(), 3);
    first.signal("TERM");
    assert!(first.wait(T).expect("stops on SIGTERM").success());

    let (_second, mut c) = start();
    assert_eq!(
        c.history("kept.value"),
        ["OK 1 1003 3", "OK 2 1002 2", "OK 3 1001 1"]
    );
    assert!(
        !c.history("test.heartbeat").is_empty(),
        "the host's own samples are kept too"
    );
}
