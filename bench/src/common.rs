//! What the sections share: medians and rates, reading replies, subscribing, CPU time,
//! publishing a plugin version.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use spud_tests::Client;

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M/s", r / 1e6)
    } else {
        format!("{:.0}k/s", r / 1e3)
    }
}

pub fn read_until_done(stream: &mut TcpStream) -> Result<()> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"OK done\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            bail!("connection closed early");
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

pub fn memchr_count(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

/// CPU time (user + system) of a process so far.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold blanks) start at ") ".
    let rest = &stat[stat.rfind(") ").context("stat format")? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let per_sec: u64 = String::from_utf8(Command::new("getconf").arg("CLK_TCK").output()?.stdout)?
        .trim()
        .parse()
        .unwrap_or(100);
    Ok(Duration::from_secs_f64(ticks as f64 / per_sec as f64))
}

pub fn newest(c: &mut Client, key: &str) -> Option<String> {
    c.history(key)
        .first()
        .and_then(|l| l.splitn(4, ' ').nth(3))
        .map(str::to_string)
}

pub fn publish(plugins: &std::path::Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = plugins.join(format!(".{name}.so.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, plugins.join(format!("{name}.so")))?;
    Ok(())
}

/// Publishes version 2 of the versioned plugin on even rounds and version 1 on odd ones,
/// and returns the time from the rename to its job's first sample.
pub fn swap_version(
    plugins: &std::path::Path,
    versions: &[Vec<u8>; 2],
    round: usize,
    sub: &mut BufReader<TcpStream>,
) -> Result<Duration> {
    let (bytes, version) = if round.is_multiple_of(2) {
        (&versions[1], "2")
    } else {
        (&versions[0], "1")
    };
    let t = Instant::now();
    publish(plugins, "versioned", bytes)?;
    wait_push(sub, "v.version", version)?;
    let took = t.elapsed();
    // Let the next rename be a separate change.
    thread::sleep(Duration::from_millis(25));
    Ok(took)
}

/// Waits for a push whose line ends with ` <key> <value>`.
pub fn wait_push(sub: &mut BufReader<TcpStream>, key: &str, value: &str) -> Result<()> {
    let want = format!(" {key} {value}\r\n");
    let mut line = String::new();
    loop {
        line.clear();
        if sub.read_line(&mut line)? == 0 {
            bail!("subscription closed");
        }
        if line.ends_with(&want) {
            return Ok(());
        }
    }
}

pub fn subscribe(addr: SocketAddr, pattern: &str) -> Result<BufReader<TcpStream>> {
    let mut s = TcpStream::connect(addr)?;
    s.write_all(format!("sub {pattern}\r\n").as_bytes())?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    Ok(r)
}

pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// Subscribers that count the lines (pushes) they receive.
pub fn subscribers(addr: SocketAddr, n: usize, pattern: &str) -> Result<Vec<TcpStream>> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr)?;
            s.write_all(format!("sub {pattern}\r\n").as_bytes())?;
            let mut buf = [0u8; 64];
            let mut got = Vec::new();
            while !got.ends_with(b"\r\n") {
                let k = s.read(&mut buf)?;
                got.extend_from_slice(&buf[..k]);
            }
            Ok(s)
        })
        .collect()
}

/// CPU time of `pid` and of its children it has waited for (`utime + stime + cutime +
/// cstime`); `self` for this process.
pub fn cpu_time_with_children(pid: &str) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = &stat[stat.rfind(") ").context("stat format")? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11..15]
        .iter()
        .map(|f| f.parse::<u64>())
        .sum::<Result<u64, _>>()?;
    let per_sec: u64 = String::from_utf8(Command::new("getconf").arg("CLK_TCK").output()?.stdout)?
        .trim()
        .parse()
        .unwrap_or(100);
    Ok(Duration::from_secs_f64(ticks as f64 / per_sec as f64))
}

/// A folder for collectd: not hidden, for its csv plugin refuses to write under a name
/// that begins with a dot (`tempfile`'s default).
pub fn collectd_dir() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix("spud-bench-collectd-")
        .tempdir()?)
}

/// Every file under `dir`, however deep (none if it cannot be read).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(walkdir::DirEntry::into_path)
        .collect()
}
