//! Alerting end to end: a real Alertmanager (with a silence made by its `amtool`), a webhook
//! receiver that is down and then up, an exec receiver, the timer-driven states on a live
//! server, rules edited (and refused) while running, the host's embedded server, and
//! `spud rules test` as CI would run it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use spud_tests::alertmanager::{Alertmanager, Receiver};
use spud_tests::{binary, free_port, workspace_root, SpudHost, SpudServer};

fn server_with_rules(dir: &Path, rules: &str) -> SpudServer {
    let path = dir.join("alerts.toml");
    std::fs::write(&path, rules).unwrap();
    SpudServer::start(&["--rules", path.to_str().unwrap()])
}

/// Waits until the newest value of `key` is `want`.
fn wait_state(server: &SpudServer, key: &str, want: &str, within: Duration) {
    let mut c = server.connect();
    let deadline = Instant::now() + within;
    loop {
        let history = c.history(key);
        if history
            .first()
            .is_some_and(|l| l.ends_with(&format!(" {want}")))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key} never became {want}: {history:?}\n{}",
            server.process.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn set(server: &SpudServer, key: &str, value: &str) {
    let reply = server.connect().ask(&format!("set {key} {value}"), "\n");
    assert!(reply.starts_with("OK"), "{reply}");
}

#[test]
fn alertmanager_gets_our_labels_honours_an_amtool_silence_and_resolves() {
    let hook = Receiver::start(free_port());
    let am = Alertmanager::start(&format!(
        "route:\n  receiver: hook\n  group_by: [alertname, key]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: hook\n    webhook_configs:\n      - url: http://{}/\n        send_resolved: true\n",
        hook.addr
    ));
    // Silenced before it fires, so Alertmanager never tells anyone of db2.
    let silence = am.amtool(&[
        "silence",
        "add",
        "alertname=disk_full",
        "key=db2.disk.used_pct",
        "--comment=maintenance",
        "--author=tests",
        "--duration=1h",
    ]);
    assert!(!silence.trim().is_empty());

    let dir = tempfile::tempdir().unwrap();
    let server = server_with_rules(
        dir.path(),
        &format!(
            "[[alert]]\nname = \"disk_full\"\nkeys = \"db*.disk.used_pct\"\ncrit = \"last > 90\"\n\
             summary = \"{{key}} is {{value}}% full\"\nlabels = {{ team = \"storage\" }}\n\n\
             [[notify]]\ntype = \"alertmanager\"\nurl = \"{}\"\nrepeat = \"2s\"\n",
            am.url()
        ),
    );
    set(&server, "db1.disk.used_pct", "95");
    set(&server, "db2.disk.used_pct", "97");

    let deadline = Instant::now() + Duration::from_secs(20);
    let alerts = loop {
        let alerts = am.alerts();
        let states: Vec<(String, String)> = alerts
            .iter()
            .map(|a| {
                (
                    a["labels"]["key"].as_str().unwrap_or("").to_string(),
                    a["status"]["state"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        if states.contains(&("db1.disk.used_pct".into(), "active".into()))
            && states.contains(&("db2.disk.used_pct".into(), "suppressed".into()))
        {
            break alerts;
        }
        assert!(Instant::now() < deadline, "Alertmanager has {alerts:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let db1 = alerts
        .iter()
        .find(|a| a["labels"]["key"] == "db1.disk.used_pct")
        .unwrap();
    assert_eq!(db1["labels"]["alertname"], "disk_full");
    assert_eq!(db1["labels"]["severity"], "critical");
    assert_eq!(db1["labels"]["team"], "storage");
    assert_eq!(
        db1["annotations"]["summary"],
        "db1.disk.used_pct is 95% full"
    );
    let db2 = alerts
        .iter()
        .find(|a| a["labels"]["key"] == "db2.disk.used_pct")
        .unwrap();
    assert_eq!(
        db2["status"]["silencedBy"].as_array().map(Vec::len),
        Some(1),
        "{db2:#}"
    );

    // Alertmanager notified its own receiver of db1 only: the silence holds.
    hook.wait(Duration::from_secs(20), "db1 firing", |b| {
        b.iter()
            .any(|n| n["status"] == "firing" && n["commonLabels"]["key"] == "db1.disk.used_pct")
    });

    // Resolved in SPUD: Alertmanager hears it (endsAt), and says so to its receiver.
    set(&server, "db1.disk.used_pct", "40");
    wait_state(
        &server,
        "alert.disk_full.db1.disk.used_pct",
        "ok",
        Duration::from_secs(5),
    );
    hook.wait(Duration::from_secs(20), "db1 resolved", |b| {
        b.iter()
            .any(|n| n["status"] == "resolved" && n["commonLabels"]["key"] == "db1.disk.used_pct")
    });
    assert!(
        !hook
            .bodies()
            .iter()
            .any(|n| n["commonLabels"]["key"] == "db2.disk.used_pct"),
        "a silenced alert reached the receiver: {:#?}",
        hook.bodies()
    );
    // Re-sent while firing: db2 stays in Alertmanager past several repeats.
    std::thread::sleep(Duration::from_secs(5));
    assert!(am
        .alerts()
        .iter()
        .any(|a| a["labels"]["key"] == "db2.disk.used_pct"));
    let figures =
        spud_tests::http::get_json(&format!("http://{}/api/alerts", server.http.unwrap()));
    assert_eq!(figures["receivers"][0]["failed"], 0, "{figures:#}");
}

#[test]
fn a_webhook_down_then_up_gets_everything_and_the_log_says_so_once_each_way() {
    let addr = free_port();
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_rules(
        dir.path(),
        &format!(
            "[[alert]]\nname = \"queue_long\"\nkeys = \"q*.length\"\nwarn = \"last > 100\"\n\n\
             [[notify]]\nname = \"team\"\ntype = \"webhook\"\nurl = \"http://{addr}/hook\"\nqueue = 100\n"
        ),
    );
    for n in 1..=5 {
        set(&server, &format!("q{n}.length"), "500");
    }
    server
        .process
        .wait_log("notify team (webhook):", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1500));
    let receiver = Receiver::start(addr);
    let bodies = receiver.wait(Duration::from_secs(15), "five firing alerts", |b| {
        b.len() >= 5
    });
    let mut keys: Vec<&str> = bodies
        .iter()
        .map(|b| b["alerts"][0]["labels"]["key"].as_str().unwrap())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "q1.length",
            "q2.length",
            "q3.length",
            "q4.length",
            "q5.length"
        ]
    );
    for b in &bodies {
        assert_eq!(b["version"], "4");
        assert_eq!(b["status"], "firing");
        assert_eq!(b["receiver"], "team");
        assert_eq!(b["alerts"][0]["labels"]["alertname"], "queue_long");
        assert_eq!(b["alerts"][0]["labels"]["severity"], "warning");
    }
    let log = server.process.wait_log(
        "notify team: delivering again after",
        Duration::from_secs(5),
    );
    assert_eq!(log.matches("retrying with backoff").count(), 1, "{log}");
    assert_eq!(log.matches("delivering again").count(), 1, "{log}");

    // Resolving reaches it too; the figures count what happened.
    set(&server, "q3.length", "1");
    receiver.wait(Duration::from_secs(10), "q3 resolved", |b| {
        b.iter()
            .any(|n| n["status"] == "resolved" && n["alerts"][0]["labels"]["key"] == "q3.length")
    });
    let mut c = server.connect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let sent = c.get("server.notify.team.sent");
        if sent.first().is_some_and(|l| l.ends_with(" 6")) {
            break;
        }
        assert!(Instant::now() < deadline, "{sent:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let failed = c.get("server.notify.team.failed");
    assert!(!failed.first().unwrap().ends_with(" 0"), "{failed:?}");
    assert!(c.get("server.notify.team.dropped")[0].ends_with(" 0"));
}

#[test]
fn exec_gets_the_alert_in_env_and_stdin_and_a_hung_one_is_killed_without_holding_others() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exec.out");
    let script = dir.path().join("notify.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$SPUD_ALERT_STATUS $SPUD_ALERT_ALERTNAME $SPUD_ALERT_KEY $SPUD_ALERT_SEVERITY $SPUD_ALERT_TEAM $SPUD_ALERT_SUMMARY\" >> {out}\n\
             cat >> {out}\necho >> {out}\n",
            out = out.display()
        ),
    )
    .unwrap();
    let server = server_with_rules(
        dir.path(),
        &format!(
            "[[alert]]\nname = \"hot\"\nkeys = \"*.temp\"\ncrit = \"last >= 80\"\nsummary = \"{{key}} at {{value}}\"\nlabels = {{ team = \"dc\" }}\n\n\
             [[notify]]\nname = \"script\"\ntype = \"exec\"\ncommand = [\"/bin/sh\", \"{}\"]\n\n\
             [[notify]]\nname = \"stuck\"\ntype = \"exec\"\ncommand = [\"/bin/sleep\", \"60\"]\ntimeout = \"1s\"\n",
            script.display()
        ),
    );
    set(&server, "rack1.temp", "85");
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.contains("firing hot rack1.temp critical dc rack1.temp at 85")
            && text.contains("\"status\":\"firing\"")
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the script wrote {text:?}\n{}",
            server.process.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let json: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    assert_eq!(json["alerts"][0]["labels"]["key"], "rack1.temp");
    let log = server.process.wait_log(
        "still running after its 1s timeout: killed",
        Duration::from_secs(10),
    );
    assert!(log.contains("notify stuck (exec): /bin/sleep"), "{log}");
}

#[test]
fn for_nodata_and_text_values_on_a_live_server_with_no_sets_in_between() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_rules(
        dir.path(),
        "[[alert]]\nname = \"slow\"\nkeys = \"api.latency_ms\"\nwarn = \"last > 100\"\nfor = \"2s\"\nnodata = \"4s\"\n",
    );
    let key = "alert.slow.api.latency_ms";
    let started = Instant::now();
    set(&server, "api.latency_ms", "250");
    wait_state(&server, key, "pending", Duration::from_secs(2));
    // No further set: the timer fires it once `for` has passed.
    wait_state(&server, key, "warning", Duration::from_secs(5));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "fired before `for`"
    );
    // Still no set: nodata after 4 s without a sample.
    wait_state(&server, key, "nodata", Duration::from_secs(8));
    // A text value is nodata, not an error; a number again brings it back through pending.
    set(&server, "api.latency_ms", "timeout");
    set(&server, "api.latency_ms", "20");
    wait_state(&server, key, "ok", Duration::from_secs(3));
    let mut c = server.connect();
    let history: Vec<String> = c
        .history(key)
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(history.first().map(String::as_str), Some("ok"));
    assert!(
        history.contains(&"nodata".to_string()) && history.contains(&"warning".to_string()),
        "{history:?}"
    );
    assert!(
        !server.process.log().contains("ERROR"),
        "{}",
        server.process.log()
    );
    // The protocol command and the client.
    set(&server, "api.latency_ms", "900");
    wait_state(&server, key, "pending", Duration::from_secs(3));
    let reply = c.ask("alerts", "OK done\r\n");
    assert!(reply.starts_with("OK pending "), "{reply}");
    assert!(reply.contains(" slow api.latency_ms 900 "), "{reply}");
    let out = Command::new(binary("spud"))
        .args(["--server", &server.addr.to_string(), "alerts", "api.*"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(" slow ") && text.contains("api.latency_ms") && text.contains(" 900 "),
        "{text}"
    );
    assert_eq!(
        c.ask("alerts ((", "\n")
            .split(' ')
            .take(2)
            .collect::<Vec<_>>(),
        ["ERR", "bad_pattern"]
    );
}

#[test]
fn a_server_without_rules_says_so() {
    let server = SpudServer::start(&[]);
    let reply = server.connect().ask("alerts", "\n");
    assert!(reply.starts_with("ERR no_rules "), "{reply}");
    let v = spud_tests::http::get_json(&format!("http://{}/api/alerts", server.http.unwrap()));
    assert_eq!(v["enabled"], false);
}

#[test]
fn rules_edited_while_running_are_taken_and_a_bad_edit_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("alerts.toml");
    let server = server_with_rules(
        dir.path(),
        "[[alert]]\nname = \"a\"\nkeys = \"x.*\"\nwarn = \"last > 10\"\n",
    );
    set(&server, "x.one", "50");
    wait_state(&server, "alert.a.x.one", "warning", Duration::from_secs(3));

    // A new rule: applied to keys already stored, without a new set.
    std::fs::write(&rules, "[[alert]]\nname = \"a\"\nkeys = \"x.*\"\nwarn = \"last > 10\"\n\n[[alert]]\nname = \"b\"\nkeys = \"x.one\"\ncrit = \"last > 40\"\n").unwrap();
    wait_state(&server, "alert.b.x.one", "critical", Duration::from_secs(5));

    // A bad edit: one line per problem with file and line, and the rules stay.
    std::fs::write(
        &rules,
        "[[alert]]\nname = \"a\"\nkeys = \"x.*\"\nwarn = \"last >> 10\"\n",
    )
    .unwrap();
    let log = server
        .process
        .wait_log("refused; the running rules stay", Duration::from_secs(5));
    assert!(
        log.contains("alerts.toml:4: [[alert]] a: warn: \"last >> 10\""),
        "{log}"
    );
    let api = format!("http://{}/api/alerts", server.http.unwrap());
    let v = spud_tests::http::get_json(&api);
    assert_eq!(v["rules"], 2, "{v:#}");
    assert_eq!(v["problems"].as_array().unwrap().len(), 1, "{v:#}");
    set(&server, "x.one", "45");
    set(&server, "x.two", "45");
    wait_state(&server, "alert.a.x.two", "warning", Duration::from_secs(3));
    wait_state(&server, "alert.b.x.one", "critical", Duration::from_secs(3));

    // Fixed, with rule b gone: b's instance resolves.
    std::fs::write(
        &rules,
        "[[alert]]\nname = \"a\"\nkeys = \"x.*\"\nwarn = \"last > 10\"\n",
    )
    .unwrap();
    wait_state(&server, "alert.b.x.one", "ok", Duration::from_secs(5));
    let v = spud_tests::http::get_json(&api);
    assert_eq!(
        (v["rules"].as_u64(), v["problems"].as_array().map(Vec::len)),
        (Some(1), Some(0)),
        "{v:#}"
    );
    let keys: Vec<&str> = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["x.one", "x.two"]);

    // A rule written for the old unanchored pattern: what it no longer matches is said in
    // one line naming it; a regular expression is refused with what to write.
    set(&server, "bx.load.15", "1");
    std::fs::write(
        &rules,
        "[[alert]]\nname = \"a\"\nkeys = \"x.*\"\nwarn = \"last > 10\"\n\n\
         [[alert]]\nname = \"load\"\nkeys = \"bx.load.1\"\nwarn = \"last > 10\"\n",
    )
    .unwrap();
    let log = server
        .process
        .wait_log("[[alert]] load: keys", Duration::from_secs(5));
    assert!(
        log.contains("[[alert]] load: keys \"bx.load.1\" matches whole keys")
            && log.contains("\"bx.load.15\""),
        "{log}"
    );
    std::fs::write(
        &rules,
        "[[alert]]\nname = \"a\"\nkeys = \"^x\\\\..*$\"\nwarn = \"last > 10\"\n",
    )
    .unwrap();
    let log = server
        .process
        .wait_log("is not part of a keys glob", Duration::from_secs(5));
    assert!(log.contains("alerts.toml:3: [[alert]] a: keys"), "{log}");
}

