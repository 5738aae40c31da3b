//! Memory per key: RSS with 100 samples of every key, for the value mixes monitoring sends
//! as text: counters growing by a constant, 2-decimal gauges, random 6-significant-digit
//! floats, and a realistic mix (random-walk gauges, monotonic counters, percentages, 5%
//! status words); and the realistic mix at 1,000,000 keys. Then this build beside the
//! release before the bit-packed history (built from this repository once), both holding
//! the realistic mix: memory, ingest, `get` of whole histories and `/metrics`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use spud_tests::{binary, workspace_root, SpudServer};

use crate::common::*;
use crate::http::http_get;
use crate::ingest::{race, windowed_over, Speaks, CONNS};
use crate::Scale;

/// The release before the bit-packed history: what "today's figures" are measured on.
const RELEASE: &str = "1b7b77085b19b71a2c87e6f4613b8909fd4c1fdd";

/// A kind of value, and how its text looks.
#[derive(Clone, Copy)]
enum Mix {
    /// Counters growing by a constant (`1000037`).
    Counters,
    /// Random gauges with two decimals (`512.37`).
    Gauges,
    /// Random floats of six significant digits (`0.123457`, `4821.77`).
    Floats,
    /// What a host sends: 35% random-walk gauges with two decimals, 30% counters growing by
    /// a random amount, 30% percentages with one decimal, 5% status words (`up`, `down`).
    Realistic,
}

impl Mix {
    fn name(self) -> &'static str {
        match self {
            Mix::Counters => "counters growing by a constant",
            Mix::Gauges => "random 2-decimal gauges",
            Mix::Floats => "random 6-significant-digit floats",
            Mix::Realistic => "a realistic mix",
        }
    }

    /// The target for this mix, in bytes per key.
    fn target(self) -> f64 {
        match self {
            Mix::Realistic => 400.0,
            _ => 512.0,
        }
    }

    /// The key's next value; `state` is the key's own (a walk's position, a counter).
    fn value(self, rng: &mut fastrand::Rng, key: usize, round: u64, state: &mut i64) -> String {
        if let Mix::Realistic = self {
            return match key % 20 {
                0 => {
                    if round == 0 || rng.u32(0..100) == 0 {
                        *state = i64::from(*state == 0);
                    }
                    if *state == 1 { "up" } else { "down" }.to_string()
                }
                1..=7 => {
                    if round == 0 {
                        *state = 50_000;
                    }
                    *state = (*state + rng.i64(-500..=500)).max(0);
                    format!("{}.{:02}", *state / 100, *state % 100)
                }
                8..=13 => {
                    if round == 0 {
                        *state = 1_000_000 + key as i64;
                    }
                    *state += rng.i64(0..1000);
                    state.to_string()
                }
                _ => {
                    if round == 0 {
                        *state = 500;
                    }
                    *state = (*state + rng.i64(-20..=20)).clamp(0, 1000);
                    format!("{}.{}", *state / 10, *state % 10)
                }
            };
        }
        match self {
            Mix::Counters => (1_000_000 + round * 37 + key as u64).to_string(),
            Mix::Gauges => format!("{}.{:02}", rng.u32(0..1000), rng.u32(0..100)),
            Mix::Floats => {
                let digits = rng.u32(100_000..1_000_000).to_string();
                let point = rng.usize(0..=6);
                match point {
                    0 => digits,
                    6 => format!("0.{digits}"),
                    p => format!("{}.{}", &digits[..6 - p], &digits[6 - p..]),
                }
            }
            Mix::Realistic => unreachable!("answered above"),
        }
    }
}

pub fn memory(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
    let this = binary("spud-server");
    for mix in [Mix::Counters, Mix::Gauges, Mix::Floats, Mix::Realistic] {
        let per_key = per_key(&this, scale.memory_keys, mix)?;
        report.push(format!(
            "| RSS per key, {} keys × 100 samples of {} | {per_key:.0} bytes | target ≤ {} bytes | {:.2}× the target |",
            scale.memory_keys,
            mix.name(),
            mix.target(),
            per_key / mix.target()
        ));
    }
    if scale.memory_keys >= 100_000 {
        let keys = 1_000_000;
        let per_key = per_key(&this, keys, Mix::Realistic)?;
        let gib = per_key * keys as f64 / f64::from(1u32 << 30);
        report.push(format!(
            "| RSS of {keys} keys × 100 samples of a realistic mix | {gib:.2} GiB | target ≤ 1 GiB | {gib:.2}× the target |"
        ));
    }
    beside_the_release(&this, scale, report)
}

/// Bytes of RSS per key once `keys` keys hold 100 samples of `mix` each.
fn per_key(binary: &Path, keys: usize, mix: Mix) -> Result<f64> {
    println!("== memory: {keys} keys × 100 samples of {}", mix.name());
    let server = SpudServer::start_binary(binary, &[]);
    load(&server, keys, mix)
}

