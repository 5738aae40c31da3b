//! Memory per key: RSS with 100 samples of every key, for the value mixes monitoring sends
//! as text: counters growing by a constant, 2-decimal gauges, random 6-significant-digit
//! floats, and a realistic mix (random-walk gauges, monotonic counters, percentages, 5%
//! status words); and the realistic mix at 1,000,000 keys.

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use anyhow::Result;
use spud_tests::SpudServer;

use crate::common::*;
use crate::Scale;

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
    for mix in [Mix::Counters, Mix::Gauges, Mix::Floats, Mix::Realistic] {
        let per_key = per_key(scale.memory_keys, mix)?;
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
        let per_key = per_key(keys, Mix::Realistic)?;
        let gib = per_key * keys as f64 / f64::from(1u32 << 30);
        report.push(format!(
            "| RSS of {keys} keys × 100 samples of a realistic mix | {gib:.2} GiB | target ≤ 1 GiB | {gib:.2}× the target |"
        ));
    }
    Ok(())
}

/// Bytes of RSS per key once `keys` keys hold 100 samples of `mix` each.
fn per_key(keys: usize, mix: Mix) -> Result<f64> {
    println!("== memory: {keys} keys × 100 samples of {}", mix.name());
    let server = SpudServer::start(&[]);
    thread::sleep(Duration::from_millis(300));
    let before = server.process.rss_kib();
    let conns = 4;
    let workers: Vec<_> = (0..conns)
        .map(|c| {
            let addr = server.addr;
            thread::spawn(move || -> Result<()> {
                let mut rng = fastrand::Rng::with_seed(c as u64);
                let mut stream = TcpStream::connect(addr)?;
                let mut payload = Vec::new();
                let mine: Vec<usize> = (c..keys).step_by(conns).collect();
                let mut states = vec![0i64; mine.len()];
                for round in 0..100u64 {
                    payload.clear();
                    for (&k, state) in mine.iter().zip(states.iter_mut()) {
                        writeln!(
                            payload,
                            "qset {} mem.host{}.stat{} {}\r",
                            1_790_000_000 + round * 5,
                            k / 100,
                            k % 100,
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
