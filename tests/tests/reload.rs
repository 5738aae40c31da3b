//! Hot reload, end to end: a real spud-host, real `.so` files replaced under it, its config
//! edited while it runs. Two builds of the `versioned` plugin say which version runs.

use std::path::Path;
use std::time::{Duration, Instant};

use spud_tests::{plugin, plugin_against_api, Client, SpudHost};

const T: Duration = Duration::from_secs(30);

/// The documented way to publish: write a dot-file, then rename it over the target.
fn publish(plugins: &Path, name: &str, bytes: &[u8]) {
    let tmp = plugins.join(format!(".{name}.so.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, plugins.join(format!("{name}.so"))).unwrap();
}

fn v1() -> Vec<u8> {
    std::fs::read(plugin("versioned")).unwrap()
}

fn v2() -> Vec<u8> {
    std::fs::read(plugin("versioned-v2")).unwrap()
}

fn values(c: &mut Client, key: &str) -> Vec<u64> {
    let mut v: Vec<u64> = c
        .history(key)
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    v.reverse();
    v
}

/// One unbroken run of ticks: the job was never restarted and never missed a collect.
fn assert_unbroken(c: &mut Client, key: &str) -> Vec<u64> {
    let v = values(c, key);
    assert!(!v.is_empty(), "{key} has no history");
    assert!(
        v.windows(2).all(|w| w[1] == w[0] + 1),
        "{key} was interrupted: {v:?}"
    );
    v
}

fn setup(extra_plugins: &[&str], jobs: &str) -> SpudHost {
    let mut plugins = vec!["chaos"];
    plugins.extend_from_slice(extra_plugins);
    SpudHost::start(&plugins, jobs)
}

#[test]
fn a_renamed_new_version_restarts_only_its_jobs() {
    let mut config = String::new();
    for i in 0..50 {
        config.push_str(&format!(
            "[[job]]\nname = \"other.{i}\"\nplugin = \"chaos\"\ninterval = \"100ms\"\noptions = {{ mode = \"ok\" }}\n\n"
        ));
    }
    config.push_str(
        "[[job]]\nname = \"v.a\"\nplugin = \"versioned\"\ninterval = \"100ms\"\n\n\
         [[job]]\nname = \"v.b\"\nplugin = \"versioned\"\ninterval = \"100ms\"\n\n\
         [[job]]\nname = \"v.old\"\nplugin = \"versioned\"\ninterval = \"100ms\"\noptions = { flavor = \"v1-only\" }\n",
    );
    let host = setup(&["versioned"], &config);
    host.wait_for("v.a.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 3);
    host.wait_for("other.49.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 3);
    assert_eq!(host.wait_for("v.a.version", T, |_| true), "1");

    let plugins = host.dir.path().join("plugins");
    let replaced = Instant::now();
    publish(&plugins, "versioned", &v2());
    host.wait_for("v.a.version", T, |v| v == "2");
    host.wait_for("v.b.version", T, |v| v == "2");
    let took = replaced.elapsed();
    // A job the new version refuses keeps the old one, and says why.
    let error = host.wait_for("host.job.v.old.last_error", T, |_| true);
    assert!(
        error.contains("\"v1-only\" is gone in version 2"),
        "{error}"
    );
    std::thread::sleep(Duration::from_millis(700));
    let mut c = host.connect();
    assert_eq!(values(&mut c, "v.old.version").last(), Some(&1));
    assert_unbroken(&mut c, "v.old.tick");

    // Every other job kept its schedule: not restarted, not one collect missed.
    for i in 0..50 {
        let ticks = assert_unbroken(&mut c, &format!("other.{i}.tick"));
        assert_eq!(ticks[0], 1, "other.{i} was restarted");
    }
    assert_eq!(
        host.wait_for("host.plugin.versioned.generation", T, |_| true),
        "3",
        "chaos, v1, v2"
    );
    assert!(took < Duration::from_secs(5), "reload took {took:?}");
    assert!(
        host.process.log().contains("plugin versioned reloaded"),
        "{}",
        host.process.log()
    );
}

#[test]
fn broken_new_versions_leave_the_running_one_alone() {
    let host = setup(
        &["versioned"],
        "[[job]]\nname = \"v\"\nplugin = \"versioned\"\ninterval = \"100ms\"\n",
    );
    host.wait_for("v.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 3);
    let plugins = host.dir.path().join("plugins");
    let target = plugins.join("versioned.so");
    let mut c = host.connect();

    let still_v1_ticking = |c: &mut Client, what: &str| {
        let before = values(c, "v.tick").last().copied().unwrap_or(0);
        std::thread::sleep(Duration::from_millis(400));
        let after = values(c, "v.tick").last().copied().unwrap_or(0);
        assert!(after >= before + 2, "{what}: the running version stopped");
        assert_eq!(values(c, "v.version").last(), Some(&1), "{what}");
    };
    let reported = |what: &str, needle: &str| {
        let error = host.wait_for("host.plugin.versioned.last_error", T, |v| {
            v.contains(needle)
        });
        assert_eq!(
            host.wait_for("host.plugin.versioned.status", T, |_| true),
            "reload_failed",
            "{what}"
        );
        error
    };

    // Truncated in place.
    let good = v1();
    std::fs::write(&target, &v2()[..good.len() / 3]).unwrap();
    reported("truncated", "incomplete");
    still_v1_ticking(&mut c, "truncated");

    // Garbage renamed over it.
    publish(
        &plugins,
        "versioned",
        b"#!/bin/sh\necho this is not a library\n",
    );
    reported("garbage", "not an ELF file");
    still_v1_ticking(&mut c, "garbage");

    // A plugin built against an incompatible API.
    let (_, minor) = spud_tests::api_version()
        .split_once('.')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap();
    let minor: u32 = minor.split('.').next().unwrap().parse().unwrap();
    let incompatible =
        plugin_against_api("reload-incompatible", &format!("0.{}.0", minor + 1), |t| t);
    publish(&plugins, "versioned", &std::fs::read(incompatible).unwrap());
    reported(
        "incompatible",
        "incompatible plugin: built against spud-plugin-api",
    );
    still_v1_ticking(&mut c, "incompatible");

    // Written slowly in place: the partial file is refused, the finished one runs.
    let new = v2();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&target).unwrap();
        let chunks: Vec<&[u8]> = new.chunks(new.len() / 8 + 1).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            f.write_all(chunk).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(120));
            // Once the last chunk is written the file is whole, and may run.
            if i + 1 < chunks.len() {
                assert_eq!(
                    values(&mut c, "v.version").last(),
                    Some(&1),
                    "a partial file ran"
                );
            }
        }
    }
    host.wait_for("v.version", T, |v| v == "2");
    assert_eq!(
        host.wait_for("host.plugin.versioned.status", T, |_| true),
        "loaded"
    );
    let log = host.process.log();
    assert!(
        log.contains("not loaded, the running version stays: incomplete"),
        "{log}"
    );
}

#[test]
fn unchanged_content_changes_nothing_and_a_deleted_file_stops_its_jobs_until_it_returns() {
    let host = setup(
        &["versioned"],
        "[[job]]\nname = \"v\"\nplugin = \"versioned\"\ninterval = \"100ms\"\n",
    );
    host.wait_for("v.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 3);
    let plugins = host.dir.path().join("plugins");
    let generation = host.wait_for("host.plugin.versioned.generation", T, |_| true);

    // The same bytes again: no reload, no restart.
    publish(&plugins, "versioned", &v1());
    std::thread::sleep(Duration::from_millis(500));
    let mut c = host.connect();
    assert_eq!(assert_unbroken(&mut c, "v.tick")[0], 1);
    assert_eq!(
        host.wait_for("host.plugin.versioned.generation", T, |_| true),
        generation
    );

    // Deleted: its jobs stop.
    std::fs::remove_file(plugins.join("versioned.so")).unwrap();
    host.wait_for("host.job.v.state", T, |v| v == "waiting_for_plugin");
    assert_eq!(
        host.wait_for("host.plugin.versioned.status", T, |_| true),
        "missing"
    );
    let stopped_at = values(&mut c, "v.tick").last().copied().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        values(&mut c, "v.tick").last().copied(),
        Some(stopped_at),
        "still ticking"
    );

    // Back: they start again.
    publish(&plugins, "versioned", &v2());
    host.wait_for("v.version", T, |v| v == "2");
    host.wait_for("v.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 2);
}

fn write_config(host: &SpudHost, body: &str) {
    let path = host.dir.path().join("gatherer.toml");
    let tmp = host.dir.path().join(".gatherer.toml.tmp");
    std::fs::write(
        &tmp,
        format!("[server]\nlisten = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\n{body}"),
    )
    .unwrap();
    std::fs::rename(tmp, path).unwrap();
}

fn job(name: &str, extra: &str) -> String {
    format!("[[job]]\nname = \"{name}\"\nplugin = \"chaos\"\ninterval = \"100ms\"\noptions = {{ mode = \"ok\"{extra} }}\n\n")
}

#[test]
fn config_edits_restart_only_the_jobs_they_touch() {
    let host = setup(&[], &(job("a", "") + &job("b", "") + &job("c", "")));
    for j in ["a", "b", "c"] {
        host.wait_for(&format!("{j}.tick"), T, |v| {
            v.parse::<u64>().unwrap_or(0) >= 3
        });
    }
    // Remove c, change b, add d; a untouched.
    write_config(
        &host,
        &(job("a", "") + &job("b", ", hang_ms = 5") + &job("d", "")),
    );
    host.wait_for("d.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 3);
    assert_eq!(host.wait_for("host.job.c.state", T, |_| true), "stopped");
    let mut c = host.connect();
    let b = values(&mut c, "b.tick");
    assert!(b.windows(2).any(|w| w[1] < w[0]), "b was restarted: {b:?}");
    assert_eq!(assert_unbroken(&mut c, "a.tick")[0], 1, "a was restarted");
    let c_at = values(&mut c, "c.tick").last().copied();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        values(&mut c, "c.tick").last().copied(),
        c_at,
        "c still runs"
    );

    // A syntax error changes nothing, and says where it is.
    write_config(&host, &(job("a", "") + "[[job]\nname = \"broken\"\n"));
    let error = host.wait_for("host.config.last_error", T, |_| true);
    assert!(error.contains("gatherer.toml:"), "{error}");
    assert_eq!(host.wait_for("host.config.status", T, |_| true), "failed");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(assert_unbroken(&mut c, "a.tick")[0], 1);
    let d_before = values(&mut c, "d.tick").last().copied().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        values(&mut c, "d.tick").last().copied().unwrap() > d_before,
        "d stopped on a bad config"
    );

    // Fixed: applied.
    write_config(&host, &(job("a", "") + &job("e", "")));
    host.wait_for("e.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 2);
    assert_eq!(host.wait_for("host.config.status", T, |_| true), "loaded");
    assert_eq!(host.wait_for("host.job.d.state", T, |_| true), "stopped");
    assert_eq!(assert_unbroken(&mut c, "a.tick")[0], 1);
}

#[test]
fn a_crash_looping_job_backs_off_then_is_parked_until_its_options_change() {
    let host = setup(&[], &(job("steady", "") + "[[job]]\nname = \"crashy\"\nplugin = \"chaos\"\ninterval = \"50ms\"\noptions = { mode = \"panic\" }\n"));
    host.wait_for("host.job.crashy.state", T, |v| v == "backoff");
    host.wait_for("host.job.crashy.state", T, |v| v == "failed");
    assert_eq!(host.wait_for("host.job.crashy.errors", T, |_| true), "5");
    // Each panic is a crash, and counted (`spud_host_job_crashes_total`).
    assert_eq!(host.wait_for("host.job.crashy.crashes", T, |_| true), "5");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        host.wait_for("host.job.crashy.errors", T, |_| true),
        "5",
        "a parked job ran"
    );
    assert!(host
        .process
        .log()
        .contains("parked as failed until its plugin or its options change"));

    // New options: a new job, and it runs.
    write_config(&host, &(job("steady", "") + &job("crashy", "")));
    host.wait_for("crashy.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 3);
    assert_eq!(
        host.wait_for("host.job.crashy.state", T, |_| true),
        "running"
    );
    let mut c = host.connect();
    assert_eq!(assert_unbroken(&mut c, "steady.tick")[0], 1);
    // Collects since the start: a counter, never going down.
    host.wait_for("host.scheduler.collects", T, |_| true);
    std::thread::sleep(Duration::from_millis(5200));
    let collects = values(&mut c, "host.scheduler.collects");
    assert!(collects.len() >= 2, "{collects:?}");
    assert!(collects.windows(2).all(|w| w[0] <= w[1]), "{collects:?}");
}

#[test]
fn helper_jobs_survive_config_reloads_unless_their_helper_changes() {
    let targets = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(targets.path(), "found.a").unwrap();
    let helper = |interval: &str| {
        format!(
            "[[helper]]\nname = \"finder\"\nplugin = \"chaos\"\ninterval = \"{interval}\"\noptions = {{ file = \"{}\" }}\n\n",
            targets.path().display()
        )
    };
    let host = setup(&[], &(helper("200ms") + &job("x", "")));
    host.wait_for("found.a.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 3);
    // An unrelated edit: the helper's job carries on.
    write_config(&host, &(helper("200ms") + &job("x", "") + &job("y", "")));
    host.wait_for("y.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 3);
    let mut c = host.connect();
    assert_eq!(
        assert_unbroken(&mut c, "found.a.tick")[0],
        1,
        "a helper's job restarted"
    );
    // The helper itself changes: its jobs go with it, and its new self starts them again.
    write_config(&host, &(helper("300ms") + &job("x", "") + &job("y", "")));
    host.wait_for("found.a.tick", T, |_| {
        let v = values(&mut host.connect(), "found.a.tick");
        v.windows(2).any(|w| w[1] < w[0])
    });
    // And the reload says so, rather than "nothing that runs changed".
    host.process.wait_log(
        "helper finder changed (its options, plugin or interval): restarted",
        T,
    );
}

#[test]
fn sighup_looks_at_everything_again() {
    let host = setup(&[], &job("a", ""));
    host.wait_for("a.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 2);
    host.process.signal("HUP");
    let deadline = Instant::now() + T;
    while !host
        .process
        .log()
        .contains("SIGHUP: looking at the config and every plugin again")
    {
        assert!(Instant::now() < deadline, "{}", host.process.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut c = host.connect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        assert_unbroken(&mut c, "a.tick")[0],
        1,
        "nothing changed, nothing restarted"
    );
}

#[test]
fn runtime_control_lists_pauses_resumes_runs_and_reloads() {
    let host = setup(&[], &(job("a", "") + "[[job]]\nname = \"slow\"\nplugin = \"chaos\"\ninterval = \"1h\"\noptions = { mode = \"ok\" }\n"));
    host.wait_for("a.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 2);
    let mut c = host.connect();
    let jobs = c.ask("jobs", "OK done\r\n");
    assert!(
        jobs.contains("OK a running plugin=chaos generation=1 every=100ms errors=0 timeouts=0\r\n"),
        "{jobs}"
    );
    assert!(jobs.contains("OK slow running plugin=chaos"), "{jobs}");

    assert_eq!(
        c.ask("pause a", "OK done\r\n"),
        "OK paused a\r\nOK done\r\n"
    );
    std::thread::sleep(Duration::from_millis(250));
    let at = values(&mut c, "a.tick").last().copied();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        values(&mut c, "a.tick").last().copied(),
        at,
        "a paused job ran"
    );
    assert!(c.ask("jobs", "OK done\r\n").contains("OK a paused "));
    assert_eq!(
        c.ask("resume a", "OK done\r\n"),
        "OK resumed a\r\nOK done\r\n"
    );
    host.wait_for("a.tick", T, |v| Some(v.parse::<u64>().unwrap_or(0)) > at);

    // A job due in an hour (it collected once, as it started) runs now when asked.
    host.wait_for("slow.tick", T, |v| v == "1");
    assert_eq!(
        c.ask("run slow", "OK done\r\n"),
        "OK running slow\r\nOK done\r\n"
    );
    host.wait_for("slow.tick", T, |v| v == "2");

    assert_eq!(
        c.ask("pause nosuch", "\r\n"),
        "ERR not_found no running job is called nosuch\r\n"
    );
    assert_eq!(
        c.ask("run nosuch", "\r\n"),
        "ERR not_found no running job is called nosuch\r\n"
    );
    assert_eq!(
        c.ask("pause", "\r\n"),
        "ERR no_args pause needs a job name\r\n"
    );
    assert_eq!(
        c.ask("reload", "OK done\r\n"),
        "OK reloading\r\nOK done\r\n"
    );
    // Unknown words are still unknown.
    assert_eq!(
        c.ask("jobz", "\r\n"),
        "ERR unknown_command Unknown server command\r\n"
    );
}

#[test]
fn reloads_work_with_a_relative_config_path() {
    // As the README runs it: `--conf conf/gatherer.toml`, plugins at `../plugins`.
    spud_tests::strict_umask();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("conf")).unwrap();
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    spud_tests::install_plugin(
        &plugin("versioned"),
        &dir.path().join("plugins/versioned.so"),
    );
    std::fs::write(
        dir.path().join("conf/gatherer.toml"),
        "[server]\nlisten = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n[host]\nplugins = \"../plugins\"\n[[job]]\nname = \"v\"\nplugin = \"versioned\"\ninterval = \"100ms\"\n",
    )
    .unwrap();
    let mut cmd = std::process::Command::new(spud_tests::binary("spud-host"));
    cmd.current_dir(dir.path())
        .args(["--conf", "conf/gatherer.toml"]);
    let (process, _) = spud_tests::Process::start(cmd, "running ", T);
    let addr = process
        .log()
        .lines()
        .find_map(|l| {
            l.split("stat server listening on ")
                .nth(1)
                .map(str::to_string)
        })
        .unwrap();
    let mut c = Client::connect(addr.parse().unwrap());
    let deadline = Instant::now() + T;
    while values(&mut c, "v.version").last() != Some(&1) {
        assert!(Instant::now() < deadline, "{}", process.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    publish(&dir.path().join("plugins"), "versioned", &v2());
    while values(&mut c, "v.version").last() != Some(&2) {
        assert!(Instant::now() < deadline, "{}", process.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!process.log().contains("both declare"), "{}", process.log());
}

#[test]
fn a_job_that_starts_collects_at_once_whatever_its_interval() {
    // Without the start collect, each of these would wait up to a minute.
    const SOON: Duration = Duration::from_secs(3);
    let minute = |name: &str, plugin: &str, options: &str| {
        format!("[[job]]\nname = \"{name}\"\nplugin = \"{plugin}\"\ninterval = \"60s\"\noptions = {{ {options} }}\n\n")
    };
    let config = minute("v", "versioned", "") + &minute("c", "chaos", "mode = \"ok\"");
    let host = setup(&["versioned"], &config);
    let mut c = host.connect();
    // Started with the host.
    host.wait_for("v.tick", SOON, |v| v == "1");
    host.wait_for("c.tick", SOON, |v| v == "1");

    // A new plugin generation.
    let plugins = host.dir.path().join("plugins");
    let replaced = Instant::now();
    publish(&plugins, "versioned", &v2());
    host.wait_for("v.version", SOON, |v| v == "2");
    host.wait_for("v.tick", SOON, |v| v == "1");
    assert!(
        values(&mut c, "v.tick").len() >= 2,
        "the new generation's first collect is a new sample"
    );
    assert!(replaced.elapsed() < SOON);

    // A new job, and a changed one, from a config edit.
    let edited = Instant::now();
    write_config(
        &host,
        &(minute("v", "versioned", "")
            + &minute("c", "chaos", "mode = \"ok\", hang_ms = 5")
            + &minute("d", "chaos", "mode = \"ok\"")),
    );
    host.wait_for("d.tick", SOON, |v| v == "1");
    host.wait_for("host.job.c.state", SOON, |v| v == "running");
    let restarted = |c: &mut Client| values(c, "c.tick").iter().filter(|t| **t == 1).count();
    let deadline = Instant::now() + SOON;
    while restarted(&mut c) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(restarted(&mut c), 2, "the changed job collected at once");
    assert!(edited.elapsed() < SOON);

    // Resumed.
    assert!(c.ask("pause d", "OK done\r\n").contains("OK paused d"));
    assert!(c.ask("resume d", "OK done\r\n").contains("OK resumed d"));
    host.wait_for("d.tick", SOON, |v| v == "2");
}

#[test]
fn views_answer_while_a_reload_is_busy_starting_a_job() {
    let host = setup(&[], &job("a", ""));
    host.wait_for("a.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 2);
    // The reload that adds this job holds the gatherer's state for three seconds.
    write_config(&host, &(job("a", "") + &job("sleepy", ", start_ms = 3000")));
    let deadline = Instant::now() + T;
    while !host.process.log().contains("starting slowly") {
        assert!(Instant::now() < deadline, "{}", host.process.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut c = host.connect();
    let asked = Instant::now();
    let jobs = c.ask("jobs", "OK done\r\n");
    assert!(jobs.contains("OK a running"), "{jobs}");
    let api = spud_tests::http::get_json(&format!("http://{}/api/jobs", host.http.unwrap()));
    assert!(api.as_array().is_some_and(|a| !a.is_empty()), "{api}");
    let took = asked.elapsed();
    assert!(
        took < Duration::from_millis(1000),
        "the views waited {took:?} for the reload"
    );
    host.wait_for("sleepy.tick", T, |_| true);
}

/// The threads of `pid` whose name starts with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .filter(|name| name.starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn an_idle_receiver_removed_from_the_config_stops_at_once() {
    // Idle receivers' reads wait a second between looks at their stop flag; the host wakes
    // them when it stops them, so they end well within that.
    let (tcp, udp) = (spud_tests::free_port(), spud_tests::free_port());
    let host = SpudHost::start(
        &["graphite", "statsd"],
        &format!(
            "[[job]]\nname = \"g\"\nplugin = \"graphite\"\noptions = {{ listen = \"{tcp}\" }}\n\n\
             [[job]]\nname = \"s\"\nplugin = \"statsd\"\noptions = {{ listen = \"{udp}\" }}\n"
        ),
    );
    let pid = host.process.pid();
    assert_eq!(host.wait_for("host.job.g.state", T, |_| true), "running");
    assert_eq!(host.wait_for("host.job.s.state", T, |_| true), "running");
    std::thread::sleep(Duration::from_millis(300));
    assert!(threads_named(pid, "service-") > 2);
    let config = host.dir.path().join("gatherer.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let removed = text[..text.find("[[job]]").unwrap()].to_string();
    let edited = Instant::now();
    std::fs::write(&config, removed).unwrap();
    while threads_named(pid, "service-") > 0 {
        assert!(
            edited.elapsed() < Duration::from_secs(3),
            "the receivers did not stop"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = edited.elapsed();
    eprintln!("the receivers stopped in {took:?}");
    // The edit is noticed and applied within a few tens of milliseconds; a receiver left
    // to its own look at the stop flag would take up to a second more.
    assert!(
        took < Duration::from_millis(400),
        "the receivers took {took:?} to stop"
    );
    assert_eq!(host.wait_for("host.job.s.state", T, |_| true), "stopped");
}
