//! What an agent costs. Two measures, each beside Debian's collectd doing the same in the
//! same run:
//!
//! - **While nothing happens**: resident memory, threads, CPU over a quiet window, and the
//!   memory the host's private plugin copies hold in tmpfs (`/dev/shm`, not part of its
//!   resident figure but memory all the same). For `spud-host` with the shipped
//!   `conf/gatherer.toml` (every plugin of the workspace in its folder, as `scripts/run`
//!   publishes them), and for a host pushing to a remote server; collectd collects the same
//!   every 5 s (cpu, load, memory, interface, disk, statsd, csv).
//! - **CPU per collected sample**: procstat pushing to a remote server against collectd's
//!   cpu, load, memory, interface and disk plugins writing CSV, at 1 s and at 5 s, in
//!   CPU-seconds per million samples (a value of collectd's is one sample).

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use spud_tests::{free_port, Client, Process, SpudHost, SpudServer};

use crate::common::*;

/// One process's footprint.
struct Footprint {
    rss_kib: u64,
    /// Of which anonymous (heap, stacks) and file-backed (the binary's and libraries'
    /// pages, shared with the page cache).
    anon_kib: u64,
    file_kib: u64,
    threads: u64,
    cpu_s: f64,
    /// Bytes of plugin copies in tmpfs.
    copies: u64,
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time of every thread of `pid`, to the nanosecond (the kernel's scheduler figures:
/// `/proc/PID/stat` counts in ticks of 10 ms, too coarse for an idle daemon).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Bytes the files under `dir` take (holes take none).
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

/// Waits `warm`, then measures CPU over `window` and memory and threads at its end.
fn measure(pid: u32, warm: Duration, window: Duration) -> Result<Footprint> {
    thread::sleep(warm);
    let before = cpu_ns(pid);
    thread::sleep(window);
    let after = cpu_ns(pid);
    anyhow::ensure!(after > 0, "process {pid} is gone");
    Ok(Footprint {
        rss_kib: status_field(pid, "VmRSS:"),
        anon_kib: status_field(pid, "RssAnon:"),
        file_kib: status_field(pid, "RssFile:") + status_field(pid, "RssShmem:"),
        threads: status_field(pid, "Threads:"),
        cpu_s: (after - before) as f64 / 1e9,
        copies: disk_bytes(Path::new(&format!("/dev/shm/spud-host-{pid}"))),
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
fn shipped_config() -> Result<String> {
    let text = std::fs::read_to_string(spud_tests::workspace_root().join("conf/gatherer.toml"))?;
    let mut text = text
        .replace("../plugins", "plugins")
        .replace("../data/spud.state", "data/spud.state");
    for port in ["127.0.0.1:9107", "127.0.0.1:8125", "127.0.0.1:2003"] {
        text = text.replace(port, &free_port().to_string());
    }
    Ok(text.replace(
        "[server]\n",
        &format!("[server]\nhttp = \"{}\"\n", free_port()),
    ))
}

/// A host in its own folder, every workspace plugin beside it, pushing to `central` with
/// one procstat job every `interval`.
fn pushing_host(central: &SpudServer, interval: &str) -> Result<SpudHost> {
    let dir = tempfile::tempdir()?;
    publish_all(dir.path())?;
    std::fs::write(
        dir.path().join("gatherer.toml"),
        format!(
            "[server]\nremote = \"{}\"\n\n[[job]]\nname = \"box\"\nplugin = \"procstat\"\ninterval = \"{interval}\"\n",
            central.addr
        ),
    )?;
    Ok(SpudHost::start_in(dir))
}

/// collectd collecting what procstat does every `interval` seconds, writing CSV under
/// `dir/csv`; with `statsd`, a StatsD listener too.
fn collectd_config(dir: &Path, interval: u64, statsd: bool) -> String {
    let d = dir.display();
    let statsd = if statsd {
        format!(
            "LoadPlugin statsd\n<Plugin statsd>\n  Host \"127.0.0.1\"\n  Port \"{}\"\n</Plugin>\n",
            free_port().port()
        )
    } else {
        String::new()
    };
    format!(
        "Hostname \"bench\"\nFQDNLookup false\nBaseDir \"{d}\"\nPIDFile \"{d}/collectd.pid\"\n\
         TypesDB \"/usr/share/collectd/types.db\"\nInterval {interval}\n\
         LoadPlugin cpu\nLoadPlugin load\nLoadPlugin memory\nLoadPlugin interface\nLoadPlugin disk\n\
         {statsd}LoadPlugin csv\n<Plugin csv>\n  DataDir \"{d}/csv\"\n</Plugin>\n"
    )
}

fn start_collectd(dir: &Path, interval: u64, statsd: bool) -> Result<Process> {
    let conf = dir.join("collectd.conf");
    std::fs::write(&conf, collectd_config(dir, interval, statsd))?;
    let mut cmd = Command::new("/usr/sbin/collectd");
    cmd.arg("-f").arg("-C").arg(&conf);
    let (collectd, _) = Process::start(cmd, "Initialization complete", Duration::from_secs(20));
    Ok(collectd)
}

pub fn footprint(quick: bool, report: &mut Vec<String>) -> Result<()> {
    anyhow::ensure!(
        Path::new("/usr/sbin/collectd").exists(),
        "collectd is missing: scripts/setup-test-deps installs it"
    );
    idle(quick, report)?;
    per_sample(quick, report)
}

fn idle(quick: bool, report: &mut Vec<String>) -> Result<()> {
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
    std::fs::write(dir.path().join("gatherer.toml"), shipped_config()?)?;
    let host = SpudHost::start_in(dir);
    let ours = measure(host.process.pid(), warm, window)?;
    drop(host);

    let central = SpudServer::start(&[]);
    let remote = pushing_host(&central, "5s")?;
    let pushing = measure(remote.process.pid(), warm, window)?;
    drop(remote);

    let cdir = collectd_dir()?;
    let collectd = start_collectd(cdir.path(), 5, true)?;
    let theirs = measure(collectd.pid(), warm, window).context("collectd")?;
    drop(collectd);

    let mb = |f: &Footprint| f.rss_kib as f64 / 1024.0;
    for (what, f) in [
        ("spud-host, shipped config", &ours),
        ("spud-host pushing to a remote server", &pushing),
        (
            "collectd (cpu, load, memory, interface, disk, statsd, csv)",
            &theirs,
        ),
    ] {
        println!(
            "  {what}: {:.1} MB resident ({:.1} MB anonymous, {:.1} MB of files), {} threads, {:.3} CPU-s, plugin copies in tmpfs {:.1} MB",
            mb(f),
            f.anon_kib as f64 / 1024.0,
            f.file_kib as f64 / 1024.0,
            f.threads,
            f.cpu_s,
            f.copies as f64 / 1_048_576.0
        );
    }
    report.push(format!(
        "| resident memory, shipped config | {:.1} MB | collectd {:.1} MB; target ≤ 16 MB | {:.1}× collectd |",
        mb(&ours),
        mb(&theirs),
        mb(&ours) / mb(&theirs)
    ));
    report.push(format!(
        "| resident memory, pushing to a remote server | {:.1} MB | collectd {:.1} MB; target ≤ 8 MB | {:.1}× collectd |",
        mb(&pushing),
        mb(&theirs),
        mb(&pushing) / mb(&theirs)
    ));
    report.push(format!(
        "| of which anonymous, shipped config / pushing | {:.1} / {:.1} MB | collectd {:.1} MB | |",
        ours.anon_kib as f64 / 1024.0,
        pushing.anon_kib as f64 / 1024.0,
        theirs.anon_kib as f64 / 1024.0
    ));
    report.push(format!(
        "| plugin copies in tmpfs, shipped config / pushing | {:.1} / {:.1} MB | | |",
        ours.copies as f64 / 1_048_576.0,
        pushing.copies as f64 / 1_048_576.0
    ));
    report.push(format!(
        "| threads, shipped config / pushing | {} / {} | collectd {} | |",
        ours.threads, pushing.threads, theirs.threads
    ));
    report.push(format!(
        "| CPU over {} s while nothing is sent, shipped config / pushing | {:.3} / {:.3} CPU-s | collectd {:.3} CPU-s; target ≤ 2× | {:.1}× / {:.1}× |",
        window.as_secs(),
        ours.cpu_s,
        pushing.cpu_s,
        theirs.cpu_s,
        ours.cpu_s / theirs.cpu_s.max(1e-3),
        pushing.cpu_s / theirs.cpu_s.max(1e-3)
    ));
    Ok(())
}

/// Values collectd has written to CSV under `dir` so far (a line holds a time and values).
fn csv_values(dir: &Path) -> u64 {
    files_under(dir)
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| {
            text.lines()
                .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
                .map(|l| l.matches(',').count() as u64)
                .sum::<u64>()
        })
        .sum()
}

/// Waits until `count` moves, then returns its new value and the process's CPU then: a
/// window that starts and ends on a collect counts whole collects.
fn on_change(pid: u32, within: Duration, mut count: impl FnMut() -> u64) -> Result<(u64, u64)> {
    let first = count();
    let deadline = Instant::now() + within;
    loop {
        let now = count();
        if now != first {
            return Ok((now, cpu_ns(pid)));
        }
        anyhow::ensure!(Instant::now() < deadline, "nothing collected in {within:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// CPU-seconds per million samples, and samples a second, over `window`.
fn cost(
    pid: u32,
    interval: Duration,
    window: Duration,
    mut count: impl FnMut() -> u64,
) -> Result<(f64, f64)> {
    // The host's figures are stored every 5 s; a window spans whole reports.
    let within = interval.max(Duration::from_secs(5)) * 3;
    let (n0, cpu0) = on_change(pid, within, &mut count)?;
    let started = Instant::now();
    thread::sleep(window);
    let (n1, cpu1) = on_change(pid, within, &mut count)?;
    let samples = (n1 - n0) as f64;
    anyhow::ensure!(samples > 0.0, "no samples in the window");
    let cpu_s = (cpu1 - cpu0) as f64 / 1e9;
    Ok((
        cpu_s / samples * 1e6,
        samples / started.elapsed().as_secs_f64(),
    ))
}

fn per_sample(quick: bool, report: &mut Vec<String>) -> Result<()> {
    let window = Duration::from_secs(if quick { 20 } else { 60 });
    println!(
        "== CPU per collected sample: procstat against collectd's cpu/load/memory/interface/disk, {}s a side",
        window.as_secs()
    );
    for interval in [1u64, 5] {
        let every = Duration::from_secs(interval);
        let central = SpudServer::start(&[]);
        let host = pushing_host(&central, &format!("{interval}s"))?;
        let mut c: Client = central.connect();
        let (ours, our_rate) = cost(host.process.pid(), every, window, || {
            newest(&mut c, "host.job.box.samples")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        })
        .context("spud-host")?;
        drop(host);

        let cdir = collectd_dir()?;
        let collectd = start_collectd(cdir.path(), interval, false)?;
        let csv = cdir.path().join("csv");
        let (theirs, their_rate) =
            cost(collectd.pid(), every, window, || csv_values(&csv)).context("collectd")?;
        drop(collectd);
        println!(
            "  every {interval}s: spud-host {ours:.1} CPU-s per million samples ({our_rate:.0} samples/s), collectd {theirs:.1} ({their_rate:.0} values/s)"
        );
        report.push(format!(
            "| CPU per million samples, collected every {interval} s | {ours:.1} CPU-s ({our_rate:.0}/s) | collectd {theirs:.1} CPU-s ({their_rate:.0}/s); target ≤ collectd | {:.2}× |",
            ours / theirs
        ));
    }
    Ok(())
}
