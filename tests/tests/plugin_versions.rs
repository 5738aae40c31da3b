//! The plugin API's version policy, shown with real plugins built against other versions of
//! `spud-plugin-api`. Each fixture is the chaos plugin, built at test time against a copy of
//! this checkout's `plugin-api/` whose version (or one type) was changed; the fixtures share
//! a target directory under `target/`, so only the first run compiles abi_stable again.

use std::path::{Path, PathBuf};
use std::process::Command;

use spud_tests::{binary, workspace_root, SpudHost};

/// Builds the chaos plugin against a copy of plugin-api at `version`, with `edit` applied
/// to the copy's `src/ffi.rs`. Returns the `.so`.
fn fixture(tag: &str, version: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let root = workspace_root();
    let base = root.join("target/plugin-version-fixtures");
    let src = base.join("src").join(tag);
    let api = src.join("plugin-api");
    let plugin = src.join("plugin");
    std::fs::create_dir_all(api.join("src")).unwrap();
    std::fs::create_dir_all(plugin.join("src")).unwrap();

    for entry in std::fs::read_dir(root.join("plugin-api/src")).unwrap() {
        let path = entry.unwrap().path();
        let mut text = std::fs::read_to_string(&path).unwrap();
        if path.file_name().unwrap() == "ffi.rs" {
            text = edit(text);
        }
        write_if_changed(&api.join("src").join(path.file_name().unwrap()), &text);
    }
    let manifest = std::fs::read_to_string(root.join("plugin-api/Cargo.toml")).unwrap();
    let deps = &manifest[manifest.find("[dependencies]").unwrap()..];
    write_if_changed(
        &api.join("Cargo.toml"),
        &format!("[package]\nname = \"spud-plugin-api\"\nversion = \"{version}\"\nedition = \"2021\"\n\n{deps}"),
    );
    write_if_changed(
        &plugin.join("Cargo.toml"),
        &format!(
            "[package]\nname = \"chaos-{tag}\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nspud-plugin-api = {{ path = \"../plugin-api\" }}\n"
        ),
    );
    let chaos = std::fs::read_to_string(root.join("tests/plugins/chaos/src/lib.rs")).unwrap();
    write_if_changed(&plugin.join("src/lib.rs"), &chaos);
    write_if_changed(
        &src.join("Cargo.toml"),
        "[workspace]\nresolver = \"2\"\nmembers = [\"plugin-api\", \"plugin\"]\n",
    );
    if !src.join("Cargo.lock").exists() {
        std::fs::copy(root.join("Cargo.lock"), src.join("Cargo.lock")).unwrap();
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&src)
        .env("CARGO_TARGET_DIR", base.join("target"))
        .args(["build", "--quiet", "--lib", "-p", &format!("chaos-{tag}")])
        .status()
        .unwrap();
    assert!(status.success(), "building the {tag} fixture failed");
    base.join("target/debug")
        .join(format!("libchaos_{}.so", tag.replace('-', "_")))
}

fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).unwrap();
    }
}

fn current_version() -> String {
    let manifest = std::fs::read_to_string(workspace_root().join("plugin-api/Cargo.toml")).unwrap();
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("plugin-api has its own version line")
        .to_string()
}

/// `check-config` on a host whose only plugin is `so`, with one chaos job.
fn check(so: &Path) -> (bool, String) {
    let dir = SpudHost::prepare(
        &[],
        "[[job]]\nname = \"j\"\nplugin = \"chaos\"\noptions = { mode = \"ok\" }\n",
    );
    std::fs::copy(so, dir.path().join("plugins/fixture.so")).unwrap();
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

#[test]
fn api_versions_load_or_are_refused_in_one_line() {
    let ours = current_version();
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
        let so = fixture(&format!("v{}", version.replace('.', "-")), &version, |t| t);
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
        let so = fixture(&format!("v{}", version.replace('.', "-")), &version, |t| t);
        let (ok, out) = check(&so);
        assert!(!ok);
        let line = out
            .lines()
            .find(|l| l.contains("fixture.so"))
            .unwrap_or_else(|| panic!("{out}"));
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
    let ours = current_version();
    let so = fixture("layout", &ours, |ffi| {
        ffi.replacen(
            "pub struct JobSpec {\n",
            "pub struct JobSpec {\n    /// An extra field the host does not know.\n    pub extra: u64,\n",
            1,
        )
    });
    let (ok, out) = check(&so);
    assert!(!ok);
    let line = out
        .lines()
        .find(|l| l.contains("fixture.so"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("incompatible plugin: "), "{line}");
    assert!(
        line.contains("RUST_LOG=debug shows abi_stable's full report"),
        "{line}"
    );
    assert!(line.len() < 600, "{} characters: {line}", line.len());
}