#[test]
fn the_hosts_embedded_server_alerts_too() {
    let dir = SpudHost::prepare(
        &[],
        "[server]\nlisten = \"127.0.0.1:0\"\nrules = \"alerts.toml\"\n",
    );
    std::fs::write(
        dir.path().join("alerts.toml"),
        "[[alert]]\nname = \"busy\"\nkeys = \"web*.conns\"\nwarn = \"avg(3) > 100\"\n",
    )
    .unwrap();
    let host = SpudHost::start_in(dir);
    let mut c = host.connect();
    for v in ["150", "160", "170"] {
        assert!(c
            .ask(&format!("set web1.conns {v}"), "\n")
            .starts_with("OK"));
    }
    host.wait_for("alert.busy.web1.conns", Duration::from_secs(5), |v| {
        v == "warning"
    });
    let v = spud_tests::http::get_json(&format!("http://{}/api/alerts", host.http.unwrap()));
    assert_eq!(v["alerts"][0]["warn_threshold"], 100.0, "{v:#}");
    let metrics = spud_tests::http::get(&format!("http://{}/metrics", host.http.unwrap())).1;
    assert!(
        metrics.contains("ALERTS{alertname=\"busy\",alertstate=\"firing\",key=\"web1.conns\",severity=\"warning\"} 1"),
        "{metrics}"
    );
    // check-config reads the rules too.
    std::fs::write(
        host.dir.path().join("alerts.toml"),
        "[[alert]]\nname = \"busy\"\nkeys = \"x\"\n",
    )
    .unwrap();
    let out = Command::new(binary("spud-host"))
        .args(["check-config", "--conf"])
        .arg(host.dir.path().join("gatherer.toml"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("alerts.toml:1: [[alert]] busy: warn: a rule needs"),
        "{text}"
    );
}

#[test]
fn spud_rules_test_passes_fails_and_refuses_as_ci_needs() {
    let conf = workspace_root().join("conf");
    let run = |args: &[&Path]| {
        let out = Command::new(binary("spud"))
            .arg("rules")
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let rules = conf.join("alerts.example.toml");
    let (code, text) = run(&[
        Path::new("test"),
        &rules,
        &conf.join("alerts.example.tests.toml"),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("16 passed, 0 failed"), "{text}");
    let (code, text) = run(&[Path::new("check"), &rules]);
    assert_eq!(code, Some(0), "{text}");
    // The fleet's five classic alerts, one rule each for any number of hosts.
    let (code, text) = run(&[
        Path::new("test"),
        &conf.join("alerts.fleet.toml"),
        &conf.join("alerts.fleet.tests.toml"),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("15 passed, 0 failed"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let failing = dir.path().join("failing.toml");
    std::fs::write(
        &failing,
        "[[test]]\nname = \"too eager\"\ninterval = \"10s\"\n[test.series]\n\"web1.load.1\" = \"9 9\"\n\
         [[test.expect]]\nat = \"10s\"\nalert = \"load_high\"\nkey = \"web1.load.1\"\nstate = \"critical\"\n",
    )
    .unwrap();
    let (code, text) = run(&[Path::new("test"), &rules, &failing]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("FAIL line 6: test \"too eager\" at 10s: load_high web1.load.1 is pending, expected critical"), "{text}");

    // A typo in a series is said, not stored as text.
    std::fs::write(&failing, "[[test]]\nname = \"typo\"\n[test.series]\n\"web1.load.1\" = \"1 x3 2\"\n[[test.expect]]\nat = \"10s\"\nactive = []\n").unwrap();
    let (code, text) = run(&[Path::new("test"), &rules, &failing]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("failing.toml:4: test \"typo\": web1.load.1: \"x3\" is not a number"),
        "{text}"
    );
    std::fs::write(&failing, "[[test]]\nname = \"x\"\n[test.series]\n\"a\" = \"1\"\n[[test.expect]]\nat = \"soon\"\nactive = []\n").unwrap();
    let (code, text) = run(&[Path::new("test"), &rules, &failing]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("failing.toml:6: test \"x\": at = \"soon\""),
        "{text}"
    );
    let bad_rules = dir.path().join("bad.toml");
    std::fs::write(
        &bad_rules,
        "[[alert]]\nname = \"x\"\nkeys = \"k\"\nwarn = \"avg(1q) > 1\"\n",
    )
    .unwrap();
    let (code, text) = run(&[Path::new("check"), &bad_rules]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("bad.toml:4: [[alert]] x: warn:"), "{text}");
}

#[test]
fn the_dashboard_shows_alerts_by_severity_and_plots_a_key_with_its_thresholds() {
    use spud_tests::webdriver::Browser;
    assert!(
        Browser::installed(),
        "chromium and chromium-driver are missing: scripts/setup-test-deps installs them"
    );
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_rules(
        dir.path(),
        "[[alert]]\nname = \"disk\"\nkeys = \"*.disk\"\nwarn = \"last > 70\"\ncrit = \"last > 90\"\n\n\
         [[alert]]\nname = \"slow\"\nkeys = \"*.latency\"\nwarn = \"last > 100\"\nfor = \"1h\"\n",
    );
    for v in ["50", "60", "80", "95"] {
        set(&server, "db1.disk", v);
    }
    set(&server, "web1.disk", "75");
    set(&server, "api.latency", "500");
    wait_state(
        &server,
        "alert.disk.db1.disk",
        "critical",
        Duration::from_secs(3),
    );
    let t = Duration::from_secs(20);
    let browser = Browser::start();
    browser.goto(&format!("http://{}/#nothing", server.http.unwrap()));
    let crit = browser.wait(r#"tr[data-alert="disk/db1.disk"] td.sev.critical"#, t);
    assert_eq!(browser.text(&crit), "CRITICAL");
    browser.wait(r#"tr[data-alert="disk/web1.disk"] td.sev.warning"#, t);
    browser.wait(r#"tr[data-alert="slow/api.latency"] td.sev.pending"#, t);
    let count = browser.wait("#alerts-count", t);
    assert_eq!(browser.text(&count), "2 firing, 1 pending");
    // A click opens the key's chart, with the warn and crit thresholds drawn in their
    // colours and the alert's state by its title.
    let row = browser.wait(r#"tr[data-alert="disk/db1.disk"]"#, t);
    browser.click(&row);
    let state = browser.wait(r#".chart[data-group="db1"] .states .sev.critical"#, t);
    assert_eq!(browser.text(&state), "CRITICAL");
    let deadline = Instant::now() + t;
    let red = loop {
        let red = browser.execute(
            "const chart = document.querySelector('.chart[data-group=\"db1\"]');\
             const c = chart && chart.querySelector('canvas');\
             if (!c || chart.hidden) return ['', 0];\
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;\
             let red = 0; for (let i = 0; i < d.length; i += 4) \
               if (d[i + 3] > 100 && d[i] > 120 && d[i] > 2 * d[i + 1] && d[i] > 2 * d[i + 2]) red++;\
             return [chart.dataset.thresholds, red];",
        );
        if red[0] == "2" && red[1].as_u64().unwrap_or(0) > 100 {
            break red;
        }
        assert!(Instant::now() < deadline, "no threshold on the plot: {red}");
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("crit threshold pixels: {}", red[1]);
    let out = workspace_root().join("target/dashboard-alerts.png");
    std::fs::write(&out, browser.screenshot()).unwrap();
    eprintln!("screenshot: {}", out.display());
}

#[test]
fn a_severity_change_resolves_the_old_severity_in_alertmanager_at_once() {
    let am = Alertmanager::start("route:\n  receiver: none\nreceivers:\n  - name: none\n");
    let dir = tempfile::tempdir().unwrap();
    // A long repeat: an alert left behind would stay active for minutes (endsAt = 4 repeats).
    let server = server_with_rules(
        dir.path(),
        &format!(
            "[[alert]]\nname = \"load\"\nkeys = \"box.load\"\nwarn = \"last > 5\"\ncrit = \"last > 8\"\n\n\
             [[notify]]\ntype = \"alertmanager\"\nurl = \"{}\"\nrepeat = \"60s\"\n",
            am.url()
        ),
    );
    // What Alertmanager holds for the key: (severity, state), once it equals `want`.
    let wait_for = |want: &[&str], what: &str| -> Duration {
        let started = Instant::now();
        loop {
            let mut active: Vec<String> = am
                .alerts()
                .iter()
                .filter(|a| a["labels"]["key"] == "box.load")
                .map(|a| a["labels"]["severity"].as_str().unwrap_or("").to_string())
                .collect();
            active.sort();
            if active == want {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{what}: Alertmanager has {active:?}, not {want:?}\n{}",
                server.process.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    set(&server, "box.load", "6");
    let to_warning = wait_for(&["warning"], "warning");
    set(&server, "box.load", "9");
    let to_critical = wait_for(&["critical"], "warning → critical");
    set(&server, "box.load", "6");
    let back = wait_for(&["warning"], "critical → warning");
    set(&server, "box.load", "1");
    let resolved = wait_for(&[], "warning → ok");
    for (step, took) in [
        ("set → warning active", to_warning),
        ("warning → critical, warning resolved", to_critical),
        ("critical → warning, critical resolved", back),
        ("ok → nothing active", resolved),
    ] {
        println!("{step}: {} ms", took.as_millis());
        assert!(took < Duration::from_secs(1), "{step} took {took:?}");
    }
}

#[test]
fn a_flapping_alert_in_alertmanager_carries_the_current_value() {
    let am = Alertmanager::start("route:\n  receiver: none\nreceivers:\n  - name: none\n");
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_rules(
        dir.path(),
        &format!(
            "[[alert]]\nname = \"svc\"\nkeys = \"web1.up\"\ncrit = \"last > 5\"\n\
             flapping = {{ changes = 2, window = \"10m\" }}\n\n\
             [[notify]]\ntype = \"alertmanager\"\nurl = \"{}\"\nrepeat = \"1s\"\n",
            am.url()
        ),
    );
    for value in ["9", "1", "9"] {
        set(&server, "web1.up", value);
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_state(
        &server,
        "alert.svc.web1.up",
        "flapping",
        Duration::from_secs(5),
    );
    set(&server, "web1.up", "7");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alerts = am.alerts();
        let value = alerts
            .iter()
            .find(|a| a["labels"]["severity"] == "flapping")
            .map(|a| a["annotations"]["value"].clone());
        if value == Some("7".into()) {
            break;
        }
        assert!(Instant::now() < deadline, "Alertmanager has {alerts:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
