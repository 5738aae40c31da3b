//! The host's figures about itself, looked at every few seconds and stored under `host.*`
//! when they change: each job's, each output's, the scheduler's lateness, the remote
//! server's buffer, and the memory maps that plugin generations keep. A quiet host writes
//! nothing but what moves.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::gatherer::Gatherer;
use crate::loading::library;
use crate::sinks::Target;

const EVERY: Duration = Duration::from_secs(5);
/// A figure that stays the same is stored again after this long, so that a server that
/// lost it (a remote one started afresh) has it again.
const REFRESH: Duration = Duration::from_secs(300);

/// The figures as last stored: what, and when.
#[derive(Default)]
struct Stored(HashMap<String, (String, Instant)>);

impl Stored {
    /// Stores `value` under `key` if it changed, or has not been stored for `REFRESH`.
    fn put(&mut self, g: &Gatherer, key: &str, value: impl std::fmt::Display) {
        let value = value.to_string();
        let now = Instant::now();
        if let Some((last, at)) = self.0.get(key) {
            if *last == value && now.duration_since(*at) < REFRESH {
                return;
            }
        }
        g.report(key, &value);
        self.0.insert(key.to_string(), (value, now));
    }
}

/// Reports until the host stops.
pub fn run(gatherer: &Gatherer) {
    let mut maps_warned = false;
    let mut stored = Stored::default();
    loop {
        once(gatherer, &mut stored);
        report_maps(gatherer, &mut stored, &mut maps_warned);
        if gatherer.stop.wait(EVERY) {
            return;
        }
    }
}

fn once(g: &Gatherer, stored: &mut Stored) {
    let jobs = g.scheduler.jobs();
    for job in &jobs {
        for (key, value) in job.figures() {
            stored.put(g, &key, value);
        }
    }
    for output in g.ctx.sink.outputs().iter() {
        for (figure, value) in output.figures() {
            stored.put(g, &format!("host.output.{}.{figure}", output.name()), value);
        }
    }
    stored.put(g, "host.jobs", jobs.len());
    stored.put(g, "host.plugins", g.published().plugins.len());
    stored.put(g, "host.generations", library::generations());
    let samples: u64 = jobs.iter().map(|j| j.host.samples.load(Relaxed)).sum();
    stored.put(g, "host.samples", samples);
    stored.put(g, "host.scheduler.collects", g.scheduler.collects());
    let late = g.scheduler.take_lateness();
    if !late.is_empty() {
        let pick =
            |q: f64| late[((late.len() as f64 * q) as usize).min(late.len() - 1)] as f64 / 1000.0;
        for (name, q) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
            stored.put(
                g,
                &format!("host.scheduler.lateness_{name}_ms"),
                format_args!("{:.3}", pick(q)),
            );
        }
    }
    if let Target::Remote(remote) = &g.ctx.sink.target {
        stored.put(g, "host.remote.sent", remote.sent());
        let now = spud_server::unix_now();
        for (figure, value) in crate::sinks::backlog::figures(&remote.backlog(), now) {
            stored.put(g, &format!("host.remote.{figure}"), value);
        }
        stored.put(g, "host.remote.connected", u8::from(remote.connected()));
    }
}

/// Every plugin generation stays mapped (abi_stable never unloads): count the maps, and
/// say so once when half the kernel's limit is used.
fn report_maps(g: &Gatherer, stored: &mut Stored, warned: &mut bool) {
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map(|m| m.lines().count())
        .unwrap_or(0);
    let limit: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65_530);
    stored.put(g, "host.maps", maps);
    stored.put(g, "host.maps_limit", limit);
    if maps * 2 > limit && !*warned {
        *warned = true;
        tracing::warn!(
            "{maps} memory maps of the kernel's {limit} are in use after {} plugin loads: \
             each reload keeps the old library mapped. Restart spud-host to release them.",
            library::generations()
        );
    }
}
