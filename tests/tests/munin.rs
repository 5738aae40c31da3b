//! The munin collector running Debian's munin-plugins-core unchanged, compared field by
//! field with munin-node's own `munin-run` on the same machine at the same moment; munin's
//! protocol corners (dirtyconfig, `epoch:value`, multigraph, config caching, plugin-conf.d);
//! and plugins that misbehave, one clear line each while the others carry on.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use spud_tests::{Client, SpudHost};

const CORE: &str = "/usr/share/munin/plugins";
const CONF: &str = "/etc/munin/plugin-conf.d";
const T: Duration = Duration::from_secs(20);

fn newest(c: &mut Client, key: &str) -> Option<String> {
    c.history(key)
        .first()
        .filter(|l| l.starts_with("OK 1 "))
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or("").to_string())
}

/// `munin-run NAME` on `dir`: (graph, field) → value, graphs by `multigraph`.
/// The machine's memory in bytes, from /proc/meminfo (the memory graph's upper limit).
fn mem_total() -> f64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("MemTotal in /proc/meminfo");
    kib * 1024.0
}

fn munin_run(dir: &Path, name: &str) -> BTreeMap<(String, String), f64> {
    let out = Command::new("munin-run")
        .args([
            "--servicedir",
            dir.to_str().unwrap(),
            "--sconfdir",
            CONF,
            name,
        ])
        .output()
        .expect("munin-run (scripts/setup-test-deps installs munin-node)");
    assert!(
        out.status.success(),
        "munin-run {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut graph = name.to_string();
    let mut values = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(g) = line.strip_prefix("multigraph ") {
            graph = g.trim().to_string();
        } else if let Some((field, value)) = line.split_once(".value ") {
            if let Ok(v) = value.trim().parse::<f64>() {
                values.insert((graph.clone(), field.to_string()), v);
            }
        }
    }
    values
}

#[test]
fn core_plugins_agree_with_munin_run_field_by_field() {
    assert!(
        Path::new(CORE).join("load").exists(),
        "scripts/setup-test-deps installs munin-plugins-core"
    );
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for (name, target) in [
        ("load", "load"),
        ("cpu", "cpu"),
        ("memory", "memory"),
        ("df", "df"),
        ("if_lo", "if_"),
        ("diskstats", "diskstats"),
    ] {
        std::os::unix::fs::symlink(Path::new(CORE).join(target), plugins.join(name)).unwrap();
    }
    let host = SpudHost::start(
        &["munin"],
        &format!(
            // 2 s: diskstats divides by the seconds since its last run, 0 within one second.
            // Its state is this test's own: the other tests' diskstats runs, in parallel,
            // must not be its "last run".
            "[[job]]\nname = \"m\"\nplugin = \"munin\"\ninterval = \"2s\"\ntimeout = \"8s\"\noptions = {{ dir = \"{}\", conf = \"{CONF}\", state_dir = \"{}\" }}\n",
            plugins.display(),
            dir.path().join("state").display()
        ),
    );
    // Config as metadata; a second round gives rates.
    assert_eq!(
        host.wait_for("m.load.graph_title", T, |_| true),
        "Load average"
    );
    assert_eq!(host.wait_for("m.cpu.user.type", T, |_| true), "DERIVE");
    host.wait_for("m.cpu.user", T, |_| true);
    host.wait_for("m.if_lo.down", T, |_| true);
    host.wait_for("m.diskstats_latency.graph_title", T, |_| true);
    let mut c = host.connect();
    for (plugin, tolerance) in [
        ("load", 1.0),
        ("memory", 0.25),
        ("df", 2.0),
        ("cpu", 0.05),
        ("if_lo", 0.20),
        ("diskstats", f64::INFINITY),
    ] {
        let mut theirs = munin_run(&plugins, plugin);
        if theirs.is_empty() {
            // diskstats prints nothing the first time it runs on a machine: it reads its
            // counters from the state its previous run left. The second run has one.
            std::thread::sleep(Duration::from_secs(1));
            theirs = munin_run(&plugins, plugin);
        }
        assert!(!theirs.is_empty(), "munin-run {plugin} gave nothing, twice");
        for ((graph, field), value) in &theirs {
            let base = format!("m.{graph}.{field}");
            let kind = newest(&mut c, &format!("{base}.type")).unwrap_or_else(|| "GAUGE".into());
            let key = if kind == "GAUGE" {
                base.clone()
            } else {
                format!("{base}.raw")
            };
            let ours: f64 = newest(&mut c, &key)
                .unwrap_or_else(|| {
                    panic!(
                        "{key} missing; munin-run {plugin} has {graph}.{field} = {value}\n{}",
                        host.process.log()
                    )
                })
                .parse()
                .unwrap_or_else(|_| panic!("{key} is not a number"));
            let close = match plugin {
                // Absolute tolerance for small gauges, relative for counters and bytes.
                "load" | "df" => (ours - value).abs() <= tolerance,
                // The memory graph is drawn against the machine's total, and small fields
                // such as page tables double between two reads on a busy machine: judge
                // each field against the graph's scale, not its own size.
                "memory" => (ours - value).abs() <= tolerance * value.abs() + 0.02 * mem_total(),
                _ => (ours - value).abs() <= tolerance * value.abs().max(1.0) + 4096.0,
            };
            assert!(
                close,
                "{plugin} {graph}.{field}: ours {ours}, munin-run {value}"
            );
            if kind != "GAUGE" {
                let rate: f64 = newest(&mut c, &base).unwrap().parse().unwrap();
                assert!(rate >= 0.0, "{base} rate {rate}");
            }
        }
    }
    assert!(
        !host.process.log().contains("WARN"),
        "{}",
        host.process.log()
    );
}

