//! A StatsD server, as Etsy's statsd defines the protocol, with DogStatsD's tags: counters
//! (`|c`, sample rates `|@0.1`), gauges (`|g`, `+n`/`-n` move them), timers and histograms
//! (`|ms`, `|h`, `|d`), sets (`|s`), several metrics per datagram and several values per
//! name (`a:1|c:2|c`). Over UDP and TCP (newline-separated) on one address.
//!
//! Every job interval is a flush: what it stores is described in [`aggregate`]. DogStatsD
//! tags (`|#env:prod,canary`) join the key by the tag rule of
//! `spud_plugin_api::kit::intake::tagged_key`: `req.canary.env:prod`.
//!
//! ```toml
//! [[job]]
//! name = "statsd"
//! plugin = "statsd"
//! interval = "10s"           # the flush interval
//! options = { listen = "0.0.0.0:8125", allow = ["10.0.0.0/8"], percentiles = [90, 99] }
//! ```
//!
//! Options: `listen`; `allow` (the source networks taken; others are counted as
//! `refused`), required beyond loopback unless `open = true` says anyone may send;
//! `udp`, `tcp` (both default true); `percentiles` (default `[90]`);
//! bounds `max_keys` (100,000 names), `max_samples` (1,000,000 timer values per interval),
//! `max_members` (100,000 per set), `forget_after` (360 idle flushes), `max_line` (8,192
//! bytes), `max_connections` (256); `recv_buffer` (bytes asked of the kernel, 8 MiB);
//! `udp_threads` (threads reading the UDP socket, 2).
//! Figures: `host.job.<job>.received` (metrics), `.bad` (lines), `.dropped` (metrics),
//! `.refused` (datagrams and connections).
//! The sockets are handed over to the job's next generation on reload; the old generation
//! flushes what it holds as it stops, so a reload loses no count.

pub mod aggregate;
pub mod parse;

use std::net::{TcpListener, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spud_plugin_api::kit::access::{self, Allow};
use spud_plugin_api::kit::intake::Intake;
use spud_plugin_api::kit::lines::{self, Bounds};
use spud_plugin_api::kit::listen::{self, Held};
use spud_plugin_api::serde::Deserialize;
use spud_plugin_api::{export_plugin, Collector, Error, Host, Job, Plugin, Service};

use aggregate::{Aggregate, Dropped, Limits, Pending};
use parse::Kind;

/// The StatsD server.
pub struct Statsd;

#[derive(Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct Options {
    listen: String,
    /// The networks that may send; beyond loopback, this or `open` is required.
    #[serde(default)]
    allow: Vec<String>,
    /// Anyone may send, knowingly.
    #[serde(default)]
    open: bool,
    #[serde(default = "yes")]
    udp: bool,
    #[serde(default = "yes")]
    tcp: bool,
    #[serde(default = "percentiles")]
    percentiles: Vec<f64>,
    #[serde(default = "max_keys")]
    max_keys: usize,
    #[serde(default = "max_samples")]
    max_samples: usize,
    #[serde(default = "max_members")]
    max_members: usize,
    #[serde(default = "forget_after")]
    forget_after: u32,
    #[serde(default = "max_line")]
    max_line: usize,
    #[serde(default = "max_connections")]
    max_connections: usize,
    #[serde(default = "recv_buffer")]
    recv_buffer: usize,
    #[serde(default = "udp_threads")]
    udp_threads: usize,
}

fn yes() -> bool {
    true
}
fn percentiles() -> Vec<f64> {
    vec![90.0]
}
fn max_keys() -> usize {
    100_000
}
fn max_samples() -> usize {
    1_000_000
}
fn max_members() -> usize {
    100_000
}
fn forget_after() -> u32 {
    360
}
fn max_line() -> usize {
    8192
}
fn max_connections() -> usize {
    256
}
fn recv_buffer() -> usize {
    8 << 20
}
fn udp_threads() -> usize {
    2
}

