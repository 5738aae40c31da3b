//! Graphite's plaintext protocol, as collectd's `write_graphite`, Netdata's exporting engine,
//! carbon relays and most agents send it: `path value timestamp\n` over TCP, and the same
//! lines in UDP datagrams, on one address. Each line is stored under `<job>.<path>` (or
//! `<path>` with `absolute = true`) at the line's own time; the value is kept exactly as sent.
//! A tagged path (`name;tag=value;…`) becomes `name.tag:value…`, tags in name order.
//!
//! ```toml
//! [[job]]
//! name = "graphite"
//! plugin = "graphite"
//! interval = "10s"          # how often host.job.graphite.{received,bad,dropped} are stored
//! options = { listen = "0.0.0.0:2003", allow = ["10.0.0.0/8"] }
//! ```
//!
//! Options: `listen` (address for TCP and UDP); `allow` (the source networks taken; others
//! are counted as `refused`), required beyond loopback unless `open = true` says anyone
//! may send; `udp` (default true), `absolute` (default
//! false), `max_line` (bytes, default 4096), `max_connections` (default 256),
//! `recv_buffer` (bytes asked of the kernel for UDP, default 4 MiB).
//! The sockets are handed over to the job's next generation on reload (see
//! `spud_plugin_api::kit::listen`).

pub mod parse;

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use spud_plugin_api::kit::access::{self, Allow};
use spud_plugin_api::kit::intake::Intake;
use spud_plugin_api::kit::lines::{self, Bounds, Splitter};
use spud_plugin_api::kit::listen::{self, Held};
use spud_plugin_api::serde::Deserialize;
use spud_plugin_api::{export_plugin, Collector, Error, Host, Job, Plugin, Service};

/// The Graphite receiver.
pub struct Graphite;

#[derive(Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct Options {
    listen: String,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    open: bool,
    #[serde(default = "yes")]
    udp: bool,
    #[serde(default)]
    absolute: bool,
    #[serde(default = "max_line")]
    max_line: usize,
    #[serde(default = "max_connections")]
    max_connections: usize,
    #[serde(default = "recv_buffer")]
    recv_buffer: usize,
}

fn yes() -> bool {
    true
}
fn max_line() -> usize {
    4096
}
fn max_connections() -> usize {
    256
}
fn recv_buffer() -> usize {
    4 << 20
}

struct Receiver {
    tcp: Held<std::net::TcpListener>,
    udp: Option<Held<UdpSocket>>,
    bounds: Bounds,
    allow: Allow,
    store: Arc<Store>,
    interval: Duration,
    host: Host,
}

/// Where parsed lines go.
struct Store {
    host: Host,
    intake: Arc<Intake>,
    absolute: bool,
}

impl Store {
    /// Stores one line; says whether it was taken (the caller counts them).
    fn take(&self, bytes: &[u8]) -> u64 {
        match parse::line(bytes) {
            Ok(Some(line)) => {
                match (self.absolute, line.time) {
                    (false, Some(t)) => self.host.set_at(&line.key, line.value, t),
                    (false, None) => self.host.set(&line.key, line.value),
                    (true, Some(t)) => self.host.set_absolute_at(&line.key, line.value, t),
                    (true, None) => self.host.set_absolute(&line.key, line.value),
                }
                1
            }
            Ok(None) => 0,
            Err(parse::Bad(kind, detail)) => {
                self.intake.bad(kind, detail);
                0
            }
        }
    }
}

impl Plugin for Graphite {
    const NAME: &'static str = "graphite";
    const DESCRIPTION: &'static str = "Graphite plaintext over TCP and UDP";

    fn new_job(job: &Job, host: Host) -> Result<Collector, Error> {
        let o: Options = job.options()?;
        let allow = access::source_lock(&o.listen, &o.allow, o.open)?;
        // Bound now, so an address in use is the new job's error and the old one stays.
        let tcp = listen::tcp(&o.listen, &job.name)?;
        let udp = match o.udp {
            true => Some(listen::udp(&o.listen, &job.name, Some(o.recv_buffer))?),
            false => None,
        };
        let intake = Arc::new(Intake::new(&job.name, host.clone()));
        Ok(Collector::service(Receiver {
            tcp,
            udp,
            bounds: Bounds {
                connections: o.max_connections,
                line: o.max_line,
            },
            allow,
            store: Arc::new(Store {
                host: host.clone(),
                intake,
                absolute: o.absolute,
            }),
            interval: job.interval,
            host,
        }))
    }
}

impl Service for Receiver {
    fn run(&mut self) -> Result<(), Error> {
        let (host, store, tcp, bounds) = (&self.host, &self.store, &self.tcp, self.bounds);
        let allow = &self.allow;
        std::thread::scope(|scope| {
            let take = |line: &[u8]| store.take(line);
            scope.spawn(move || lines::serve(tcp, host, &store.intake, bounds, allow, &take));
            if let Some(udp) = &self.udp {
                scope.spawn(move || datagrams(udp, allow, host, store, bounds.line));
            }
            while !host.stop_requested(self.interval) {
                store.intake.publish();
            }
            store.intake.publish();
        });
        Ok(())
    }
}

/// Reads datagrams until the job stops; each holds one or more lines.
fn datagrams(socket: &UdpSocket, allow: &Allow, host: &Host, store: &Store, max_line: usize) {
    let mut buf = vec![0u8; 65536];
    while !host.stop_requested(Duration::ZERO) {
        let n = match allow.recv(socket, &mut buf, &store.intake) {
            Ok(Some(n)) => n,
            Ok(None) | Err(_) => continue,
        };
        let mut splitter = Splitter::new(max_line);
        let mut taken = 0;
        let mut take = |line: Result<&[u8], lines::TooLong>| match line {
            Ok(line) => taken += store.take(line),
            Err(lines::TooLong(len)) => store.intake.bad(
                "line too long",
                format_args!("a line of {len} bytes (the bound is {max_line}) was skipped"),
            ),
        };
        splitter.push(&buf[..n], &mut take);
        splitter.finish(&mut take);
        store.intake.received(taken);
    }
}

export_plugin!(Graphite);
