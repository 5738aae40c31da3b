//! The Debian package, as a user meets it: `scripts/package` builds it (from this test's
//! debug build), `dpkg -i` installs it on this machine, `spud-host` runs as the installed
//! unit's `ExecStart` says, as the `spud` user; a heartbeat arrives, `man spud` renders, a
//! plugin dropped into `/usr/lib/spud/plugins` is picked up and runs once a job names it;
//! `dpkg --purge` leaves only what Debian's policy keeps (the system user); lintian finds no
//! error.
//!
//! It installs system-wide, so it needs root (or fakeroot-free sudo): a machine where that is
//! not wanted says so with `SPUD_SKIP_PACKAGE_TEST=1`, and the test counts as skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use spud_tests::{plugin, workspace_root, Process};

const T: Duration = Duration::from_secs(30);

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Every file and folder the package put on the machine, from dpkg's own list.
fn installed_files() -> Vec<PathBuf> {
    let out = run(Command::new("dpkg").args(["-L", "spud"]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .filter(|p| p != Path::new("/."))
        .collect()
}

/// `spud get KEY` with the installed client, until `ok` holds.
fn wait_for(key: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + T;
    loop {
        let out = Command::new("/usr/bin/spud")
            .args(["get", key])
            .output()
            .unwrap();
        let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && ok(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{key} never came: {value:?} {}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_package_installs_runs_as_its_unit_says_and_purges_clean() {
    if std::env::var_os("SPUD_SKIP_PACKAGE_TEST").is_some() {
        spud_tests::skip(
            "the_package_installs_runs_as_its_unit_says_and_purges_clean",
            "SPUD_SKIP_PACKAGE_TEST is set",
        );
        return;
    }
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "installing the package needs root; set SPUD_SKIP_PACKAGE_TEST=1 to skip it knowingly"
    );
    let root = workspace_root();
    // A leftover of an interrupted run first.
    let _ = Command::new("dpkg").args(["--purge", "spud"]).output();

    // Built as a user builds it, from this test's debug build.
    run(Command::new(root.join("scripts/package"))
        .env("SPUD_PACKAGE_PROFILE", "dev")
        .current_dir(&root));
    let deb: PathBuf = std::fs::read_dir(root.join("target/debian"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("scripts/package leaves a .deb in target/debian/");
    let lintian = Command::new("lintian")
        .arg(&deb)
        .output()
        .expect("lintian runs (scripts/setup-test-deps installs it)");
    let said = text(&lintian);
    assert!(
        !said.lines().any(|l| l.starts_with("E: ")),
        "lintian:\n{said}"
    );

    run(Command::new("dpkg").arg("-i").arg(&deb));
    let files = installed_files();
    for path in [
        "/usr/bin/spud-host",
        "/usr/bin/spud-server",
        "/usr/bin/spud",
        "/etc/spud/gatherer.toml",
        "/usr/lib/spud/plugins/test.so",
        "/usr/share/man/man1/spud.1.gz",
        "/usr/lib/systemd/system/spud-host.service",
    ] {
        assert!(
            files.iter().any(|f| f == Path::new(path)),
            "{path} is not in the package"
        );
    }
    run(Command::new("id").arg("spud"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata("/usr/lib/spud/plugins/test.so")
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o644);

    // `man spud` renders.
    let man = run(Command::new("man")
        .arg("spud")
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80"));
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(
        page.contains("spud - ") && page.contains("SYNOPSIS") && page.contains("--server"),
        "{page}"
    );

    // spud-host as the installed unit says: its ExecStartPre, then its ExecStart, as its User.
    let unit = std::fs::read_to_string("/usr/lib/systemd/system/spud-host.service").unwrap();
    let line = |key: &str| -> Vec<String> {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in the unit"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let user = line("User").remove(0);
    // setpriv runs the command in its own place (runuser would stay its parent, and
    // killing runuser would leave the host running).
    let as_user = |words: &[String]| {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={user}"))
            .arg(format!("--regid={user}"))
            .args(["--init-groups", "--"])
            .args(words)
            .env("RUST_LOG", "info");
        cmd
    };
    run(&mut as_user(&line("ExecStartPre")));
    let (host, _) = Process::start(as_user(&line("ExecStart")), "running ", T);
    assert_eq!(
        wait_for("test.heartbeat", |v| !v.is_empty())
            .split_whitespace()
            .last(),
        Some("1")
    );
    wait_for("box.load.1", |v| !v.is_empty());

    // A plugin dropped into the plugins folder is found at once, and runs when a job names it.
    spud_tests::install_plugin(
        &plugin("chaos"),
        Path::new("/usr/lib/spud/plugins/.chaos.so.tmp"),
    );
    std::fs::rename(
        "/usr/lib/spud/plugins/.chaos.so.tmp",
        "/usr/lib/spud/plugins/chaos.so",
    )
    .unwrap();
    host.wait_log("found plugin chaos", T);
    let config = std::fs::read_to_string("/etc/spud/gatherer.toml").unwrap();
    std::fs::write(
        "/etc/spud/gatherer.toml",
        format!("{config}\n[[job]]\nname = \"dropped\"\nplugin = \"chaos\"\ninterval = \"1s\"\noptions = {{ mode = \"ok\" }}\n"),
    )
    .unwrap();
    wait_for("dropped.tick", |v| !v.is_empty());
    drop(host);
    std::fs::remove_file("/usr/lib/spud/plugins/chaos.so").unwrap();

    // Purged: nothing of it is left but the system user, as Debian's policy has it.
    run(Command::new("dpkg").args(["--purge", "spud"]));
    let left: Vec<&PathBuf> = files.iter().filter(|f| f.exists() && !f.is_dir()).collect();
    assert!(left.is_empty(), "left after purge: {left:?}");
    for dir in ["/etc/spud", "/var/lib/spud", "/usr/lib/spud"] {
        assert!(!Path::new(dir).exists(), "{dir} is left after purge");
    }
}
