//! The host's figures about itself, stored every few seconds under `host.*`: each job's,
//! each output's, the scheduler's lateness, the remote server's buffer, and the memory maps
//! that plugin generations keep.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::gatherer::Gatherer;
use crate::loading::library;
use crate::sinks::Target;

const EVERY: Duration = Duration::from_secs(5);

/// Reports until the host stops.
pub fn run(gatherer: &Gatherer) {
    let mut maps_warned = false;
    loop {
        once(gatherer);
        report_maps(gatherer, &mut maps_warned);
        if gatherer.stop.wait(EVERY) {
            return;
        }
    }
}

fn once(g: &Gatherer) {
    let jobs = g.scheduler.jobs();
    for job in &jobs {
        job.report_figures();
    }
    for output in g.ctx.sink.outputs().iter() {
        for (figure, value) in output.figures() {
            g.report(&format!("host.output.{}.{figure}", output.name()), value);
        }
    }
    g.report("host.jobs", jobs.len());
    g.report("host.plugins", g.published().plugins.len());
    g.report("host.generations", library::generations());
    let samples: u64 = jobs.iter().map(|j| j.host.samples.load(Relaxed)).sum();
    g.report("host.samples", samples);
    g.report("host.scheduler.collects", g.scheduler.collects());
    let late = g.scheduler.take_lateness();
    if !late.is_empty() {
        let pick =
            |q: f64| late[((late.len() as f64 * q) as usize).min(late.len() - 1)] as f64 / 1000.0;
        for (name, q) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
            g.report(
                &format!("host.scheduler.lateness_{name}_ms"),
                format_args!("{:.3}", pick(q)),
            );
        }
    }
    if let Target::Remote(remote) = &g.ctx.sink.target {
        g.report("host.remote.sent", remote.sent());
        let now = spud_server::unix_now();
        for (figure, value) in crate::sinks::backlog::figures(&remote.backlog(), now) {
            g.report(&format!("host.remote.{figure}"), value);
        }
        g.report("host.remote.connected", u8::from(remote.connected()));
    }
}

/// Every plugin generation stays mapped (abi_stable never unloads): count the maps, and
/// say so once when half the kernel's limit is used.
fn report_maps(g: &Gatherer, warned: &mut bool) {
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map(|m| m.lines().count())
        .unwrap_or(0);
    let limit: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65_530);
    g.report("host.maps", maps);
    g.report("host.maps_limit", limit);
    if maps * 2 > limit && !*warned {
        *warned = true;
        tracing::warn!(
            "{maps} memory maps of the kernel's {limit} are in use after {} plugin loads: \
             each reload keeps the old library mapped. Restart spud-host to release them.",
            library::generations()
        );
    }
}