struct Server {
    udp: Option<Held<UdpSocket>>,
    tcp: Option<Held<TcpListener>>,
    bounds: Bounds,
    allow: Allow,
    percentiles: Vec<f64>,
    interval: Duration,
    state: Arc<State>,
}

/// What the receiving threads share.
struct State {
    host: Host,
    intake: Arc<Intake>,
    limits: Limits,
    /// Gauges, and everything at a flush.
    aggregate: Mutex<Aggregate>,
    /// One per UDP reading thread: its counters, timers and sets since the last flush.
    pending: Vec<Mutex<Pending>>,
}

impl State {
    /// Takes the lines of one datagram (complete: no line goes on in the next one) into
    /// the reading thread's `pending`; `key` is its scratch space for keys.
    fn take_datagram(
        &self,
        bytes: &[u8],
        max_line: usize,
        pending: &Mutex<Pending>,
        key: &mut String,
    ) {
        let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
        let (mut taken, mut dropped) = (0, Dropped::default());
        let mut take = |line: Result<&str, &[u8]>| {
            let len = line.map_or_else(<[u8]>::len, str::len);
            if len > max_line {
                self.intake.bad(
                    "line too long",
                    format_args!("a line of {len} bytes (the bound is {max_line}) was skipped"),
                );
                return;
            }
            let each = |m: parse::Metric<'_>| {
                taken += 1;
                match m.kind {
                    Kind::Gauge => self.aggregate().add(&m, &self.limits, &mut dropped),
                    _ => pending.add(&m, &self.limits, &mut dropped),
                }
            };
            let parsed = match line {
                Ok(text) => parse::text_line(text, key, each),
                Err(bytes) => parse::line(bytes, key, each),
            };
            if let Err(parse::Bad(kind, text)) = parsed {
                self.intake.bad(kind, format_args!("{text:?}"));
            }
        };
        // Checked as UTF-8 once, not line by line (a `\n` never splits a character).
        match std::str::from_utf8(bytes) {
            Ok(text) => text.split('\n').for_each(|l| take(Ok(l))),
            Err(_) => bytes.split(|&b| b == b'\n').for_each(|l| take(Err(l))),
        }
        drop(pending);
        self.report(&dropped);
        self.intake.received(taken);
    }

    /// Takes one line read over TCP; says how many metrics it held (the caller counts).
    fn take_line(&self, line: &[u8]) -> u64 {
        let (mut taken, mut dropped, mut key) = (0, Dropped::default(), String::new());
        let mut aggregate = self.aggregate();
        let parsed = parse::line(line, &mut key, |m| {
            taken += 1;
            aggregate.add(&m, &self.limits, &mut dropped);
        });
        drop(aggregate);
        self.report(&dropped);
        match parsed {
            Ok(()) => taken,
            Err(parse::Bad(kind, text)) => {
                self.intake.bad(kind, format_args!("{text:?}"));
                0
            }
        }
    }

    fn aggregate(&self) -> std::sync::MutexGuard<'_, Aggregate> {
        self.aggregate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts and logs (once a kind) what the limits let go.
    fn report(&self, dropped: &Dropped) {
        if dropped.keys > 0 {
            self.intake.dropped(
                dropped.keys,
                "too many names",
                format_args!(
                    "{} names are held (max_keys); new names wait for idle ones to be forgotten",
                    self.limits.keys
                ),
            );
        }
        if dropped.samples > 0 {
            self.intake.dropped(
                dropped.samples,
                "too many timer values",
                format_args!("{} timer values this interval (max_samples); counts stay exact, statistics use the first", self.limits.samples),
            );
        }
        if dropped.members > 0 {
            self.intake.dropped(
                dropped.members,
                "set too large",
                format_args!(
                    "a set reached {} members this interval (max_members)",
                    self.limits.members
                ),
            );
        }
    }

    fn flush(&self, seconds: f64, percentiles: &[f64]) {
        // Each reader's share is taken out first, so no lock is held while waiting for
        // another (a reader holds its own while it may wait for the aggregate's).
        let shares: Vec<Pending> = self
            .pending
            .iter()
            .map(|p| std::mem::take(&mut *p.lock().unwrap_or_else(|e| e.into_inner())))
            .collect();
        let (mut out, mut dropped) = (Vec::new(), Dropped::default());
        {
            let mut aggregate = self.aggregate();
            for mut share in shares {
                aggregate.take(&mut share, &self.limits, &mut dropped);
            }
            aggregate.flush(seconds, percentiles, self.limits.forget_after, |k, v| {
                out.push((k, v))
            });
        }
        self.report(&dropped);
        for (key, value) in out {
            self.host.set(&key, value);
        }
        self.intake.publish();
    }
}

