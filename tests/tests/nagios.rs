//! The nagios collector running Debian's monitoring-plugins-basic unchanged: status and
//! perfdata as stored beside what the same check says when run directly; and checks that
//! misbehave, each with one clear line while the others carry on.

use std::process::Command;
use std::time::Duration;

use spud_tests::{Client, SpudHost};

const PLUGINS: &str = "/usr/lib/nagios/plugins";
const T: Duration = Duration::from_secs(15);

fn check(name: &str) -> String {
    let path = format!("{PLUGINS}/{name}");
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: scripts/setup-test-deps installs monitoring-plugins-basic"
    );
    path
}

fn job(name: &str, command: &[&str]) -> String {
    let command: Vec<String> = command.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[[job]]\nname = \"{name}\"\nplugin = \"nagios\"\ninterval = \"1s\"\ntimeout = \"2s\"\noptions = {{ command = [{}] }}\n\n",
        command.join(", ")
    )
}

fn newest(c: &mut Client, key: &str) -> Option<String> {
    c.history(key)
        .first()
        .filter(|l| l.starts_with("OK 1 "))
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or("").to_string())
}

#[test]
fn monitoring_plugins_basic_status_output_and_perfdata_as_stored() {
    let load = check("check_load");
    let disk = check("check_disk");
    let tcp = check("check_tcp");
    let procs = check("check_procs");
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = open.local_addr().unwrap().port().to_string();
    let closed_port = spud_tests::free_port().port().to_string();
    let config = job(
        "load",
        &[&load, "-w", "1000,1000,1000", "-c", "2000,2000,2000"],
    ) + &job("hot", &[&load, "-w", "0,0,0", "-c", "1000,1000,1000"])
        + &job("disk", &[&disk, "-w", "1%", "-c", "0%", "-p", "/"])
        + &job("open", &[&tcp, "-H", "127.0.0.1", "-p", &open_port])
        + &job("closed", &[&tcp, "-H", "127.0.0.1", "-p", &closed_port])
        + &job("procs", &[&procs, "-w", "100000", "-c", "200000"]);
    let host = SpudHost::start(&["nagios"], &config);

    assert_eq!(host.wait_for("load.status", T, |_| true), "ok");
    assert!(host
        .wait_for("load.output", T, |_| true)
        .starts_with("LOAD OK"));
    let mut c = host.connect();
    host.wait_for("load.load1", T, |_| true);
    let direct = Command::new(&load)
        .args(["-w", "1000,1000,1000", "-c", "2000,2000,2000"])
        .output()
        .unwrap();
    let direct = String::from_utf8_lossy(&direct.stdout).to_string();
    let direct_load1: f64 = direct
        .split("load1=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("check_load said {direct:?}"));
    let ours: f64 = newest(&mut c, "load.load1").unwrap().parse().unwrap();
    assert!(
        (ours - direct_load1).abs() < 1.0,
        "ours {ours}, check_load {direct_load1}"
    );
    assert_eq!(newest(&mut c, "load.load1.warn").as_deref(), Some("1000"));
    assert_eq!(newest(&mut c, "load.load15.crit").as_deref(), Some("2000"));
    assert_eq!(newest(&mut c, "load.load1.min").as_deref(), Some("0"));

    assert_eq!(host.wait_for("hot.status", T, |_| true), "warning");

    // check_disk's perfdata in MB, stored in bytes; `/` becomes the key `_`. Its status is
    // judged against check_disk run directly: a nearly full disk warns on both sides.
    let stored = host.wait_for("disk.status", T, |_| true);
    let direct = Command::new(&disk)
        .args(["-w", "1%", "-c", "0%", "-p", "/"])
        .status()
        .unwrap();
    let direct =
        ["ok", "warning", "critical", "unknown"][direct.code().unwrap_or(3).clamp(0, 3) as usize];
    assert_eq!(stored, direct, "check_disk said {direct} when run directly");
    let used: f64 = host.wait_for("disk._", T, |_| true).parse().unwrap();
    let max: f64 = newest(&mut c, "disk._.max").unwrap().parse().unwrap();
    assert!(
        used > 0.0 && used <= max && max % 1_048_576.0 == 0.0,
        "used {used}, max {max}"
    );

    assert_eq!(host.wait_for("open.status", T, |_| true), "ok");
    let time: f64 = host.wait_for("open.time", T, |_| true).parse().unwrap();
    assert!((0.0..2.0).contains(&time), "{time}");
    assert_eq!(host.wait_for("closed.status", T, |_| true), "critical");
    let output = host.wait_for("closed.output", T, |_| true);
    assert!(output.contains("Connection refused"), "{output}");

    assert_eq!(host.wait_for("procs.status", T, |_| true), "ok");
    let procs: f64 = host.wait_for("procs.procs", T, |_| true).parse().unwrap();
    assert!(procs >= 1.0, "{procs}");
    assert_eq!(
        newest(&mut c, "procs.procs.warn").as_deref(),
        Some("100000")
    );
    drop(open);
}

#[test]
fn checks_that_misbehave_get_one_clear_line_each_and_the_others_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    let script = |name: &str, body: &str, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path.to_str().unwrap().to_string()
    };
    let garbage = script(
        "garbage",
        "echo 'WEIRD | a=1x b== =3 ok=4;5;6'; exit 7",
        0o755,
    );
    let hangs = script("hangs", "sleep 60", 0o755);
    let not_executable = script("plain", "echo OK", 0o644);
    let good = check("check_dummy");
    let config = job("garbage", &[&garbage])
        + &job("hangs", &[&hangs])
        + &job("plain", &[&not_executable])
        + &job("missing", &["/nonexistent/check_nothing"])
        + &job("good", &[&good, "0", "all fine"]);
    let host = SpudHost::start(&["nagios"], &config);
    assert_eq!(host.wait_for("garbage.status", T, |_| true), "unknown");
    assert_eq!(host.wait_for("garbage.ok", T, |_| true), "4");
    assert_eq!(host.wait_for("garbage.ok.warn", T, |_| true), "5");
    assert_eq!(host.wait_for("hangs.status", T, |_| true), "unknown");
    assert!(host
        .wait_for("hangs.output", T, |_| true)
        .starts_with("timed out after"));
    assert_eq!(host.wait_for("plain.status", T, |_| true), "unknown");
    assert!(host
        .wait_for("plain.output", T, |_| true)
        .contains("Permission denied"));
    assert!(host
        .wait_for("missing.output", T, |_| true)
        .contains("No such file"));
    // The good one ticks on throughout.
    let first = host.wait_for("good.output", T, |v| v == "OK: all fine");
    assert_eq!(first, "OK: all fine");
    std::thread::sleep(Duration::from_secs(3));
    let log = host.process.log();
    assert_eq!(
        log.matches("perfdata not understood, left out: a=1x b== =3")
            .count(),
        1,
        "{log}"
    );
    assert!(log.contains("killed with its process group"), "{log}");
    let mut c = host.connect();
    let good_ticks = c.history("good.status").len();
    assert!(good_ticks >= 4, "the good check ran {good_ticks} times");
}