/// Fills `server` with `keys` keys of 100 samples of `mix`; RSS per key it took.
fn load(server: &SpudServer, keys: usize, mix: Mix) -> Result<f64> {
    thread::sleep(Duration::from_millis(300));
    let before = server.process.rss_kib();
    let workers: Vec<_> = (0..CONNS)
        .map(|c| {
            let addr = server.addr;
            thread::spawn(move || -> Result<()> {
                let mut rng = fastrand::Rng::with_seed(c as u64);
                let mut stream = TcpStream::connect(addr)?;
                let mut payload = Vec::new();
                let mine: Vec<usize> = (c..keys).step_by(CONNS).collect();
                let mut states = vec![0i64; mine.len()];
                for round in 0..100u64 {
                    payload.clear();
                    for (&k, state) in mine.iter().zip(states.iter_mut()) {
                        writeln!(
                            payload,
                            "qset {} {} {}\r",
                            1_790_000_000 + round * 5,
                            key_name(k),
                            mix.value(&mut rng, k, round, state)
                        )
                        .unwrap();
                    }
                    stream.write_all(&payload)?;
                }
                stream.write_all(b"get mem.host0.stat0\r\n")?;
                read_until_done(&mut stream)
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker")?;
    }
    thread::sleep(Duration::from_millis(300));
    let after = server.process.rss_kib();
    let per_key = (after.saturating_sub(before)) as f64 * 1024.0 / keys as f64;
    println!("  RSS {before} KiB → {after} KiB: {per_key:.0} bytes per key");
    Ok(per_key)
}

fn key_name(k: usize) -> String {
    format!("mem.host{}.stat{}", k / 100, k % 100)
}

/// This build and the release, each holding the realistic mix, measured in turns: memory,
/// then in each trial the same-client ingest (as against Redis), `get` of whole histories
/// and one `/metrics`.
fn beside_the_release(this: &Path, scale: &Scale, report: &mut Vec<String>) -> Result<()> {
    let release = release_server()?;
    let keys = scale.memory_keys;
    println!("== this build beside the release {}", &RELEASE[..7]);
    let mut servers = Vec::new();
    for binary in [this, release.as_path()] {
        let server = SpudServer::start_binary(binary, &[]);
        let rss = load(&server, keys, Mix::Realistic)?;
        servers.push((server, rss));
    }
    let per_conn = scale.ingest_per_conn / 4;
    let mut figures: [[Vec<f64>; 3]; 2] = Default::default();
    for trial in 0..scale.trials {
        for (n, (server, _)) in servers.iter().enumerate() {
            let prefix = format!("fair.t{trial}");
            figures[n][0].push(windowed_over(
                server.addr,
                Speaks::Spud,
                per_conn,
                250,
                prefix,
            )?);
            figures[n][1].push(whole_gets(server.addr, keys)?);
            let http = server.http.context("the server serves no HTTP")?;
            figures[n][2].push(http_get(http, "/metrics")?.0);
        }
    }
    let [this, release] = figures.map(|f| f.map(median));
    let (rss_this, rss_release) = (servers[0].1, servers[1].1);
    let short = &RELEASE[..7];
    let rows = [
        (format!("RSS per key, {keys} keys × 100 samples of a realistic mix"), format!("{rss_this:.0} bytes"), format!("{rss_release:.0} bytes"), rss_this / rss_release),
        (format!("ingest, same client as against Redis: set, {CONNS} conns, windows of 100 (median of {})", scale.trials), fmt_rate(this[0]), fmt_rate(release[0]), this[0] / release[0]),
        (format!("get of a whole history (100 samples), {CONNS} conns, windows of 100, at {keys} keys"), fmt_rate(this[1]), fmt_rate(release[1]), this[1] / release[1]),
        (format!("/metrics at {keys} keys, ms to the whole body (less is better)"), format!("{:.0} ms", this[2]), format!("{:.0} ms", release[2]), this[2] / release[2]),
    ];
    for (what, now, then, ratio) in rows {
        report.push(format!(
            "| {what} | {now} | release {short}: {then} | {ratio:.2}× |"
        ));
    }
    Ok(())
}

/// `get` of whole histories: each connection asks for its own keys, 100 requests at a
/// time, and reads every reply to its `OK done`. Gets per second.
fn whole_gets(addr: SocketAddr, keys: usize) -> Result<f64> {
    let per_conn = (keys / CONNS).min(5_000);
    let seconds = race(move |c, start| {
        let mut stream = TcpStream::connect(addr)?;
        let mut request = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        start.wait();
        for first in (0..per_conn).step_by(100) {
            request.clear();
            let last = (first + 100).min(per_conn);
            for i in first..last {
                write!(request, "get {}\r\n", key_name(i * CONNS + c))?;
            }
            stream.write_all(&request)?;
            let (mut done, mut tail) = (0, Vec::new());
            while done < last - first {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    bail!("the server closed the connection");
                }
                tail.extend_from_slice(&buf[..n]);
                done += tail.windows(9).filter(|w| w == b"OK done\r\n").count();
                let keep = tail.len().min(8);
                tail.drain(..tail.len() - keep);
            }
        }
        Ok(())
    })?;
    Ok((CONNS * per_conn) as f64 / seconds)
}

/// `spud-server` of `RELEASE`, built once from this repository into `target/`.
fn release_server() -> Result<PathBuf> {
    let root = workspace_root();
    let dir = root
        .join("target")
        .join(format!("release-{}", &RELEASE[..7]));
    let bin = dir.join("target/release/spud-server");
    if bin.exists() {
        return Ok(bin);
    }
    println!(
        "== building spud-server of release {} into {} (once)",
        &RELEASE[..7],
        dir.display()
    );
    let src = dir.join("src");
    std::fs::create_dir_all(&src)?;
    let archive = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["archive", "--format=tar", RELEASE])
        .output()?;
    ensure!(
        archive.status.success(),
        "git archive {RELEASE}: {}",
        String::from_utf8_lossy(&archive.stderr)
    );
    let mut tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&src)
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    tar.stdin
        .take()
        .context("tar's stdin")?
        .write_all(&archive.stdout)?;
    ensure!(tar.wait()?.success(), "tar -x of release {RELEASE}");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--release", "-p", "spud-server", "--manifest-path"])
        .arg(src.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(dir.join("target"))
        .status()?;
    ensure!(built.success(), "building release {RELEASE}");
    Ok(bin)
}