impl Plugin for Statsd {
    const NAME: &'static str = "statsd";
    const DESCRIPTION: &'static str = "A StatsD server (UDP and TCP), DogStatsD tags";

    fn new_job(job: &Job, host: Host) -> Result<Collector, Error> {
        let o: Options = job.options()?;
        if !o.udp && !o.tcp {
            return Err("options: udp and tcp are both false: nothing would listen".into());
        }
        if let Some(p) = o.percentiles.iter().find(|p| !(**p > 0.0 && **p <= 100.0)) {
            return Err(format!("options: percentiles: {p} is not in (0, 100]"));
        }
        let allow = access::source_lock(&o.listen, &o.allow, o.open)?;
        let udp = match o.udp {
            true => Some(listen::udp(&o.listen, &job.name, Some(o.recv_buffer))?),
            false => None,
        };
        let tcp = match o.tcp {
            true => Some(listen::tcp(&o.listen, &job.name)?),
            false => None,
        };
        Ok(Collector::service(Server {
            udp,
            tcp,
            bounds: Bounds {
                connections: o.max_connections,
                line: o.max_line,
            },
            allow,
            percentiles: o.percentiles,
            interval: job.interval,
            state: Arc::new(State {
                intake: Arc::new(Intake::new(&job.name, host.clone())),
                host,
                limits: Limits {
                    keys: o.max_keys,
                    samples: o.max_samples,
                    members: o.max_members,
                    forget_after: o.forget_after,
                },
                aggregate: Mutex::new(Aggregate::default()),
                pending: (0..o.udp_threads.max(1))
                    .map(|_| Mutex::default())
                    .collect(),
            }),
        }))
    }
}

impl Service for Server {
    fn run(&mut self) -> Result<(), Error> {
        let state = &self.state;
        let host = &state.host;
        let (bounds, max_line, allow) = (self.bounds, self.bounds.line, &self.allow);
        let mut last = Instant::now();
        let mut next = last + self.interval;
        std::thread::scope(|scope| {
            if let Some(udp) = &self.udp {
                // Readers of the one socket parse and count side by side; they meet only
                // at the aggregate's lock, for a gauge.
                for pending in &state.pending {
                    scope.spawn(move || {
                        let (mut buf, mut key) = (vec![0u8; 65536], String::new());
                        while !host.stop_requested(Duration::ZERO) {
                            if let Ok(Some(n)) = allow.recv(udp, &mut buf, &state.intake) {
                                state.take_datagram(&buf[..n], max_line, pending, &mut key);
                            }
                        }
                    });
                }
            }
            if let Some(tcp) = &self.tcp {
                let take = move |line: &[u8]| state.take_line(line);
                scope.spawn(move || lines::serve(tcp, host, &state.intake, bounds, allow, &take));
            }
            while !host.stop_requested(next.saturating_duration_since(Instant::now())) {
                if Instant::now() < next {
                    continue;
                }
                let now = Instant::now();
                state.flush(now.duration_since(last).as_secs_f64(), &self.percentiles);
                last = now;
                next += self.interval;
            }
            // The receiving threads end within a poll; what they took is flushed below.
        });
        let seconds = last.elapsed().as_secs_f64();
        state.flush(seconds, &self.percentiles);
        Ok(())
    }
}

export_plugin!(Statsd);
