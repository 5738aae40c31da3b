//! spud-host end to end: the real binary, real plugin `.so` files loaded through the stable
//! ABI, its embedded server (or a real remote `spud-server`) read over the protocol.

use std::process::Command;
use std::time::{Duration, Instant};

use spud_tests::{binary, Client, SpudHost, SpudServer};

const T: Duration = Duration::from_secs(20);

fn ticks(c: &mut Client, key: &str) -> Vec<(u64, u64)> {
    c.history(key)
        .iter()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            let (_, _, time, value) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            Some((time.parse().ok()?, value.parse().ok()?))
        })
        .collect()
}

#[test]
fn jobs_run_on_schedule_with_vars_counts_and_services() {
    let host = SpudHost::start(
        &["test", "chaos"],
        r#"
[vars]
site = "ams1"

[[job]]
name = "heartbeat"
plugin = "test"
interval = "1s"

[[job]]
name = "fast"
plugin = "chaos"
interval = "100ms"
options = { mode = "ok" }

[[job]]
name = "svc"
plugin = "chaos"
options = { mode = "service" }
"#,
    );
    host.wait_for("test.heartbeat", T, |v| v == "1");
    let started = Instant::now();
    host.wait_for("fast.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 20);
    let took = started.elapsed();
    // 20 ticks at 100 ms: about two seconds, not faster and not much slower.
    assert!(took < Duration::from_secs(5), "20 ticks took {took:?}");
    let mut c = host.connect();
    let history = ticks(&mut c, "fast.tick");
    let values: Vec<u64> = history.iter().map(|(_, v)| *v).collect();
    assert!(
        values.windows(2).all(|w| w[0] == w[1] + 1),
        "no tick skipped: {values:?}"
    );
    assert_eq!(host.wait_for("fast.site", T, |_| true), "ams1");
    host.wait_for("fast.collects", T, |v| {
        v.parse::<f64>().unwrap_or(0.0) >= 5.0
    });
    host.wait_for("svc.beat", T, |v| v.parse::<u64>().unwrap_or(0) >= 5);
    assert_eq!(host.wait_for("host.job.fast.state", T, |_| true), "running");
    assert_eq!(
        host.wait_for("host.plugin.chaos.status", T, |_| true),
        "loaded"
    );
}

#[test]
fn a_panicking_plugin_is_reported_and_the_others_keep_running() {
    let host = SpudHost::start(
        &["chaos"],
        r#"
[[job]]
name = "bad"
plugin = "chaos"
interval = "100ms"
options = { mode = "panic" }

[[job]]
name = "good"
plugin = "chaos"
interval = "100ms"
options = { mode = "ok" }
"#,
    );
    let error = host.wait_for("host.job.bad.last_error", T, |v| v.contains("panicked"));
    assert!(
        error.contains("collect panicked: chaos panic number"),
        "{error}"
    );
    host.wait_for("host.job.bad.errors", T, |v| {
        v.parse::<u64>().unwrap_or(0) >= 5
    });
    // The good job ticks on; the host is alive and serving.
    let before: u64 = host.wait_for("good.tick", T, |_| true).parse().unwrap();
    host.wait_for("good.tick", T, |v| v.parse::<u64>().unwrap() >= before + 5);
    assert!(
        host.process.log().contains("collect panicked"),
        "one log line per failure"
    );
}

#[test]
fn a_hanging_plugin_is_marked_wedged_and_the_others_keep_running() {
    let host = SpudHost::start(
        &["chaos"],
        r#"
[[job]]
name = "stuck"
plugin = "chaos"
interval = "100ms"
timeout = "300ms"
options = { mode = "hang" }

[[job]]
name = "good"
plugin = "chaos"
interval = "100ms"
options = { mode = "ok" }
"#,
    );
    assert_eq!(
        host.wait_for("host.job.stuck.state", T, |v| v == "wedged"),
        "wedged"
    );
    assert_eq!(host.wait_for("host.job.stuck.timeouts", T, |_| true), "1");
    // Its ticks are skipped and counted, not stacked.
    host.wait_for("host.job.stuck.skipped", T, |v| {
        v.parse::<u64>().unwrap_or(0) >= 5
    });
    let before: u64 = host.wait_for("good.tick", T, |_| true).parse().unwrap();
    host.wait_for("good.tick", T, |v| v.parse::<u64>().unwrap() >= before + 5);
    assert!(
        host.process.log().contains("past its 300ms timeout"),
        "{}",
        host.process.log()
    );
}

#[test]
fn a_wedged_job_runs_again_once_its_collect_returns() {
    let host = SpudHost::start(
        &["chaos"],
        r#"
[[job]]
name = "slow"
plugin = "chaos"
interval = "100ms"
timeout = "200ms"
options = { mode = "hang", hang_ms = 700 }
"#,
    );
    host.wait_for("host.job.slow.state", T, |v| v == "wedged");
    host.wait_for("host.job.slow.state", T, |v| v == "running");
    host.wait_for("host.job.slow.timeouts", T, |v| {
        v.parse::<u64>().unwrap_or(0) >= 2
    });
}

#[test]
fn bad_options_are_one_clear_error_naming_the_job_and_the_option() {
    let config = r#"
[[job]]
name = "typo"
plugin = "chaos"
options = { mood = "ok" }

[[job]]
name = "fine"
plugin = "chaos"
interval = "100ms"
options = { mode = "ok" }
"#;
    let dir = SpudHost::prepare(&["chaos"], config);
    let out = Command::new(binary("spud-host"))
        .args(["check-config", "--conf"])
        .arg(dir.path().join("gatherer.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    // One problem; then each plugin's signature status.
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("signature: "))
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(
        lines[0].starts_with("job typo: bad options: unknown field `mood`, expected"),
        "{stdout}"
    );

    // Running anyway: the bad job is reported and does not start; the good one runs.
    let host = SpudHost::start_in(dir);
    assert_eq!(host.wait_for("host.job.typo.state", T, |_| true), "failed");
    let error = host.wait_for("host.job.typo.last_error", T, |_| true);
    assert!(error.contains("unknown field `mood`"), "{error}");
    host.wait_for("fine.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 3);
}

#[test]
fn check_config_reports_every_problem_and_passes_a_good_config() {
    let dir = SpudHost::prepare(
        &["chaos"],
        "[server]\nhttp = \"off\"\n[[job]]\nname = \"a\"\nplugin = \"nosuch\"\n[host]\nintervall = \"1s\"\n",
    );
    let conf = dir.path().join("gatherer.toml");
    let out = Command::new(binary("spud-host"))
        .args(["check-config", "--conf"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("gatherer.toml:7: unknown field `intervall`"),
        "{stdout}"
    );

    std::fs::write(&conf, "[[job]]\nname = \"a\"\nplugin = \"nosuch\"\n").unwrap();
    let out = Command::new(binary("spud-host"))
        .args(["check-config", "--conf"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("job a: no plugin declares the name \"nosuch\""),
        "{stdout}"
    );

    std::fs::write(
        &conf,
        "[[job]]\nname = \"a\"\nplugin = \"chaos\"\noptions = { mode = \"ok\" }\n",
    )
    .unwrap();
    let out = Command::new(binary("spud-host"))
        .args(["check-config", "--conf"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn broken_plugin_files_are_refused_with_a_reason() {
    let dir = SpudHost::prepare(&["chaos"], "[[job]]\nname = \"ok\"\nplugin = \"chaos\"\ninterval = \"100ms\"\noptions = { mode = \"ok\" }\n");
    let plugins = dir.path().join("plugins");
    let whole = std::fs::read(plugins.join("chaos.so")).unwrap();
    std::fs::write(plugins.join("half.so"), &whole[..whole.len() / 2]).unwrap();
    std::fs::write(plugins.join("garbage.so"), b"this is not a library").unwrap();
    // The same plugin under a second name: two files declaring one name.
    std::fs::write(plugins.join("zz-again.so"), &whole).unwrap();
    // Hidden files are never loaded (that is how a new version is written before its rename).
    std::fs::write(plugins.join(".writing.so.tmp"), &whole[..100]).unwrap();
    let host = SpudHost::start_in(dir);
    let log = host.process.log();
    assert!(log.contains("half.so not loaded: incomplete"), "{log}");
    assert!(
        log.contains("garbage.so not loaded: not an ELF file"),
        "{log}"
    );
    assert!(
        log.contains("chaos.so and ")
            && log.contains("zz-again.so both declare the plugin \"chaos\""),
        "{log}"
    );
    assert!(!log.contains(".writing"), "{log}");
    host.wait_for("ok.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 3);
}

#[test]
fn plugin_files_others_could_write_are_refused_until_fixed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = SpudHost::prepare(
        &["chaos", "test"],
        "[[job]]\nname = \"ok\"\nplugin = \"chaos\"\ninterval = \"100ms\"\noptions = { mode = \"ok\" }\n\n\
         [[job]]\nname = \"t\"\nplugin = \"test\"\ninterval = \"100ms\"\n",
    );
    let test_so = dir.path().join("plugins/test.so");
    std::fs::set_permissions(&test_so, std::fs::Permissions::from_mode(0o664)).unwrap();
    let host = SpudHost::start_in(dir);
    host.wait_for("ok.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 2);
    let log = host.process.log();
    assert!(
        log.contains("test.so refused: writable by its group (mode 0664); `chmod go-w` it"),
        "{log}"
    );
    // The test plugin's heartbeat: `test.t`.
    let own = |c: &mut Client| c.get("test.t").len();
    assert_eq!(own(&mut host.connect()), 0, "a refused plugin ran");

    // Fixed in place: the change of mode is noticed and the plugin loads.
    std::fs::set_permissions(&test_so, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut client = host.connect();
    let deadline = std::time::Instant::now() + T;
    while own(&mut client) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            host.process.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A loaded plugin made writable again: refused, and the running version stays.
    std::fs::set_permissions(&test_so, std::fs::Permissions::from_mode(0o646)).unwrap();
    host.process.wait_log("writable by others (mode 0646)", T);
    host.wait_for("ok.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 8);
    assert!(own(&mut client) > 0);
}

#[test]
fn a_plugins_directory_made_writable_is_refused_on_a_single_file_event() {
    use std::os::unix::fs::PermissionsExt;
    let host = SpudHost::start(
        &["chaos"],
        "[[job]]\nname = \"ok\"\nplugin = \"chaos\"\ninterval = \"100ms\"\noptions = { mode = \"ok\" }\n\n\
         [[job]]\nname = \"t\"\nplugin = \"test\"\ninterval = \"100ms\"\n",
    );
    host.wait_for("ok.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 2);
    let plugins = host.dir.path().join("plugins");
    std::fs::set_permissions(&plugins, std::fs::Permissions::from_mode(0o775)).unwrap();
    // One new file, one event: the directory is looked at with it.
    spud_tests::install_plugin(&spud_tests::plugin("test"), &plugins.join("test.so"));
    let log = host
        .process
        .wait_log("refused: writable by its group (mode 0775)", T);
    assert!(log.contains("the plugins directory"), "{log}");
    assert!(
        host.connect().get("test.t").is_empty(),
        "a refused plugin ran"
    );
    // Fixed: the next look loads it, and the other job never stopped.
    std::fs::set_permissions(&plugins, std::fs::Permissions::from_mode(0o755)).unwrap();
    host.connect().ask("reload", "OK done\r\n");
    host.wait_for("test.t", T, |_| true);
    host.wait_for("ok.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 8);
}

#[test]
fn two_hosts_cannot_run_one_config() {
    let host = SpudHost::start(&["test"], "[[job]]\nname = \"h\"\nplugin = \"test\"\n");
    let out = Command::new(binary("spud-host"))
        .arg("--conf")
        .arg(host.dir.path().join("gatherer.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another spud-host is already running"),
        "{stderr}"
    );
}

#[test]
fn a_remote_server_that_restarts_loses_no_buffered_sample() {
    // The server keeps what it acknowledged across its restart (--state), so every tick
    // the host produced must be there afterwards, in one unbroken run.
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().join("state");
    let state = state.to_str().unwrap();
    let mut server = SpudServer::start(&["--state", state]);
    let addr = server.addr;
    let host = SpudHost::start(
        &["chaos"],
        &format!(
            r#"
[server]
remote = "{addr}"

[[job]]
name = "pushed"
plugin = "chaos"
interval = "100ms"
options = {{ mode = "ok" }}
"#
        ),
    );
    let mut c = server.connect();
    let deadline = Instant::now() + T;
    while ticks(&mut c, "pushed.tick").len() < 5 {
        assert!(Instant::now() < deadline, "{}", host.process.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(c);
    server.process.signal("TERM");
    assert!(server.process.wait(T).is_some());
    drop(server);
    // About ten ticks happen while nobody listens.
    std::thread::sleep(Duration::from_millis(1000));
    let again = SpudServer::start(&["--listen", &addr.to_string(), "--state", state]);
    let mut c = again.connect();
    let deadline = Instant::now() + T;
    loop {
        let got = ticks(&mut c, "pushed.tick");
        if got.len() >= 30 {
            let values: Vec<u64> = got.iter().rev().map(|(_, v)| *v).collect();
            assert_eq!(values[0], 1, "the first ticks are there: {values:?}");
            assert!(
                values.windows(2).all(|w| w[1] == w[0] + 1),
                "gap in {values:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{}", host.process.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = host.process.log();
    assert!(log.contains("is back; sending"), "{log}");
}

#[test]
fn helpers_add_and_remove_jobs_and_leave_the_rest_alone() {
    let targets = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(targets.path(), "found.a found.b").unwrap();
    let host = SpudHost::start(
        &["chaos"],
        &format!(
            r#"
[[helper]]
plugin = "chaos"
interval = "200ms"
options = {{ file = "{}" }}
"#,
            targets.path().display()
        ),
    );
    host.wait_for("found.a.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 3);
    host.wait_for("found.b.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 3);
    std::fs::write(targets.path(), "found.a found.c").unwrap();
    host.wait_for("found.c.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 3);
    let mut c = host.connect();
    // found.a was never restarted: its ticks carry on from where they were, unbroken.
    let a: Vec<u64> = ticks(&mut c, "found.a.tick")
        .iter()
        .rev()
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(a[0], 1, "{a:?}");
    assert!(a.windows(2).all(|w| w[1] == w[0] + 1), "{a:?}");
    // found.b was stopped.
    let b_then = ticks(&mut c, "found.b.tick")[0].1;
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        ticks(&mut c, "found.b.tick")[0].1,
        b_then,
        "found.b still ticks"
    );
    assert!(
        host.process.log().contains("found.b is no longer wanted"),
        "{}",
        host.process.log()
    );
}

#[test]
fn a_helper_with_a_typo_is_caught_by_check_config_said_once_and_shown_with_its_jobs() {
    let targets = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(targets.path(), "made.a").unwrap();
    let helper = |options: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[[helper]]\nname = \"finder\"\nplugin = \"chaos\"\ninterval = \"200ms\"\noptions = {{ {options} }}\n"
        )
    };
    let typo = helper(&format!(
        "file = \"{}\", timout = 3",
        targets.path().display()
    ));
    let dir = SpudHost::prepare(&["chaos"], &typo);
    let conf = dir.path().join("gatherer.toml");
    let out = check_config(&conf);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("helper finder: ") && stdout.contains("unknown field `timout`"),
        "{stdout}"
    );
    // Quiet unless asked: no log lines around the problems.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("INFO"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Running anyway: the error is said once, not every round, and reported.
    let host = SpudHost::start_in(dir);
    let error = host.wait_for("host.helper.finder.last_error", T, |v| v.contains("timout"));
    assert!(error.contains("unknown field `timout`"), "{error}");
    std::thread::sleep(Duration::from_millis(1500));
    let said = host.process.log().matches("unknown field `timout`").count();
    assert_eq!(said, 1, "{}", host.process.log());

    // Fixed: the error clears, and the helper and its job show in `jobs` and /api/jobs.
    let fixed = std::fs::read_to_string(&conf)
        .unwrap()
        .replace(", timout = 3", "");
    std::fs::write(&conf, fixed).unwrap();
    host.wait_for("made.a.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 1);
    host.wait_for("host.helper.finder.last_error", T, |v| v.is_empty());
    let mut c = host.connect();
    let jobs = c.ask("jobs", "OK done\r\n");
    assert!(
        jobs.contains("made.a ") && jobs.contains(" helper=finder"),
        "{jobs}"
    );
    assert!(
        jobs.contains("finder helper plugin=chaos every=200ms jobs=1"),
        "{jobs}"
    );
    let api = spud_tests::http::get_json(&format!("http://{}/api/jobs", host.http.unwrap()));
    let all = api.as_array().unwrap();
    assert!(
        all.iter()
            .any(|j| j["name"] == "made.a" && j["helper"] == "finder"),
        "{api:#}"
    );
    assert!(
        all.iter()
            .any(|j| j["name"] == "finder" && j["state"] == "helper" && j["jobs"] == 1),
        "{api:#}"
    );
}

/// `spud-host check-config --conf CONF`.
fn check_config(conf: &std::path::Path) -> std::process::Output {
    Command::new(binary("spud-host"))
        .args(["check-config", "--conf"])
        .arg(conf)
        .output()
        .unwrap()
}

/// `spud-host import-conf FILE`: the gatherer.toml on stdout, notes on stderr.
fn import_conf(text: &str) -> (String, String) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    let out = Command::new(binary("spud-host"))
        .arg("import-conf")
        .arg(file.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stderr}");
    (stdout, stderr)
}

#[test]
fn the_originals_stats_conf_imports_into_a_config_that_checks() {
    // In the original's format (its bin/gatherer's header), with its plugins' arguments.
    let (toml, notes) = import_conf(
        "server = 127.0.0.1\nport = 9107\n\
         memcached.web1: memcached(127.0.0.1:11211, 10)\n\
         lb: perlbal(127.0.0.1:60000)\nheartbeat: test\n",
    );
    assert!(notes.is_empty(), "{notes}");
    let dir = SpudHost::prepare(&["memcached", "perlbal", "test"], &toml);
    let out = check_config(&dir.path().join("gatherer.toml"));
    assert!(
        out.status.success(),
        "{toml}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(toml.contains("remote = \"127.0.0.1:9107\""), "{toml}");
    assert!(
        toml.contains("interval = \"10s\"\noptions = { address = \"127.0.0.1:11211\" }"),
        "{toml}"
    );

    // The original's own conf/ from the seed: its config_generator and the replicator's file.
    for (file, note) in [
        (
            "src/spud/conf/stats.conf",
            "config_generator read LiveJournal's configuration",
        ),
        (
            "src/spud/conf/stats-local.conf",
            "ssh_* options belong to the replicator",
        ),
    ] {
        let text = match spud_tests::original_source(file) {
            Ok(text) => text,
            Err(e) => {
                spud_tests::skip(
                    "the_originals_stats_conf_imports_into_a_config_that_checks (seed part)",
                    &e,
                );
                return;
            }
        };
        let (toml, notes) = import_conf(&text);
        assert!(notes.contains(note), "{file}: {notes}");
        let dir = SpudHost::prepare(&[], &toml);
        let out = check_config(&dir.path().join("gatherer.toml"));
        assert!(
            out.status.success(),
            "{file}:\n{toml}\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn a_remote_server_killed_with_sigkill_loses_nothing_the_host_held() {
    // A subscriber on the first server sees every tick it stored: the server pushes to
    // subscribers before it acknowledges the set. After kill -9, what it stored plus what
    // the restarted server receives must be every tick, without a gap.
    let server = SpudServer::start(&[]);
    let addr = server.addr;
    let mut witness = server.connect();
    witness.ask("sub pushed.tick", "\r\n");
    let host = SpudHost::start(
        &["chaos"],
        &format!(
            "[server]\nremote = \"{addr}\"\n\n[[job]]\nname = \"pushed\"\nplugin = \"chaos\"\ninterval = \"100ms\"\noptions = {{ mode = \"ok\" }}\n"
        ),
    );
    std::thread::sleep(Duration::from_millis(1500));
    server.process.signal("KILL");
    let pushed = String::from_utf8(witness.read_to_close(T)).unwrap();
    drop(server);
    let mut seen: Vec<u64> = pushed
        .lines()
        .filter_map(|l| l.trim_end().rsplit(' ').next()?.parse().ok())
        .collect();
    assert!(seen.len() >= 5, "{pushed}");
    std::thread::sleep(Duration::from_millis(1000));

    let again = SpudServer::start(&["--listen", &addr.to_string()]);
    let mut c = again.connect();
    let deadline = Instant::now() + T;
    while ticks(&mut c, "pushed.tick").len() < 20 {
        assert!(Instant::now() < deadline, "{}", host.process.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    seen.extend(ticks(&mut c, "pushed.tick").iter().map(|(_, v)| *v));
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen[0], 1);
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "gap in {seen:?}");
}
