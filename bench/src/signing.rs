//! Signed plugins: what checking a plugin's minisign signature adds to loading it. Each
//! plugin is loaded by a fresh `spud-host` (a job names it), once with `[host]
//! trusted_keys` set and the plugin signed with Debian's `minisign`, once without keys (the
//! reference: the same load, unchecked), in alternation; the host's own figures say how
//! long the load took (`host.plugin.<name>.load_ms`) and, of it, the signature's check
//! (`.signature_check_ms`). Each plugin as `cargo build --release` leaves it (with its
//! debugging information) and stripped of it (`strip --strip-debug`, as a package ships it):
//! the check reads every byte, the load does not.

use std::time::Duration;

use anyhow::Result;
use spud_tests::minisign::SigningKey;
use spud_tests::{plugin, SpudHost};

use crate::common::median;

/// Small to large: the plugin's job (options that let it start, or at least load).
const PLUGINS: [(&str, &str); 4] = [
    ("test", ""),
    ("statsd", "options = { listen = \"localhost:0\" }"),
    ("influx", "options = { listen = \"localhost:0\" }"),
    ("nats", ""),
];

pub fn signing(quick: bool, report: &mut Vec<String>) -> Result<()> {
    let rounds = if quick { 3 } else { 9 };
    let key = SigningKey::new();
    println!("== signed plugins: a plugin's load with and without its signature checked, {rounds} host starts each");
    for (name, options) in PLUGINS {
        for stripped in [false, true] {
            measure(name, options, stripped, rounds, &key, report)?;
        }
    }
    Ok(())
}

fn measure(
    name: &str,
    options: &str,
    stripped: bool,
    rounds: usize,
    key: &SigningKey,
    report: &mut Vec<String>,
) -> Result<()> {
    let built = plugin(name);
    let file = if stripped {
        let out = std::env::temp_dir().join(format!("spud-bench-stripped-{name}.so"));
        let status = std::process::Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&out)
            .arg(&built)
            .status()?;
        anyhow::ensure!(status.success(), "strip --strip-debug {}", built.display());
        out
    } else {
        built
    };
    let bytes = std::fs::metadata(&file)?.len();
    let what = format!("{name}.so{}", if stripped { ", stripped" } else { "" });
    let (mut plain, mut signed, mut check) = (Vec::new(), Vec::new(), Vec::new());
    {
        for _ in 0..rounds {
            for keys in [false, true] {
                let head = if keys {
                    format!("[host]\ntrusted_keys = [\"{}\"]\n\n", key.public())
                } else {
                    String::new()
                };
                let config =
                    format!("{head}[[job]]\nname = \"j\"\nplugin = \"{name}\"\n{options}\n");
                let dir = SpudHost::prepare(&[], &config);
                spud_tests::install_plugin(&file, &dir.path().join(format!("plugins/{name}.so")));
                if keys {
                    key.sign(&dir.path().join(format!("plugins/{name}.so")));
                }
                let host = SpudHost::start_in(dir);
                let figure = |what: &str| -> f64 {
                    host.wait_for(
                        &format!("host.plugin.{name}.{what}"),
                        Duration::from_secs(30),
                        |v| v.parse::<f64>().is_ok(),
                    )
                    .parse()
                    .unwrap()
                };
                if keys {
                    signed.push(figure("load_ms"));
                    check.push(figure("signature_check_ms"));
                } else {
                    plain.push(figure("load_ms"));
                }
            }
        }
    }
    let (plain, signed, check) = (median(plain), median(signed), median(check));
    println!(
        "{what} ({:.1} MB): load {plain:.2} ms unchecked, {signed:.2} ms checked, of which the check {check:.2} ms",
        bytes as f64 / 1e6
    );
    report.push(format!(
        "| signed plugin load: {what} ({:.1} MB), median of {rounds} | {signed:.2} ms, of which the signature check {check:.2} ms | {plain:.2} ms unchecked (no trusted_keys) | {:.2}× (check = {:.0}% of the checked load) |",
        bytes as f64 / 1e6,
        signed / plain,
        100.0 * check / signed
    ));
    Ok(())
}