fn script(dir: &Path, name: &str, body: &str, mode: u32) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn dirtyconfig_epochs_multigraph_conf_and_config_read_once_until_the_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    let conf = dir.path().join("conf");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(
        conf.join("spud"),
        "[*]\nenv.greeting hello\n\n[queue*]\nenv.depth 42\n",
    )
    .unwrap();
    // As root, plugins run as nobody (as munin-node runs them): the file they write must let them.
    let configs = dir.path().join("configs");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(&configs, "").unwrap();
    std::fs::set_permissions(&configs, std::fs::Permissions::from_mode(0o666)).unwrap();
    script(
        &plugins,
        "queue_a",
        &format!(
            "case \"$1\" in\nconfig)\n  echo config >> {configs}\n  echo \"graph_title Queue $greeting\"\n  echo 'depth.label depth'\n  echo 'done.label done'\n  echo 'done.type DERIVE'\n  echo 'done.min 0'\n  echo 'depth.warning 10:50'\n\
             [ \"$MUNIN_CAP_DIRTYCONFIG\" = 1 ] && echo \"depth.value $depth\"\n  exit 0;;\nesac\n\
             echo \"depth.value $depth\"\necho \"done.value $(date +%s)000\"\necho 'multigraph queue_a.detail'\necho \"stamp.value 1700000000:7\"",
            configs = configs.display()
        ),
        0o755,
    );
    // The plugin's ranges reach an alert rule through `breaches`.
    let home = SpudHost::prepare(
        &["munin"],
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nrules = \"alerts.toml\"\n\n[[job]]\nname = \"q\"\nplugin = \"munin\"\ninterval = \"1s\"\noptions = {{ dir = \"{}\", conf = \"{}\" }}\n",
            plugins.display(),
            conf.display()
        ),
    );
    std::fs::write(
        home.path().join("alerts.toml"),
        r#"[[alert]]
name = "thresholds"
keys = "q.**"
warn = 'breaches("warning")'
crit = 'breaches("critical")'
"#,
    )
    .unwrap();
    let host = SpudHost::start_in(home);
    assert_eq!(
        host.wait_for("q.queue_a.graph_title", T, |_| true),
        "Queue hello"
    );
    assert_eq!(host.wait_for("q.queue_a.depth", T, |_| true), "42");
    assert_eq!(
        host.wait_for("q.queue_a.depth.warning", T, |_| true),
        "10:50"
    );
    // 1000 per second, as a DERIVE, once two fetches were made.
    let rate: f64 = host
        .wait_for("q.queue_a.done", T, |_| true)
        .parse()
        .unwrap();
    assert!((500.0..2000.0).contains(&rate), "{rate}");
    let mut c = host.connect();
    let stamp = c.history("q.queue_a.detail.stamp");
    assert!(stamp[0].starts_with("OK 1 1700000000 7"), "{stamp:?}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        std::fs::read_to_string(&configs).unwrap().lines().count(),
        1,
        "config read once"
    );
    // The plugin file changes: config is read again.
    let path = plugins.join("queue_a");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("Queue $greeting", "Queue v2");
    std::fs::write(&path, text).unwrap();
    assert_eq!(
        host.wait_for("q.queue_a.graph_title", T, |v| v == "Queue v2"),
        "Queue v2"
    );
    assert_eq!(
        std::fs::read_to_string(&configs).unwrap().lines().count(),
        2
    );
    assert_eq!(
        host.wait_for("alert.thresholds.q.queue_a.depth", T, |_| true),
        "ok"
    );
    // Out of the plugin's warning range 10:50: the rule fires.
    std::fs::write(
        conf.join("spud"),
        "[*]\nenv.greeting hello\n\n[queue*]\nenv.depth 60\n",
    )
    .unwrap();
    host.wait_for("alert.thresholds.q.queue_a.depth", T, |v| v == "warning");
    // Metadata keys (text) are no instances.
    let mut c = host.connect();
    assert!(c
        .get("alert.thresholds.q.queue_a.depth.label")
        .first()
        .is_none_or(|l| l.starts_with("ERR")));
}

