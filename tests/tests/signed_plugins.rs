//! Signed plugins, end to end: a real spud-host with `[host] trusted_keys`, plugins signed
//! with Debian's `minisign` by a key the test makes. Unsigned, signed by another key, or
//! altered after signing: one line naming the file and the reason, and the running version
//! stays; a signature published before or after its file is picked up like any change.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use spud_tests::minisign::SigningKey;
use spud_tests::{binary, install_plugin, plugin, Client, SpudHost};

const T: Duration = Duration::from_secs(30);

fn last(c: &mut Client, key: &str) -> Option<u64> {
    c.history(key)
        .first()
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Copies `from` to `to` through a hidden name and a rename, as a deploy should.
fn publish(from: &Path, to: &Path) {
    let tmp = to.with_file_name(format!(
        ".{}.tmp",
        to.file_name().unwrap().to_string_lossy()
    ));
    install_plugin(from, &tmp);
    std::fs::rename(&tmp, to).unwrap();
}

#[test]
fn only_signed_plugins_load_and_a_bad_signature_keeps_the_running_version() {
    let key = SigningKey::new();
    let stranger = SigningKey::new();
    let config = format!(
        "[host]\ntrusted_keys = [\"{}\"]\n\n\
         [[job]]\nname = \"v\"\nplugin = \"versioned\"\ninterval = \"100ms\"\n\n\
         [[job]]\nname = \"iso\"\nplugin = \"versioned\"\ninterval = \"100ms\"\nisolation = \"process\"\n\n\
         [[job]]\nname = \"c\"\nplugin = \"chaos\"\ninterval = \"100ms\"\noptions = {{ mode = \"ok\" }}\n",
        key.public()
    );
    let dir = SpudHost::prepare(&["versioned"], &config);
    let plugins = dir.path().join("plugins");
    let target = plugins.join("versioned.so");
    key.sign(&target);
    let host = SpudHost::start_in(dir);
    let mut c = host.connect();
    host.wait_for("v.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 3);
    host.wait_for("iso.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 3);
    let by = host.wait_for("host.plugin.versioned.signed_by", T, |_| true);
    assert!(key.public().starts_with(by.trim_end_matches('…')), "{by}");
    host.wait_for("host.plugin.versioned.signature_check_ms", T, |v| {
        v.parse::<f64>().is_ok()
    });

    let still_v1 = |c: &mut Client, what: &str| {
        let before = last(c, "v.tick").unwrap_or(0);
        std::thread::sleep(Duration::from_millis(400));
        let after = last(c, "v.tick").unwrap_or(0);
        assert!(after >= before + 2, "{what}: the running version stopped");
        assert_eq!(last(c, "v.version"), Some(1), "{what}");
        assert_eq!(last(c, "iso.version"), Some(1), "{what}");
    };
    let refused = |needle: &str| {
        host.process.wait_log(needle, T);
        let error = host.wait_for("host.plugin.versioned.last_error", T, |v| {
            v.contains(needle)
        });
        assert_eq!(
            host.wait_for("host.plugin.versioned.status", T, |_| true),
            "reload_failed"
        );
        error
    };

    // A new version whose signature is still the old one's: altered after signing.
    let v2 = plugin("versioned-v2");
    publish(&v2, &target);
    refused("altered after signing");
    still_v1(&mut c, "altered");

    // Signed, but by a key the host does not trust.
    stranger.sign_into(&v2, &plugins.join("versioned.so.minisig"));
    refused("signed by a key that is not in trusted_keys");
    still_v1(&mut c, "stranger");

    // The right signature, published after its file: version 2 runs, here and isolated.
    key.sign_into(&v2, &plugins.join("versioned.so.minisig"));
    host.wait_for("v.version", T, |v| v == "2");
    host.wait_for("iso.version", T, |v| v == "2");

    // An unsigned new plugin: one line naming the file and the reason; nothing runs it.
    let chaos = plugins.join("chaos.so");
    publish(&plugin("chaos"), &chaos);
    let line = host.process.wait_log("chaos.so not loaded", T);
    let line = line
        .lines()
        .find(|l| l.contains("chaos.so not loaded"))
        .unwrap()
        .to_string();
    assert!(
        line.contains("unsigned: no signature") && line.contains("chaos.so.minisig"),
        "{line}"
    );
    assert_eq!(last(&mut c, "c.tick"), None);

    // Its signature arrives: it loads and its job runs.
    key.sign(&chaos);
    host.wait_for("c.tick", T, |v| v.parse::<u64>().unwrap_or(0) >= 3);

    // A signature published before its file: the file loads on arrival.
    std::fs::remove_file(&target).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    key.sign_into(&plugin("versioned"), &plugins.join("versioned.so.minisig"));
    publish(&plugin("versioned"), &target);
    host.wait_for("v.version", T, |v| v == "1");
    host.wait_for("iso.version", T, |v| v == "1");
}

#[test]
fn check_config_reports_each_plugins_signature() {
    let key = SigningKey::new();
    let stranger = SigningKey::new();
    let config = format!(
        "[host]\ntrusted_keys_file = \"{}\"\n\n\
         [[job]]\nname = \"v\"\nplugin = \"versioned\"\n",
        key.public_file().display()
    );
    let dir = SpudHost::prepare(&["versioned", "chaos", "test"], &config);
    let plugins = dir.path().join("plugins");
    key.sign(&plugins.join("versioned.so"));
    stranger.sign(&plugins.join("test.so"));
    let check = |conf: &Path| {
        let out = Command::new(binary("spud-host"))
            .args(["check-config", "--conf"])
            .arg(conf)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let conf = dir.path().join("gatherer.toml");
    let (ok, out) = check(&conf);
    assert!(!ok, "{out}");
    let line = |needle: &str| {
        out.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{out}"))
    };
    let versioned = line("versioned.so (versioned)");
    assert!(
        versioned.starts_with("signature: ") && versioned.contains("signed by trusted key RW"),
        "{versioned}"
    );
    assert!(line("chaos.so not loaded").contains("unsigned"), "{out}");
    assert!(
        line("test.so not loaded").contains("signed by a key that is not in trusted_keys"),
        "{out}"
    );

    // Both signed: it passes, and says so.
    key.sign(&plugins.join("chaos.so"));
    key.sign(&plugins.join("test.so"));
    let (ok, out) = check(&conf);
    assert!(ok, "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("signed by trusted key"))
            .count(),
        3,
        "{out}"
    );

    // Without keys: every plugin loads, not checked.
    std::fs::write(&conf, "[[job]]\nname = \"v\"\nplugin = \"versioned\"\n").unwrap();
    let (ok, out) = check(&conf);
    assert!(ok, "{out}");
    assert!(out.contains("not checked (no trusted_keys)"), "{out}");

    // A key that is not one is named.
    std::fs::write(&conf, "[host]\ntrusted_keys = [\"RWQnot-a-key\"]\n").unwrap();
    let (ok, out) = check(&conf);
    assert!(!ok);
    assert!(
        out.contains(
            "gatherer.toml:2: [host] trusted key \"RWQnot-a-key\" is not a minisign public key"
        ),
        "{out}"
    );
}
