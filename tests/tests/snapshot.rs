//! Restart loses nothing: snapshots written on shutdown and periodically, loaded on start;
//! a corrupt one is reported, moved aside and never overwritten.

use std::time::Duration;

use spud_tests::SpudServer;

const T: Duration = Duration::from_secs(20);

fn fill(server: &SpudServer) {
    let mut c = server.connect();
    let mut batch = String::new();
    for i in 0..120 {
        batch.push_str(&format!("qset {} snap.n {i}\r\n", 1000 + i));
    }
    batch.push_str("qset 5 snap.text  two  spaces \r\n");
    c.send(&batch);
    assert_eq!(c.get("snap.n").len(), 100);
}

fn check(server: &SpudServer) {
    let mut c = server.connect();
    let h = c.get("snap.n");
    assert_eq!(h.len(), 100);
    assert_eq!(h[0], "OK 1 1119 119");
    assert_eq!(h[99], "OK 100 1020 20");
    assert_eq!(c.get("snap.text"), ["OK 1 5 two  spaces "]);
}

#[test]
fn sigterm_and_shutdown_both_snapshot_and_restart_restores() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();

    let mut first = SpudServer::start(&["--state", state]);
    fill(&first);
    first.process.signal("TERM");
    assert!(first.process.wait(T).expect("exits on SIGTERM").success());

    let mut second = SpudServer::start(&["--state", state]);
    assert!(
        second.process.log().contains("loaded"),
        "{}",
        second.process.log()
    );
    check(&second);
    second.connect().send("set 1 snap.more 1\r\nshutdown\r\n");
    assert!(second.process.wait(T).expect("exits on shutdown").success());

    let third = SpudServer::start(&["--state", state]);
    check(&third);
    assert_eq!(third.connect().get("snap.more"), ["OK 1 1 1"]);
}

#[test]
fn periodic_snapshots_survive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state_s = state.to_str().unwrap();
    let first = SpudServer::start(&["--state", state_s, "--snapshot-every", "1"]);
    fill(&first);
    let deadline = std::time::Instant::now() + T;
    while !first.process.log().contains("snapshot written: 101") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            first.process.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    first.process.signal("KILL");
    drop(first);
    let second = SpudServer::start(&["--state", state_s]);
    check(&second);
}

#[test]
fn a_corrupt_snapshot_is_moved_aside_and_the_server_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state_s = state.to_str().unwrap();
    let mut first = SpudServer::start(&["--state", state_s]);
    fill(&first);
    first.process.signal("TERM");
    first.process.wait(T).unwrap();
    let whole = std::fs::read(&state).unwrap();
    std::fs::write(&state, &whole[..whole.len() / 2]).unwrap();

    let mut second = SpudServer::start(&["--state", state_s]);
    let log = second.process.log();
    let complaint: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("not a valid snapshot"))
        .collect();
    assert_eq!(complaint.len(), 1, "{log}");
    assert!(
        complaint[0].contains("cut short") && complaint[0].contains("moved it to"),
        "{log}"
    );
    let mut c = second.connect();
    assert!(c.get("snap.*").is_empty());

    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read(aside[0].path()).unwrap(),
        &whole[..whole.len() / 2]
    );

    // Its own snapshot goes to the usual place; the bad one is untouched.
    c.send("set 1 fresh 1\r\n");
    c.read_until_suffix(b"OK \r\n", T);
    second.process.signal("TERM");
    second.process.wait(T).unwrap();
    let third = SpudServer::start(&["--state", state_s]);
    assert_eq!(third.connect().get("fresh"), ["OK 1 1 1"]);
    assert_eq!(
        std::fs::read(aside[0].path()).unwrap(),
        &whole[..whole.len() / 2]
    );
}

#[test]
fn shutdown_flushes_replies_still_owed() {
    let mut server = SpudServer::start(&[]);
    let mut reader = server.connect();
    let mut batch = String::new();
    for i in 0..5000 {
        batch.push_str(&format!("qset 1 owed.{i} {i}\r\n"));
    }
    batch.push_str("get owed.*\r\n");
    reader.send(&batch);
    std::thread::sleep(Duration::from_millis(200));
    server.connect().send("shutdown\r\n");
    let got = reader.read_to_close(T);
    assert!(got.ends_with(b"OK done\r\n"), "reply was cut short");
    assert_eq!(got.split(|&b| b == b'\n').count(), 5002);
    assert!(server.process.wait(T).unwrap().success());
}