#[test]
fn plugins_that_misbehave_get_one_line_each_and_the_others_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    script(
        &plugins,
        "garbage",
        "echo 'this is not munin'; echo 'x.value 1'",
        0o755,
    );
    script(
        &plugins,
        "hangs",
        "[ \"$1\" = config ] && { echo 'graph_title Hangs'; exit 0; }\nsleep 60",
        0o755,
    );
    script(&plugins, "fails", "echo 'oops' >&2; exit 3", 0o755);
    script(&plugins, "plain", "echo 'x.value 1'", 0o644);
    script(&plugins, "doomed", "[ \"$1\" = config ] && { echo 'graph_title Doomed'; exit 0; }\nsleep 0.5; echo 'x.value 1'", 0o755);
    std::os::unix::fs::symlink(Path::new(CORE).join("load"), plugins.join("load")).unwrap();
    let host = SpudHost::start(
        &["munin"],
        &format!(
            "[[job]]\nname = \"b\"\nplugin = \"munin\"\ninterval = \"2s\"\ntimeout = \"1500ms\"\noptions = {{ dir = \"{}\" }}\n",
            plugins.display()
        ),
    );
    host.wait_for("b.load.load", T, |_| true);
    assert_eq!(host.wait_for("b.garbage.x", T, |_| true), "1");
    std::fs::remove_file(plugins.join("doomed")).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let log = host.process.log();
    for line in [
        "plugin garbage: 1 lines are not munin's, left out, such as \"this is not munin\"",
        "still running after",
        "plugin fails config: exited with status 3",
        "plugin fails: oops",
        "plain is not executable: left out",
        "plugin doomed is gone",
    ] {
        assert!(log.contains(line), "no {line:?} in\n{log}");
    }
    for once in [
        "lines are not munin's",
        "still running after",
        "exited with status 3",
        "is not executable",
        "plugin doomed is gone",
    ] {
        assert_eq!(
            log.matches(once).count(),
            1,
            "{once:?} said more than once:\n{log}"
        );
    }
    // load kept its pace throughout: stored as soon as it is read, never after the hung one.
    // (A busy machine may have run only two rounds by now: wait for a third.)
    let mut c = host.connect();
    let deadline = std::time::Instant::now() + T;
    let times: Vec<u64> = loop {
        let times: Vec<u64> = c
            .history("b.load.load")
            .iter()
            .filter_map(|l| l.split(' ').nth(2)?.parse().ok())
            .collect();
        if times.len() >= 3 || std::time::Instant::now() > deadline {
            break times;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(times.len() >= 3, "{times:?}\n{}", host.process.log());
    let gaps: Vec<u64> = times.windows(2).map(|w| w[0] - w[1]).collect();
    assert!(gaps.iter().all(|&g| g <= 3), "load fell behind: {times:?}");
}

/// Talks munin's protocol: sends `lines`, returns everything said back until it closes.
fn munin_session(addr: std::net::SocketAddr, lines: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(lines.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn spud_answers_as_a_munin_node_and_a_munin_master_writes_our_values_to_rrd() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("alerts.toml");
    std::fs::write(&rules, "[[alert]]\nname = \"load\"\nkeys = \"web1.load.*\"\nwarn = \"last > 4\"\ncrit = \"last > 8\"\n").unwrap();
    let munin = spud_tests::free_port();
    let server = spud_tests::SpudServer::start(&[
        "--munin",
        &munin.to_string(),
        "--munin-graph",
        "memcached.*.curr_items",
        "--rules",
        rules.to_str().unwrap(),
    ]);
    let mut c = server.connect();
    for (k, v) in [
        ("web1.load.1", "0.5"),
        ("web1.load.5", "0.75"),
        ("memcached.a.curr_items", "42"),
        ("web1.status", "up"),
    ] {
        assert!(c.ask(&format!("set {k} {v}"), "\n").starts_with("OK"));
    }
    let talk = munin_session(
        munin,
        "cap multigraph dirtyconfig\nlist\nnodes\nconfig web1_load\nfetch web1_load\nfetch memcached___curr_items\nconfig nothing\nversion\nhello\nquit\n",
    );
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let expected_start = format!(
        "# munin node at {}\ncap multigraph dirtyconfig\n",
        node.trim()
    );
    assert!(talk.starts_with(&expected_start), "{talk}");
    assert!(
        talk.contains("\nmemcached___curr_items server ") && talk.contains(" web1_load\n"),
        "{talk}"
    );
    assert!(talk.contains("graph_title web1.load\n"), "{talk}");
    assert!(
        talk.contains("_1.label web1.load.1\n_1.warning :4\n_1.critical :8\n"),
        "{talk}"
    );
    // Values carry their sample's time, as munin-async gives them.
    let values: Vec<&str> = talk.lines().filter(|l| l.contains(".value ")).collect();
    assert_eq!(values.len(), 3, "{talk}");
    for (line, field, value) in [
        (values[0], "_1", "0.5"),
        (values[1], "_5", "0.75"),
        (values[2], "a", "42"),
    ] {
        let (name, rest) = line.split_once(".value ").unwrap();
        let (time, v) = rest.split_once(':').unwrap();
        assert_eq!((name, v), (field, value), "{talk}");
        assert!(time.parse::<u64>().unwrap() > 1_700_000_000, "{talk}");
    }
    assert!(talk.contains("# Unknown service\n.\n"), "{talk}");
    assert!(talk.contains("version: 2.0.73 (spud "), "{talk}");
    assert!(talk.contains("# Unknown command."), "{talk}");
    assert!(!talk.contains("status"), "a text key was served: {talk}");

    // Debian's munin master polls it and writes RRD files; rrdtool reads our values back.
    // Two polls, 500 s of sample time apart, so that a whole 5-minute step lies between.
    let now: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(c
        .ask(&format!("set {} web1.load.5 0.75", now - 500), "\n")
        .starts_with("OK"));
    let master = MuninMaster::new(dir.path(), munin.port(), "");
    master.update();
    assert!(c.ask("set web1.load.5 0.75", "\n").starts_with("OK"));
    master.update();
    let rrd = master.db.join("spud/node1-web1_load-_5-g.rrd");
    assert!(rrd.exists(), "no {}", rrd.display());
    let last = rrdtool(&["lastupdate"], &rrd);
    assert!(
        last.trim_end().ends_with(": 0.75"),
        "rrdtool lastupdate: {last}"
    );
    let fetched = rrdtool(&["fetch", "AVERAGE", "--start", "end-1h"], &rrd);
    assert!(
        fetched.contains(": 7.5000000000e-01"),
        "rrdtool fetch: {fetched}"
    );
    assert!(master
        .db
        .join("spud/node1-memcached___curr_items-a-g.rrd")
        .exists());
    let datafile = std::fs::read_to_string(master.db.join("datafile")).unwrap();
    assert!(datafile.contains("web1_load._1.warning :4"), "{datafile}");
}

/// Debian's munin master (`munin-update`) with a config of its own, polling one node.
struct MuninMaster {
    conf: std::path::PathBuf,
    db: std::path::PathBuf,
}

impl MuninMaster {
    /// A master in `dir` for the node on 127.0.0.1:`port`; `global` adds settings (TLS).
    fn new(dir: &Path, port: u16, global: &str) -> MuninMaster {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["db", "log", "run", "html"] {
            std::fs::create_dir(dir.join(sub)).unwrap();
        }
        let conf = dir.join("munin.conf");
        std::fs::write(
            &conf,
            format!(
                "dbdir {d}/db\nhtmldir {d}/html\nlogdir {d}/log\nrundir {d}/run\n{global}\n[spud;node1]\n    address 127.0.0.1\n    port {port}\n    use_node_name no\n",
                d = dir.display()
            ),
        )
        .unwrap();
        if is_root() {
            // munin-update refuses root, as munin's cron job runs it as munin.
            for sub in ["db", "log", "run", "html"] {
                Command::new("chown")
                    .args(["-R", "munin"])
                    .arg(dir.join(sub))
                    .status()
                    .unwrap();
            }
        }
        MuninMaster {
            conf,
            db: dir.join("db"),
        }
    }

    fn update(&self) {
        let update = "/usr/share/munin/munin-update";
        assert!(
            Path::new(update).exists(),
            "scripts/setup-test-deps installs munin"
        );
        let out = if is_root() {
            Command::new("su")
                .args(["munin", "-s", "/bin/sh", "-c"])
                .arg(format!(
                    "{update} --config_file {} --nofork",
                    self.conf.display()
                ))
                .output()
                .unwrap()
        } else {
            Command::new(update)
                .arg("--config_file")
                .arg(&self.conf)
                .arg("--nofork")
                .output()
                .unwrap()
        };
        assert!(
            out.status.success(),
            "munin-update: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `rrdtool COMMAND FILE ARGS…`'s output.
fn rrdtool(command: &[&str], file: &Path) -> String {
    let (command, rest) = command.split_first().unwrap();
    let out = Command::new("rrdtool")
        .arg(command)
        .arg(file)
        .args(rest)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().unwrap().stdout == b"0\n"
}

#[test]
fn beyond_loopback_the_munin_node_wants_a_masters_certificate_through_starttls() {
    let pki = spud_tests::Pki::new();
    let dir = tempfile::tempdir().unwrap();
    // munin-update runs as munin: the certificates it reads, and a copy of the client key
    // of its own (only the owner may read a key).
    std::fs::set_permissions(pki.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["ca.pem", "client.pem"] {
        std::fs::set_permissions(pki.file(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let master_key = dir.path().join("master.key");
    std::fs::copy(pki.file("client.key"), &master_key).unwrap();
    if is_root() {
        Command::new("chown")
            .arg("munin")
            .arg(&master_key)
            .status()
            .unwrap();
    }
    let munin = spud_tests::free_port();
    let any = std::net::SocketAddr::from(([0, 0, 0, 0], munin.port()));
    let server = spud_tests::SpudServer::start(&[
        "--tls-cert",
        &pki.file("server.pem"),
        "--tls-key",
        &pki.file("server.key"),
        "--tls-client-ca",
        &pki.file("ca.pem"),
        "--munin",
        &any.to_string(),
    ]);
    let set = Command::new(spud_tests::binary("spud"))
        .args([
            "--server",
            &server.addr.to_string(),
            "--tls-ca",
            &pki.file("ca.pem"),
        ])
        .args([
            "--tls-cert",
            &pki.file("client.pem"),
            "--tls-key",
            &pki.file("client.key"),
        ])
        .args(["set", "db1.conns.active", "17"])
        .output()
        .unwrap();
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    // A client without TLS is told so, and closed.
    let talk = munin_session(munin, "list\n");
    assert!(talk.ends_with("# I require TLS. Closing.\n"), "{talk}");
    // munin's master, `tls paranoid`, with a certificate our CA signed.
    let master = MuninMaster::new(
        dir.path(),
        munin.port(),
        &format!(
            "tls paranoid\ntls_verify_certificate yes\ntls_ca_certificate {}\ntls_certificate {}\ntls_private_key {}\n",
            pki.file("ca.pem"),
            pki.file("client.pem"),
            master_key.display()
        ),
    );
    master.update();
    let rrd = master.db.join("spud/node1-db1_conns-active-g.rrd");
    let last = rrdtool(&["lastupdate"], &rrd);
    assert!(
        last.trim_end().ends_with(": 17"),
        "rrdtool lastupdate {}: {last}\nmunin-update.log:\n{}\nserver:\n{}",
        rrd.display(),
        std::fs::read_to_string(dir.path().join("log/munin-update.log")).unwrap_or_default(),
        server.process.log()
    );
}

#[test]
fn a_munin_node_beyond_loopback_is_refused_unless_opened_and_the_host_serves_one_too() {
    let out = Command::new(spud_tests::binary("spud-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--no-http",
            "--munin",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("refusing the munin node on 0.0.0.0:0 without authentication"),
        "{said}"
    );

    let munin = spud_tests::free_port();
    let host = SpudHost::start(&[], &format!("[server]\nlisten = \"127.0.0.1:0\"\n\n[munin]\nlisten = \"{munin}\"\nname = \"web1\"\n"));
    let mut c = host.connect();
    assert!(c.ask("set app.requests.total 12", "\n").starts_with("OK"));
    let talk = munin_session(munin, "nodes\nfetch app_requests\nquit\n");
    assert!(
        talk.starts_with("# munin node at web1\nweb1\n.\ntotal.value "),
        "{talk}"
    );
    assert!(talk.ends_with(":12\n.\n"), "{talk}");
}

#[test]
fn the_dashboard_names_a_munin_key_by_its_graph_and_draws_its_ranges() {
    use spud_tests::webdriver::Browser;
    assert!(
        Browser::installed(),
        "scripts/setup-test-deps installs chromium and chromium-driver"
    );
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    script(
        &plugins,
        "pool",
        "if [ \"$1\" = config ]; then\n  echo 'graph_title Connection pool'\n  echo 'graph_vlabel connections'\n  echo 'used.label used'\n  echo 'used.warning 10:50'\n  exit 0\nfi\necho \"used.value $(( $(date +%s) % 40 + 5 ))\"",
        0o755,
    );
    let host = SpudHost::start(
        &["munin"],
        &format!(
            "[[job]]\nname = \"d\"\nplugin = \"munin\"\ninterval = \"500ms\"\noptions = {{ plugin = \"{}\" }}\n",
            plugins.join("pool").display()
        ),
    );
    host.wait_for("d.pool.used.warning", T, |_| true);
    let browser = Browser::start();
    // The chart of the graph: titled by munin's graph_title, its warning range (10:50) as
    // two amber lines.
    browser.goto(&format!("http://{}/#d.pool", host.http.unwrap()));
    let deadline = std::time::Instant::now() + T;
    loop {
        let seen = browser.execute(
            "const chart = document.querySelector('.chart[data-group=\"d.pool\"]');\
             const c = chart && chart.querySelector('canvas');\
             if (!c) return ['', 0];\
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;\
             let amber = 0; for (let i = 0; i < d.length; i += 4) \
               if (d[i + 3] > 100 && d[i] > 150 && d[i + 1] > 90 && d[i + 1] < 180 && d[i + 2] < 70) amber++;\
             return [chart.querySelector('.title').textContent + ' ' + chart.dataset.thresholds, amber];",
        );
        if seen[0] == "Connection pool (d.pool) 2" && seen[1].as_u64().unwrap_or(0) > 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the plot shows {seen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = spud_tests::workspace_root().join("target/dashboard-munin.png");
    std::fs::write(&out, browser.screenshot()).unwrap();
}

#[test]
fn autoconf_leaves_out_a_plugin_that_says_no_and_plugin_conf_timeout_applies() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    let conf = dir.path().join("conf");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(conf.join("spud"), "[slow*]\ntimeout 1\n").unwrap();
    script(
        &plugins,
        "here",
        "[ \"$1\" = autoconf ] && { echo yes; exit 0; }\necho 'x.value 1'",
        0o755,
    );
    script(
        &plugins,
        "absent",
        "[ \"$1\" = autoconf ] && { echo 'no (nothing to watch)'; exit 0; }\necho 'x.value 1'",
        0o755,
    );
    script(&plugins, "slowpoke", "[ \"$1\" = autoconf ] && { echo yes; exit 0; }\n[ \"$1\" = config ] && exit 0\nsleep 5; echo 'x.value 1'", 0o755);
    let host = SpudHost::start(
        &["munin"],
        &format!(
            "[[job]]\nname = \"a\"\nplugin = \"munin\"\ninterval = \"2s\"\ntimeout = \"8s\"\noptions = {{ dir = \"{}\", conf = \"{}\", autoconf = true }}\n",
            plugins.display(),
            conf.display()
        ),
    );
    assert_eq!(host.wait_for("a.here.x", T, |_| true), "1");
    let log = host
        .process
        .wait_log("plugin slowpoke fetch: still running after 1s", T);
    assert!(
        log.contains("plugin absent: autoconf does not say yes: left out"),
        "{log}"
    );
    let mut c = host.connect();
    assert!(
        c.get("a.absent.x")
            .first()
            .is_none_or(|l| l.starts_with("ERR")),
        "absent was run"
    );
    assert_eq!(newest(&mut c, "a.plugins").as_deref(), Some("3"));
}
