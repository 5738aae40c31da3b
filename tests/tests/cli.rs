//! The `spud` command end to end, against the real `spud-server` and `spud-host`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use spud_tests::{binary, free_port, SpudHost, SpudServer};

const T: Duration = Duration::from_secs(20);

fn spud(server: &str, args: &[&str]) -> Output {
    Command::new(binary("spud"))
        .args(["--server", server])
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn get_set_json_uptime_list_and_exit_codes() {
    let server = SpudServer::start(&[]);
    let addr = server.addr.to_string();
    assert!(
        spud(&addr, &["set", "--time", "1700000000", "web1.load", "0.42"])
            .status
            .success()
    );
    assert!(
        spud(&addr, &["set", "--time", "1700000005", "web1.load", "0.50"])
            .status
            .success()
    );
    assert!(spud(
        &addr,
        &["set", "--time", "1700000001", "web2.load", "1 2 3"]
    )
    .status
    .success());

    let out = spud(&addr, &["get", "web1.load"]);
    assert_eq!(
        text(&out.stdout),
        "2023-11-14T22:13:25Z  0.50\n2023-11-14T22:13:20Z  0.42\n"
    );
    let out = spud(&addr, &["get", "web*.load"]);
    assert_eq!(
        text(&out.stdout),
        "web1.load  2023-11-14T22:13:25Z  0.50\nweb2.load  2023-11-14T22:13:21Z  1 2 3\n"
    );
    let out = spud(&addr, &["get", "--json", "web2.load"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{ "time": 1700000001u64, "value": "1 2 3" }])
    );

    let out = spud(&addr, &["get", "nosuchkey"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nosuchkey: no such key"));
    // A key with a dot that exists nowhere is no such key too, not an empty pattern: a script
    // polling for it must not be fooled (the server takes it as a pattern).
    let out = spud(&addr, &["get", "no.such.key"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).is_empty());
    assert!(
        text(&out.stderr).contains("no.such.key: no such key (as a pattern, which matches anywhere in a key, it matches 0 keys"),
        "{}",
        text(&out.stderr)
    );
    // A part of a key is not the key: the message says what it would match, and how.
    let out = spud(&addr, &["get", "load"]);
    assert_eq!(out.status.code(), Some(1));
    let out = spud(&addr, &["get", "web1."]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("it matches 1 key: write web1.* to list them"),
        "{}",
        text(&out.stderr)
    );
    let out = spud(&addr, &["get", "web1.*"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(spud(&addr, &["set", "bad key", "x"]).status.code(), Some(2));
    let out = spud(&addr, &["uptime"]);
    assert!(
        text(&out.stdout).starts_with("stats-server up 0 days"),
        "{}",
        text(&out.stdout)
    );
    assert!(spud(&addr, &["list"]).status.success());

    let nowhere = free_port().to_string();
    let out = spud(&nowhere, &["get", "x"]);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        text(&out.stderr).contains("cannot talk to the stat server"),
        "{}",
        text(&out.stderr)
    );
    // The environment names the server too.
    let out = Command::new(binary("spud"))
        .env("SPUD_SERVER", &addr)
        .args(["get", "web1.load"])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn sub_streams_sets_as_json_lines() {
    let server = SpudServer::start(&[]);
    let addr = server.addr.to_string();
    let mut child = Command::new(binary("spud"))
        .args(["--server", &addr, "sub", "--json", "cpu.*", "mem.*"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Wait for both subscriptions to exist, then set.
    let deadline = Instant::now() + T;
    while !text(&spud(&addr, &["list"]).stdout).contains("mem") {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    spud(&addr, &["set", "--time", "5", "cpu.user", "12"]);
    spud(&addr, &["set", "--time", "6", "disk.x", "1"]);
    spud(&addr, &["set", "--time", "7", "mem.free", "3"]);
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let second: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        first,
        serde_json::json!({ "time": 5, "key": "cpu.user", "value": "12" })
    );
    assert_eq!(
        second,
        serde_json::json!({ "time": 7, "key": "mem.free", "value": "3" })
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn host_control_verbs() {
    let host = SpudHost::start(
        &["test"],
        "[[job]]\nname = \"hb\"\nplugin = \"test\"\ninterval = \"1s\"\n",
    );
    let addr = host.addr.unwrap().to_string();
    let out = spud(&addr, &["jobs"]);
    assert!(
        text(&out.stdout).starts_with("hb running plugin=test"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(text(&spud(&addr, &["pause", "hb"]).stdout), "paused hb\n");
    assert!(text(&spud(&addr, &["jobs"]).stdout).starts_with("hb paused"));
    assert_eq!(text(&spud(&addr, &["resume", "hb"]).stdout), "resumed hb\n");
    assert_eq!(text(&spud(&addr, &["run", "hb"]).stdout), "running hb\n");
    assert_eq!(text(&spud(&addr, &["reload"]).stdout), "reloading\n");
    let out = spud(&addr, &["pause", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not_found"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn wrap_records_a_failing_command_with_its_empty_lines() {
    let server = SpudServer::start(&[]);
    let addr = server.addr.to_string();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("job.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho first\necho\necho '  indented'\necho oops >&2\nexit 3\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();

    let out = spud(
        &addr,
        &["wrap", "-k", "cron.backup", "--", script.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(3), "exits with the command's code");
    assert_eq!(
        text(&out.stdout),
        "first\n\n  indented\n",
        "output passes through"
    );
    assert_eq!(text(&out.stderr), "oops\n");

    let mut c = server.connect();
    let value = |l: &String| l.splitn(4, ' ').nth(3).unwrap_or("").to_string();
    let status: Vec<String> = c.history("cron.backup.status").iter().map(value).collect();
    assert_eq!(status, ["failed", "started"]);
    let mut output: Vec<String> = c.history("cron.backup.output").iter().map(value).collect();
    output.reverse();
    output.sort_by_key(|l| l == "oops"); // stderr's line may come before or after the others
                                         // Empty lines are kept (as one space); leading blanks cannot cross the protocol, whose
                                         // blanks after the key separate it from the value.
    assert_eq!(output, ["first", " ", "indented", "oops"]);
    assert_eq!(
        c.history("cron.backup.exit_code")
            .iter()
            .map(value)
            .collect::<Vec<_>>(),
        ["3"]
    );
    let duration: f64 = value(&c.history("cron.backup.duration")[0])
        .parse()
        .unwrap();
    assert!(duration < 10.0);
}

#[test]
fn wrap_runs_the_command_even_when_the_server_is_away() {
    let nowhere = free_port().to_string();
    let out = spud(
        &nowhere,
        &["wrap", "-k", "x", "--", "sh", "-c", "echo hello; exit 7"],
    );
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(text(&out.stdout), "hello\n");
    assert!(
        text(&out.stderr).contains("samples were not recorded"),
        "{}",
        text(&out.stderr)
    );
    let out = spud(&nowhere, &["wrap", "-k", "x", "--", "/no/such/program"]);
    assert_eq!(out.status.code(), Some(127));
}

#[test]
fn cmdshell_connects_the_configured_command_and_refuses_the_rest() {
    let server = SpudServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("cmdshell.conf");
    std::fs::write(
        &conf,
        format!(
            "# which command reaches which server\nreplicator = {}\n",
            server.addr
        ),
    )
    .unwrap();
    let shell = |env: Option<&str>, args: &[&str], input: &str| {
        let mut cmd = Command::new(binary("spud"));
        cmd.args(["cmdshell", "--conf", conf.to_str().unwrap()])
            .args(args)
            .env_remove("SSH_ORIGINAL_COMMAND")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match env {
            Some(e) => cmd.env("SPUD_COMMAND", e),
            None => cmd.env_remove("SPUD_COMMAND"),
        };
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = shell(
        Some("replicator"),
        &[],
        "set 1 via.shell yes\r\nget via.shell\r\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "OK \r\nOK 1 1 yes\r\nOK done\r\n");

    let out = shell(Some("golive"), &[], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no command named \"golive\" is configured"),
        "{}",
        text(&out.stderr)
    );
    let out = shell(None, &[], "");
    assert_eq!(out.status.code(), Some(1));
    let out = shell(Some("replicator"), &["-c", "cat /etc/passwd"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("runs no commands"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn replicate_through_cmdshell_under_a_pty_survives_the_source_restarting() {
    // util-linux's `script` gives the session a pty (scripts/setup-test-deps installs it).
    assert!(
        Command::new("script").arg("--version").output().is_ok(),
        "util-linux `script` is missing: run scripts/setup-test-deps"
    );
    let source = SpudServer::start(&[]);
    let source_addr = source.addr;
    let dest = SpudServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("cmdshell.conf");
    std::fs::write(&conf, format!("replicator = {source_addr}\n")).unwrap();
    // What `ssh -tt spud@border` would be: cmdshell behind a pseudo-terminal.
    let transport = format!(
        "script -qfec \"{} cmdshell --conf {}\" /dev/null",
        binary("spud").display(),
        conf.display()
    );
    let mut replicate = Command::new(binary("spud"))
        .args([
            "replicate",
            "--from-cmd",
            &transport,
            "--to",
            &dest.addr.to_string(),
            "--match",
            "rep.*",
        ])
        .env("SPUD_COMMAND", "replicator")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    source.wait_subscribed("rep\\..*", T);
    let mut s = source.connect();
    s.ask("set 100 rep.a one", "\r\n");
    s.ask("set 101 other.b skipped", "\r\n");
    s.ask("set 102 rep.c with  inner blanks", "\r\n");
    let mut d = dest.connect();
    let deadline = Instant::now() + T;
    while d
        .history("rep.c")
        .first()
        .is_none_or(|l| l.starts_with("ERR"))
    {
        assert!(Instant::now() < deadline, "nothing replicated");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Original times, values intact: no carriage return from the pty.
    assert_eq!(d.history("rep.a"), ["OK 1 100 one"]);
    assert_eq!(d.history("rep.c"), ["OK 1 102 with  inner blanks"]);
    // Not matched, not copied (a missing key with a dot reads as an empty pattern answer).
    assert!(d.history("other.b").is_empty());

    // The source dies and comes back: replicate subscribes again by itself.
    source.process.signal("KILL");
    drop(source);
    std::thread::sleep(Duration::from_millis(300));
    let again = SpudServer::start(&["--listen", &source_addr.to_string()]);
    again.wait_subscribed("rep\\..*", T);
    again.connect().ask("set 200 rep.a two", "\r\n");
    let deadline = Instant::now() + T;
    while d.history("rep.a").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "nothing replicated after the restart"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(d.history("rep.a"), ["OK 1 200 two", "OK 2 100 one"]);
    // Its own figures arrive at the destination.
    let deadline = Instant::now() + T;
    while d
        .history("replicate.received")
        .first()
        .is_none_or(|l| !l.ends_with(" 3"))
    {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            d.history("replicate.received")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    replicate.kill().unwrap();
    replicate.wait().unwrap();
}

/// `rrdtool fetch FILE AVERAGE` over [from, to]: (time, value) rows, NaN where unknown.
/// Each row is the average of the 5 s ending at its time.
fn rrd_fetch(file: &std::path::Path, from: u64, to: u64) -> Vec<(u64, f64)> {
    rrd_fetch_via(file, from, to, None)
}

/// `rrd_fetch`, through rrdcached at `daemon` when given (which writes what it holds first).
fn rrd_fetch_via(
    file: &std::path::Path,
    from: u64,
    to: u64,
    daemon: Option<&str>,
) -> Vec<(u64, f64)> {
    let out = Command::new("rrdtool")
        .arg("fetch")
        .arg(file)
        .args(daemon.map(|d| format!("--daemon={d}")))
        .args([
            "AVERAGE",
            "-r",
            "5",
            "-s",
            &from.to_string(),
            "-e",
            &to.to_string(),
        ])
        .output()
        .expect("rrdtool runs");
    assert!(out.status.success(), "rrdtool fetch: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (t, v) = l.split_once(':')?;
            Some((t.trim().parse().ok()?, v.trim().parse().unwrap_or(f64::NAN)))
        })
        .filter(|&(t, _)| t <= to) // rrdtool adds the row that ends after `to`
        .collect()
}

fn rrdtool_installed() -> bool {
    Command::new("rrdtool").output().is_ok()
}

#[test]
fn archive_backfills_streams_and_resumes_into_files_rrdtool_reads() {
    assert!(
        rrdtool_installed(),
        "rrdtool is missing: scripts/setup-test-deps installs it"
    );
    let server = SpudServer::start(&[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t0 = (now - 900) / 5 * 5;
    // Stored before the archive starts: 100 seconds of three keys, one of them not numeric.
    let mut c = server.connect();
    let mut batch = String::new();
    for i in 0..100 {
        let t = t0 + i;
        batch += &format!(
            "qset {t} web:1.rps 42\r\nqset {t} disk-sda.util 7.5\r\nqset {t} web:1.status ok\r\n"
        );
    }
    c.send(&batch);
    c.ask("uptime", "OK done\r\n");

    let dir = tempfile::tempdir().unwrap();
    let archive = |ready: &str| {
        let mut cmd = Command::new(binary("spud"));
        cmd.args([
            "--server",
            &server.addr.to_string(),
            "archive",
            "--flush",
            "1s",
        ])
        .arg("--dir")
        .arg(dir.path())
        .args(["--match", "web|disk"]);
        spud_tests::Process::start(cmd, ready, T)
    };
    let (mut first, line) = archive("back-filled");
    assert!(
        line.contains("200 stored samples of 3 keys")
            && line.contains("wrote 200 samples to 2 files (2 new)"),
        "{line}"
    );
    // Live samples, with their own times, a few seconds' worth in one second.
    for i in 0..30 {
        let t = t0 + 200 + i;
        c.send(format!(
            "qset {t} web:1.rps 50\r\nqset {t} web:1.rps 60\r\n"
        ));
    }
    c.ask("uptime", "OK done\r\n");
    let deadline = Instant::now() + T;
    while !first.log().contains("wrote 30 samples to 1 files") {
        assert!(Instant::now() < deadline, "{}", first.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    first.signal("TERM");
    assert!(
        first.wait(T).is_some_and(|s| s.success()),
        "{}",
        first.log()
    );

    // The original's names (`:` → `_`); nothing for a value that is not a number.
    let web = dir.path().join("web_1.rps");
    let disk = dir.path().join("disk-sda.util");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["disk-sda.util", "web_1.rps"]);

    // Stock rrdtool reads the back-fill and the stream: full 5 s rows hold the value, and
    // of two values in one second the later one counts.
    let rows = rrd_fetch(&web, t0 + 10, t0 + 90);
    assert!(rows.len() >= 16, "{rows:?}");
    for (t, v) in rows {
        assert_eq!(v, 42.0, "web at {t}");
    }
    for (t, v) in rrd_fetch(&disk, t0 + 10, t0 + 90) {
        assert_eq!(v, 7.5, "disk at {t}");
    }
    let rows = rrd_fetch(&web, t0 + 210, t0 + 225);
    assert!(rows.len() >= 3, "{rows:?}");
    for (t, v) in rows {
        assert_eq!(v, 60.0, "web at t0 + {}", t - t0);
    }

    // The original's layout.
    let info = Command::new("rrdtool")
        .arg("info")
        .arg(&web)
        .output()
        .unwrap();
    let info = text(&info.stdout);
    for want in [
        "step = 5",
        "ds[val].type = \"GAUGE\"",
        "ds[val].minimal_heartbeat = 10",
        "rra[0].rows = 1440",
        "rra[1].pdp_per_row = 60",
        "rra[2].pdp_per_row = 360",
        "rra[3].rows = 720",
        "rra[4].pdp_per_row = 17280",
        "rra[5].pdp_per_row = 120960",
        "rra[5].rows = 520",
        // Beside the original's averages, new files keep the minimum and the maximum.
        "rra[0].cf = \"AVERAGE\"",
        "rra[6].cf = \"MIN\"",
        "rra[6].rows = 1440",
        "rra[12].cf = \"MAX\"",
        "rra[17].pdp_per_row = 120960",
    ] {
        assert!(info.contains(want), "{want} missing in:\n{info}");
    }
    assert!(!info.contains("rra[18]"));
    // And graphs.
    let png = dir.path().join("graph.png");
    let graph = Command::new("rrdtool")
        .arg("graph")
        .arg(&png)
        .args(["-s", &t0.to_string(), "-e", &(t0 + 240).to_string()])
        .arg(format!("DEF:v={}:val:AVERAGE", web.display()))
        .arg("LINE1:v#0000ff:rps")
        .output()
        .unwrap();
    assert!(graph.status.success(), "{}", text(&graph.stderr));
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    std::fs::remove_file(&png).unwrap();

    // Started again over the same files: the stored history is all older than them, so
    // nothing is written twice and nothing fails.
    let (mut second, line) = archive("back-filled");
    assert!(
        line.contains("wrote 0 samples to 2 files (0 new)") && line.contains("0 files failed"),
        "{line}"
    );
    second.signal("INT");
    assert!(
        second.wait(T).is_some_and(|s| s.success()),
        "{}",
        second.log()
    );
}

#[test]
fn the_server_archives_within_itself_into_the_same_files() {
    assert!(
        rrdtool_installed(),
        "rrdtool is missing: scripts/setup-test-deps installs it"
    );
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t0 = (now - 900) / 5 * 5;
    let server = SpudServer::start(&[
        "--archive",
        dir.path().to_str().unwrap(),
        "--archive-flush",
        "1s",
    ]);
    let mut c = server.connect();
    let mut batch = String::new();
    for i in 0..100 {
        let t = t0 + i;
        batch += &format!("qset {t} web:1.rps 42\r\nqset {t} web:1.status ok\r\n");
    }
    c.send(&batch);
    c.ask("uptime", "OK done\r\n");
    let web = dir.path().join("web_1.rps");
    let deadline = Instant::now() + T;
    let known = |from, to| {
        web.exists()
            && rrd_fetch(&web, from, to)
                .iter()
                .filter(|(_, v)| !v.is_nan())
                .count()
                >= 3
    };
    while !known(t0 + 10, t0 + 90) {
        assert!(Instant::now() < deadline, "{}", server.process.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    for (t, v) in rrd_fetch(&web, t0 + 10, t0 + 90) {
        assert_eq!(v, 42.0, "web at {t}");
    }
    // Later samples of the same key go into the same file; text makes none.
    for i in 0..30 {
        c.send(format!("qset {} web:1.rps 60\r\n", t0 + 200 + i));
    }
    c.ask("uptime", "OK done\r\n");
    while !known(t0 + 205, t0 + 225) {
        assert!(Instant::now() < deadline, "{}", server.process.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    for (t, v) in rrd_fetch(&web, t0 + 205, t0 + 225) {
        assert_eq!(v, 60.0, "web at {t}");
    }
    // Every key with numbers is archived (the server's own counters too), text makes none.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"web_1.rps".to_string()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("web_1.status")),
        "{names:?}"
    );
}

#[test]
fn a_backfill_beyond_the_history_reaches_the_archive_whole_through_rrdcached() {
    let dir = tempfile::tempdir().unwrap();
    let rrdcached = spud_tests::rrdcached::Rrdcached::start(dir.path());
    let daemon = rrdcached.address();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // 1,200 samples 5 s apart, the last 10 minutes ago: twelve times what a history holds,
    // sent at once, faster than the archiver looks.
    let t0 = (now - 600 - 1200 * 5) / 5 * 5;
    let server = SpudServer::start(&[
        "--archive-flush",
        "1s",
        "--archive",
        dir.path().to_str().unwrap(),
        "--rrdcached",
        &daemon,
    ]);
    let mut c = server.connect();
    let batch: String = (0..1200)
        .map(|i| format!("qset {} bf.rps {i}\r\n", t0 + 5 * i))
        .collect();
    c.send(&batch);
    c.ask("uptime", "OK done\r\n");
    assert_eq!(c.history("bf.rps").len(), 100);
    let file = dir.path().join("bf.rps");
    // rrdcached holds the updates (it writes after an hour); reading through it flushes.
    let (from, to) = (t0 + 5 * 10, t0 + 5 * 1190);
    let deadline = Instant::now() + T;
    let rows = loop {
        let rows = if file.exists() {
            rrd_fetch_via(&file, from, to, Some(&daemon))
        } else {
            Vec::new()
        };
        let known = rows.iter().filter(|(_, v)| !v.is_nan()).count();
        if known >= 1180 {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "{known} of {} rows known: {:?}…\n{}",
            rows.len(),
            &rows[..rows.len().min(5)],
            server.process.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    // The row ending at t0 + 5i holds sample i: every one of them, none lost.
    for (t, v) in rows {
        assert_eq!(v, ((t - t0) / 5) as f64, "at {t}");
    }
    let log = server.process.log();
    assert!(!log.contains("written directly"), "{log}");
}

#[test]
fn get_since_reads_memory_and_the_archive_before_it_as_one_range() {
    let dir = tempfile::tempdir().unwrap();
    let server = SpudServer::start(&[
        "--archive",
        dir.path().to_str().unwrap(),
        "--archive-flush",
        "1s",
    ]);
    let addr = server.addr.to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Six hours at 5 s, 5 and 9 in turn: every half hour averages 7, spans 5 to 9. Memory
    // holds the last 100 samples (8 minutes); the rest is only in the archive.
    let t0 = (now - 6 * 3600) / 5 * 5;
    let batch: String = (0..6 * 720)
        .map(|i| {
            format!(
                "qset {} wave {}\r\n",
                t0 + 5 * i,
                if i % 2 == 0 { 5 } else { 9 }
            )
        })
        .collect();
    let mut c = server.connect();
    c.send(&batch);
    c.ask("uptime", "OK done\r\n");
    let csv = |since: &str| {
        let out = spud(
            &addr,
            &["get", "--since", since, "--step", "30m", "--csv", "wave"],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let deadline = Instant::now() + T;
    let rows = loop {
        let out = csv("5h");
        let rows: Vec<Vec<f64>> = out
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(|n| n.parse().unwrap()).collect())
            .collect();
        if rows.len() >= 10 {
            assert!(out.starts_with("time,avg,min,max\n"), "{out}");
            break rows;
        }
        assert!(Instant::now() < deadline, "{out}\n{}", server.process.log());
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(rows[0][0] <= (now - 4 * 3600) as f64, "{rows:?}");
    for r in &rows {
        assert!((r[1] - 7.0).abs() < 0.5, "avg {r:?}");
        assert_eq!((r[2], r[3]), (5.0, 9.0), "min, max {r:?}");
    }
    let out = spud(
        &addr,
        &["get", "--since", "1h", "--step", "10m", "--json", "wave"],
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (json["key"].as_str(), json["step"].as_u64()),
        (Some("wave"), Some(600))
    );
    assert!(json["points"].as_array().unwrap().len() >= 6, "{json}");
    let out = spud(&addr, &["get", "--since", "1h", "wave"]);
    let table = text(&out.stdout);
    assert!(table.starts_with("time "), "{table}");
    assert!(table.lines().count() > 6, "{table}");
    // What is not a range gets one clear line.
    let out = spud(
        &addr,
        &["get", "--since", "1h", "--step", "1s", "--csv", "nope"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nope: no such key"));
    let out = spud(&addr, &["get", "--since", "30d", "--step", "1s", "wave"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("at most 86400"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn archive_refuses_a_missing_directory() {
    let out = spud(
        "127.0.0.1:1",
        &["archive", "--dir", "/nonexistent/spud-archive"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("/nonexistent/spud-archive does not exist"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn every_printing_verb_ends_quietly_on_a_closed_pipe() {
    let server = SpudServer::start(&[]);
    let addr = server.addr.to_string();
    // More than a pipe holds, so the writer meets the closed end.
    let mut c = server.connect();
    let mut sets = String::new();
    for i in 0..3000 {
        sets.push_str(&format!("qset pipe.key{i:05}.with.a.long.name {i}\r\n"));
    }
    c.send(sets);
    assert_eq!(
        c.ask("get pipe.key02999.with.a.long.name", "OK done\r\n")
            .lines()
            .count(),
        2
    );
    for args in [vec!["get", "pipe.*"], vec!["get", "--json", "pipe.*"]] {
        // `spud ... | head -1`: read one line, then close the pipe.
        let mut child = Command::new(binary("spud"))
            .args(["--server", &addr])
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}: {:?}", out.status);
        assert_eq!(text(&out.stderr), "", "{args:?} said something");
    }
}

#[test]
fn the_documented_commands_need_only_what_spud_brings() {
    // A fresh Debian has no `nc`: examples to copy use `spud`; `nc` appears only where the
    // text says which package brings it.
    let root = spud_tests::workspace_root();
    let mut docs = vec![root.join("README.md"), root.join("plugin-api/README.md")];
    docs.extend(
        std::fs::read_dir(root.join("docs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        for (n, line) in text.lines().enumerate() {
            assert!(
                !line.contains("| nc "),
                "{}:{}: an example pipes into nc: {line}",
                doc.display(),
                n + 1
            );
        }
        if text.contains("$ nc ") {
            assert!(text.contains("netcat-openbsd"), "{}", doc.display());
        }
    }
    // The README's quick check, as written.
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(readme.contains("`target/release/spud get test.heartbeat`"));
    let host = SpudHost::start(
        &["test"],
        "[[job]]\nname = \"heartbeat\"\nplugin = \"test\"\ninterval = \"100ms\"\n",
    );
    host.wait_for("test.heartbeat", Duration::from_secs(10), |_| true);
    let out = spud(&host.addr.unwrap().to_string(), &["get", "test.heartbeat"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).trim_end().ends_with("  1"),
        "{}",
        text(&out.stdout)
    );
}
