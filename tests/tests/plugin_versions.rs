//! The plugin API's version policy, shown with real plugins built against other versions of
//! `spud-plugin-api`. Each fixture is the chaos plugin, built at test time against a copy of
//! this checkout's `plugin-api/` whose version (or one type) was changed; the fixtures share
//! a target directory under `target/`, so only the first run compiles abi_stable again.

use std::path::Path;
use std::process::Command;

use std::time::Duration;

use spud_tests::{api_version, binary, plugin_against_api, plugin_from_commit, SpudHost};

/// `check-config` on a host whose only plugin is `so`, with one chaos job.
fn check(so: &Path) -> (bool, String) {
    let dir = SpudHost::prepare(
        &[],
        "[[job]]\nname = \"j\"\nplugin = \"chaos\"\noptions = { mode = \"ok\" }\n",
    );
    spud_tests::install_plugin(so, &dir.path().join("plugins/fixture.so"));
    let out = Command::new(binary("spud-host"))
        .args(["check-config", "--conf"])
        .arg(dir.path().join("gatherer.toml"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The line of `check-config`'s output that names the fixture.
fn refusal(out: &str) -> &str {
    out.lines()
        .find(|l| l.contains("fixture.so"))
        .unwrap_or_else(|| panic!("{out}"))
}

#[test]
fn api_versions_load_or_are_refused_in_one_line() {
    let ours = api_version();
    let (major, rest) = ours.split_once('.').unwrap();
    let (minor, patch) = rest.split_once('.').unwrap();
    let (minor, patch): (u32, u32) = (minor.parse().unwrap(), patch.parse().unwrap());
    assert_eq!(major, "0", "this test speaks of the 0.x policy");
    assert!(
        patch > 0,
        "an older compatible version needs a patch below ours"
    );

    // An older patch of the same 0.minor loads, and so does a newer one.
    for version in [
        format!("0.{minor}.{}", patch - 1),
        format!("0.{minor}.{}", patch + 5),
    ] {
        let so = plugin_against_api(&format!("v{}", version.replace('.', "-")), &version, |t| t);
        let (ok, out) = check(&so);
        assert!(
            ok,
            "a plugin built against {version} must load on {ours}:\n{out}"
        );
    }

    // Another 0.minor, older or newer, is refused in one short line.
    for version in [
        format!("0.{}.0", minor + 1),
        format!("0.{}.9", minor.saturating_sub(1)),
    ] {
        let so = plugin_against_api(&format!("v{}", version.replace('.', "-")), &version, |t| t);
        let (ok, out) = check(&so);
        assert!(!ok);
        let line = refusal(&out);
        assert!(
            line.contains(&format!("incompatible plugin: built against spud-plugin-api {version}, this host loads plugins built against 0.{minor}.x")),
            "{out}"
        );
    }
}

#[test]
fn a_plugin_whose_types_differ_is_refused_with_a_short_message() {
    // Same version, but a field added to JobSpec: abi_stable's layout check catches it and
    // writes a report of hundreds of lines; the user sees one.
    let ours = api_version();
    let so = plugin_against_api("layout", &ours, |ffi| {
        ffi.replacen(
            "pub struct JobSpec {\n",
            "pub struct JobSpec {\n    /// An extra field the host does not know.\n    pub extra: u64,\n",
            1,
        )
    });
    let (ok, out) = check(&so);
    assert!(!ok);
    let line = refusal(&out);
    assert!(line.contains("incompatible plugin: "), "{line}");
    assert!(
        line.contains("RUST_LOG=debug shows abi_stable's full report"),
        "{line}"
    );
    assert!(line.len() < 600, "{} characters: {line}", line.len());
}

/// The last commit whose plugin-api is 0.1.1: before calls into a plugin had typed
/// failures (0.1.2 appended typed entry points to the root module and the collector).
const API_0_1_1: &str = "31a9381a8f8e350543c45b1a0963f7488187cae4";

#[test]
fn a_plugin_built_against_0_1_1_runs_under_this_host() {
    const T: Duration = Duration::from_secs(20);
    let so = plugin_from_commit("api-0-1-1", API_0_1_1);
    let job = |name: &str, extra: &str, options: &str| {
        format!(
            "[[job]]\nname = \"{name}\"\nplugin = \"chaos\"\ninterval = \"100ms\"\n{extra}options = {{ {options} }}\n\n"
        )
    };
    let config = job("ok", "", "mode = \"ok\"")
        + &job("isolated", "isolation = \"process\"\n", "mode = \"ok\"")
        + &job("panics", "", "mode = \"panic\"")
        + &job("typo", "", "mode = \"ok\", nope = 1");
    let dir = SpudHost::prepare(&[], &config);
    spud_tests::install_plugin(&so, &dir.path().join("plugins/chaos.so"));
    let host = SpudHost::start_in(dir);

    // It loads, and its jobs run, in the host and in a worker.
    assert_eq!(
        host.wait_for("host.plugin.chaos.status", T, |_| true),
        "loaded"
    );
    for key in ["ok.tick", "isolated.tick"] {
        host.wait_for(key, T, |v| v.parse::<u64>().unwrap_or(0) >= 3);
    }
    // Its failures come through its untyped entry points: the message as it wrote it, an
    // error (not a crash: 0.1.1 cannot say it panicked), the job kept running.
    let error = host.wait_for("host.job.panics.last_error", T, |v| {
        v.contains("collect panicked: chaos panic number")
    });
    assert!(!error.is_empty());
    host.wait_for("host.job.panics.errors", T, |v| {
        v.parse::<u64>().unwrap_or(0) >= 3
    });
    assert_eq!(
        host.wait_for("host.job.panics.state", T, |_| true),
        "running"
    );
    // A bad option is refused, naming the job and the field.
    let refused = host.wait_for("host.job.typo.last_error", T, |_| true);
    assert!(
        refused.starts_with("job typo: ") && refused.contains("unknown field `nope`"),
        "{refused}"
    );
    assert_eq!(host.wait_for("host.job.typo.state", T, |_| true), "failed");
}

#[test]
fn a_library_that_is_no_spud_plugin_is_refused_as_exactly_that() {
    // A real shared library of the system's, copied into plugins/ by mistake.
    let (ok, out) = check(Path::new("/lib/x86_64-linux-gnu/libz.so.1"));
    assert!(!ok);
    let line = refusal(&out);
    assert!(
        line.contains("not a SPUD plugin: no spud root module"),
        "{line}"
    );
    assert!(!line.contains("incompatible"), "{line}");
}

/// The file names (before `-N.so`) of the plugin copies `pid` has mapped.
fn mapped_plugins(pid: u32) -> std::collections::BTreeSet<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let copies = format!("/spud-host-{pid}/");
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter_map(|path| path.split_once(&copies).map(|(_, file)| file))
        .filter_map(|file| file.rsplit_once('-').map(|(stem, _)| stem.to_string()))
        .collect()
}

#[test]
fn the_host_maps_only_the_plugins_jobs_name_and_finds_the_others_by_their_declared_name() {
    const T: Duration = Duration::from_secs(20);
    // A plugin older than 0.1.6 declares no name in its file: it is mapped to learn it.
    let old = plugin_from_commit("api-0-1-1", API_0_1_1);
    let config = "[[job]]\nname = \"box\"\nplugin = \"procstat\"\ninterval = \"1s\"\n";
    let dir = SpudHost::prepare(&["procstat", "memcached", "graphite"], config);
    spud_tests::install_plugin(&old, &dir.path().join("plugins/chaos.so"));
    let host = SpudHost::start_in(dir);
    host.wait_for("box.cpu.count", T, |_| true);
    let pid = host.process.pid();
    let expected = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
    assert_eq!(mapped_plugins(pid), expected(&["chaos", "procstat"]));
    for unused in ["memcached", "graphite"] {
        assert_eq!(
            host.wait_for(&format!("host.plugin.{unused}.status"), T, |_| true),
            "unused"
        );
    }
    assert!(!std::fs::read_dir(format!("/dev/shm/spud-host-{pid}"))
        .unwrap()
        .any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("memcached")));

    // A plugin dropped in later, under a file name that is not its name: noted, not mapped.
    let plugins = host.dir.path().join("plugins");
    spud_tests::install_plugin(&spud_tests::plugin("test"), &plugins.join("zz-later.so"));
    host.wait_for("host.plugin.test.status", T, |v| v == "unused");
    assert_eq!(mapped_plugins(pid), expected(&["chaos", "procstat"]));

    // A job names it: found by its declared name, loaded, and its job runs; so does a job
    // of a plugin that was there from the start.
    std::fs::write(
        host.dir.path().join("gatherer.toml"),
        std::fs::read_to_string(host.dir.path().join("gatherer.toml")).unwrap()
            + "\n[[job]]\nname = \"beat\"\nplugin = \"test\"\ninterval = \"1s\"\n\n[[job]]\nname = \"graphite\"\nplugin = \"graphite\"\ninterval = \"1s\"\noptions = { listen = \"127.0.0.1:0\" }\n",
    )
    .unwrap();
    host.wait_for("test.beat", T, |v| v == "1");
    assert_eq!(
        host.wait_for("host.plugin.test.status", T, |_| true),
        "loaded"
    );
    assert_eq!(
        host.wait_for("host.job.graphite.state", T, |_| true),
        "running"
    );
    assert_eq!(
        mapped_plugins(pid),
        expected(&["chaos", "graphite", "procstat", "zz-later"])
    );
    let log = host.process.log();
    assert!(
        log.contains("found plugin memcached in") && log.contains("zz-later.so"),
        "{log}"
    );
}
