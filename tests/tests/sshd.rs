//! The replicator through a real OpenSSH `sshd`, started as a daemon of the test on a
//! loopback port with the project's `conf/sshd_config` (its forced command) and
//! `conf/authorized_keys`: sets are copied through it; sshd killed and restarted
//! mid-stream, the replicator reconnects and nothing set on the source is missing on the
//! target; a key not in authorized_keys is refused; a command the client gives never runs.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spud_tests::sshd::{ClientKey, Sshd};
use spud_tests::{binary, SpudServer};

const T: Duration = Duration::from_secs(60);

fn ssh(sshd: &Sshd, key: &ClientKey, command: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let words = shell_split(&sshd.ssh(key));
    let mut child = Command::new(&words[0])
        .args(&words[1..])
        .args(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh runs (scripts/setup-test-deps installs openssh-client)");
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

fn shell_split(command: &str) -> Vec<String> {
    command.split_whitespace().map(str::to_string).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_replicator_goes_through_sshd_and_loses_nothing_when_sshd_restarts() {
    let source = SpudServer::start(&[]);
    let dest = SpudServer::start(&[]);
    let keys = tempfile::tempdir().unwrap();
    let allowed = ClientKey::new(keys.path(), "replicator");
    let stranger = ClientKey::new(keys.path(), "stranger");
    let conf = keys.path().join("cmdshell.conf");
    std::fs::write(&conf, format!("replicator = {}\n", source.addr)).unwrap();
    let mut sshd = Sshd::start(&allowed, &conf);

    // The forced command connects the key's SPUD_COMMAND to its server.
    let out = ssh(&sshd, &allowed, &[], "set 1 via.ssh yes\r\nget via.ssh\r\n");
    assert_eq!(
        text(&out.stdout),
        "OK \r\nOK 1 1 yes\r\nOK done\r\n",
        "{}",
        text(&out.stderr)
    );
    // A key not in authorized_keys is refused.
    let out = ssh(&sshd, &stranger, &[], "get via.ssh\r\n");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("Permission denied (publickey)"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    // A command the client gives never runs, however it is spelled.
    for command in [
        &["cat", "/etc/passwd"][..],
        &["sh", "-c", "id"],
        &["--", "/bin/sh"],
    ] {
        let out = ssh(&sshd, &allowed, command, "");
        let said = text(&out.stdout) + &text(&out.stderr);
        assert!(
            !said.contains("root:x:0") && !said.contains("uid="),
            "{command:?}: {said}"
        );
        assert!(said.contains("runs no commands"), "{command:?}: {said}");
        assert_eq!(out.status.code(), Some(1), "{command:?}: {said}");
    }

    let mut replicate = Command::new(binary("spud"))
        .args(["replicate", "--from-cmd", &sshd.ssh(&allowed)])
        .args(["--to", &dest.addr.to_string(), "--match", "rep.*"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    source.wait_subscribed("rep\\..*", T);

    // Sets go on all along; sshd dies and comes back in the middle of them.
    const N: usize = 300;
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let setter = {
        let (done, stop) = (Arc::clone(&done), Arc::clone(&stop));
        let mut c = source.connect();
        std::thread::spawn(move || {
            for i in 0..N {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                c.ask(&format!("set rep.k{i} v{i}"), "\r\n");
                done.store(i + 1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    while done.load(Ordering::Relaxed) < 60 {
        std::thread::sleep(Duration::from_millis(10));
    }
    sshd.kill();
    let killed_at = done.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1500));
    sshd.restart();
    setter.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(killed_at < N / 2, "the kill came too late to be mid-stream");

    let mut d = dest.connect();
    let deadline = Instant::now() + T;
    let missing = loop {
        let missing: Vec<usize> = (0..N)
            .filter(|i| {
                d.history(&format!("rep.k{i}"))
                    .first()
                    .is_none_or(|l| !l.ends_with(&format!(" v{i}")))
            })
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    replicate.kill().unwrap();
    let _ = replicate.wait();
    let log = {
        use std::io::Read;
        let mut log = String::new();
        replicate
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        log
    };
    assert!(
        missing.is_empty(),
        "missing on the target: {missing:?}\nreplicate said:\n{log}"
    );
    // Each exactly once, at its original time.
    for i in 0..N {
        assert_eq!(d.history(&format!("rep.k{i}")).len(), 1, "rep.k{i}");
    }
    assert!(log.contains("subscribing again"), "{log}");
    assert!(log.contains("caught up"), "{log}");
}
