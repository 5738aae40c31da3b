//! What an agent costs while nothing happens: resident memory, threads and CPU over a quiet
//! window, for `spud-host` with the shipped `conf/gatherer.toml` (every plugin of the
//! workspace in its plugins folder, as `scripts/run` publishes them), for a host pushing to
//! a remote server, and for Debian's collectd collecting the same every 5 s (cpu, load,
//! memory, interface, disk, statsd, csv), all in the same run.
//!
//! Where a host's bytes go, read from `/proc/PID/smaps` of a host pushing to a remote server
//! with one procstat job and the 17 workspace plugins in its folder: about 17 MB of heap,
//! 7.6 MB of its own binary, 9.8 MB of plugin copies in `/dev/shm` (every `.so` is copied
//! and mapped, 0.5–1.5 MB each, though one is used), 1.3 MB of libc.

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use spud_tests::{free_port, Process, SpudHost, SpudServer};

use crate::common::*;

/// One process's footprint.
struct Footprint {
    rss_kib: u64,
    threads: u64,
    cpu_s: f64,
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Waits `warm`, then measures CPU over `window` and memory and threads at its end.
fn measure(pid: u32, warm: Duration, window: Duration) -> Result<Footprint> {
    thread::sleep(warm);
    let before = cpu_time(pid)?;
    thread::sleep(window);
    let after = cpu_time(pid)?;
    Ok(Footprint {
        rss_kib: status_field(pid, "VmRSS:"),
        threads: status_field(pid, "Threads:"),
        cpu_s: (after - before).as_secs_f64(),
    })
}

/// Every workspace plugin, published into `dir/plugins` as `scripts/run` does.
fn publish_all(dir: &Path) -> Result<()> {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    let root = spud_tests::workspace_root().join("plugins");
    for entry in std::fs::read_dir(&root)? {
        let name = entry?.file_name().to_string_lossy().to_string();
        if root.join(&name).join("Cargo.toml").exists() {
            spud_tests::install_plugin(
                &spud_tests::plugin(&name),
                &plugins.join(format!("{name}.so")),
            );
        }
    }
    Ok(())
}

/// The shipped config, its fixed ports made free ones and its state kept in `dir`.
fn shipped_config(dir: &Path) -> Result<String> {
    let text = std::fs::read_to_string(spud_tests::workspace_root().join("conf/gatherer.toml"))?;
    let mut text = text
        .replace("../plugins", "plugins")
        .replace("../data/spud.state", "data/spud.state");
    for port in ["127.0.0.1:9107", "127.0.0.1:8125", "127.0.0.1:2003"] {
        text = text.replace(port, &free_port().to_string());
    }
    let _ = dir;
    Ok(text.replace(
        "[server]\n",
        &format!("[server]\nhttp = \"{}\"\n", free_port()),
    ))
}

fn collectd_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "Hostname \"bench\"\nFQDNLookup false\nBaseDir \"{d}\"\nPIDFile \"{d}/collectd.pid\"\n\
         TypesDB \"/usr/share/collectd/types.db\"\nInterval 5\n\
         LoadPlugin cpu\nLoadPlugin load\nLoadPlugin memory\nLoadPlugin interface\nLoadPlugin disk\n\
         LoadPlugin statsd\n<Plugin statsd>\n  Host \"127.0.0.1\"\n  Port \"{}\"\n</Plugin>\n\
         LoadPlugin csv\n<Plugin csv>\n  DataDir \"{d}/csv\"\n</Plugin>\n",
        free_port().port()
    )
}

pub fn footprint(quick: bool, report: &mut Vec<String>) -> Result<()> {
    let (warm, window) = if quick {
        (Duration::from_secs(5), Duration::from_secs(20))
    } else {
        (Duration::from_secs(10), Duration::from_secs(60))
    };
    println!(
        "== footprint while nothing is sent: {}s of CPU, memory and threads at its end",
        window.as_secs()
    );

    let dir = tempfile::tempdir()?;
    publish_all(dir.path())?;
    std::fs::write(dir.path().join("gatherer.toml"), shipped_config(dir.path())?)?;
    let host = SpudHost::start_in(dir);
    let ours = measure(host.process.pid(), warm, window)?;
    drop(host);

    let central = SpudServer::start(&[]);
    let remote_dir = tempfile::tempdir()?;
    publish_all(remote_dir.path())?;
    std::fs::write(
        remote_dir.path().join("gatherer.toml"),
        format!(
            "[server]\nremote = \"{}\"\n\n[[job]]\nname = \"box\"\nplugin = \"procstat\"\ninterval = \"5s\"\n",
            central.addr
        ),
    )?;
    let remote = SpudHost::start_in(remote_dir);
    let pushing = measure(remote.process.pid(), warm, window)?;
    drop(remote);

    let cdir = tempfile::tempdir()?;
    let conf = cdir.path().join("collectd.conf");
    std::fs::write(&conf, collectd_config(cdir.path()))?;
    let mut cmd = Command::new("/usr/sbin/collectd");
    cmd.arg("-f").arg("-C").arg(&conf);
    let (collectd, _) = Process::start(cmd, "Initialization complete", Duration::from_secs(20));
    let theirs = measure(collectd.pid(), warm, window).context("collectd")?;
    drop(collectd);

    for (what, f) in [
        ("spud-host, shipped config", &ours),
        ("spud-host pushing to a remote server", &pushing),
        ("collectd (cpu, load, memory, interface, disk, statsd, csv)", &theirs),
    ] {
        println!(
            "  {what}: {:.1} MB resident, {} threads, {:.2} CPU-s",
            f.rss_kib as f64 / 1024.0,
            f.threads,
            f.cpu_s
        );
    }
    let mb = |f: &Footprint| f.rss_kib as f64 / 1024.0;
    report.push(format!(
        "| resident memory, shipped config | {:.1} MB | collectd {:.1} MB; target ≤ 16 MB | {:.1}× collectd |",
        mb(&ours),
        mb(&theirs),
        mb(&ours) / mb(&theirs)
    ));
    report.push(format!(
        "| resident memory, pushing to a remote server | {:.1} MB | target ≤ 8 MB | |",
        mb(&pushing)
    ));
    report.push(format!(
        "| threads, shipped config | {} | collectd {} | |",
        ours.threads, theirs.threads
    ));
    report.push(format!(
        "| CPU over {} s while nothing is sent | {:.2} CPU-s | collectd {:.2} CPU-s; target ≤ 2× | {:.1}× |",
        window.as_secs(),
        ours.cpu_s,
        theirs.cpu_s,
        ours.cpu_s / theirs.cpu_s.max(0.01)
    ));
    Ok(())
}
