//! The `[metrics]` rules the host ships for its own collectors, after the user's: procstat's
//! keys as a few metrics with labels (`box.cpu.user` → `spud_procstat_cpu_percent{mode="user"}`),
//! StatsD timers as summaries, and the receivers' tags (`.route:/users`) as labels. Each rule
//! names a job's keys exactly (`box.cpu.*` for the procstat job `box`), so a key another
//! collector wrote is never mistaken for one of these; and every family has a `HELP`.

use spud_server::faces::metrics::{Kind, MetricsConfig, RuleConfig};

use super::Config;

impl Config {
    /// `[metrics]` as the exporter uses it: the user's rules first, then the shipped ones
    /// for each job.
    pub fn metrics_rules(&self) -> MetricsConfig {
        let mut config = self.metrics.clone();
        for job in &self.jobs {
            config.rules.extend(shipped(&job.plugin, &job.name));
        }
        config
    }
}

fn rule(glob: String, name: &str, labels: &[(&str, &str)], kind: Kind, help: &str) -> RuleConfig {
    RuleConfig::named(&glob, name, labels, kind, help)
}

/// The rules for job `job` of plugin `plugin` (none for the others).
fn shipped(plugin: &str, job: &str) -> Vec<RuleConfig> {
    match plugin {
        "procstat" => procstat(job),
        "statsd" => statsd(job),
        "graphite" | "influx" => tagged(plugin, job),
        _ => Vec::new(),
    }
}

fn procstat(job: &str) -> Vec<RuleConfig> {
    use Kind::Gauge;
    let j = ("spud_job", job);
    let at = |rest: &str| format!("{job}.{rest}");
    let kib = |mut r: RuleConfig| {
        r.scale = Some(1024.0);
        r
    };
    vec![
        rule(
            at("cpu.count"),
            "spud_procstat_cpus",
            &[j],
            Gauge,
            "CPUs online.",
        ),
        rule(
            at("cpu.*"),
            "spud_procstat_cpu_percent",
            &[j, ("mode", "$1")],
            Gauge,
            "Share of all CPUs' time in each mode since the last collect, in percent.",
        ),
        rule(
            at("load.*"),
            "spud_procstat_load_average",
            &[j, ("minutes", "$1")],
            Gauge,
            "Load average over 1, 5 and 15 minutes.",
        ),
        kib(rule(
            at("mem.*_kb"),
            "spud_procstat_memory_bytes",
            &[j, ("kind", "$1")],
            Gauge,
            "Memory by kind, from /proc/meminfo.",
        )),
        kib(rule(
            at("swap.*_kb"),
            "spud_procstat_swap_bytes",
            &[j, ("kind", "$1")],
            Gauge,
            "Swap space by kind, from /proc/meminfo.",
        )),
        rule(
            at("ctxt_per_s"),
            "spud_procstat_context_switches_per_second",
            &[j],
            Gauge,
            "Context switches per second since the last collect.",
        ),
        rule(
            at("forks_per_s"),
            "spud_procstat_forks_per_second",
            &[j],
            Gauge,
            "Processes created per second since the last collect.",
        ),
        rule(
            at("procs_*"),
            "spud_procstat_processes",
            &[j, ("state", "$1")],
            Gauge,
            "Processes runnable and blocked.",
        ),
        rule(
            at("net.*.rx_*_per_s"),
            "spud_procstat_network_receive_per_second",
            &[j, ("device", "$1"), ("what", "$2")],
            Gauge,
            "Bytes, packets, errors and drops received per second, per interface.",
        ),
        rule(
            at("net.*.tx_*_per_s"),
            "spud_procstat_network_transmit_per_second",
            &[j, ("device", "$1"), ("what", "$2")],
            Gauge,
            "Bytes, packets, errors and drops sent per second, per interface.",
        ),
        rule(
            at("disk.*.*s_per_s"),
            "spud_procstat_disk_operations_per_second",
            &[j, ("device", "$1"), ("op", "$2")],
            Gauge,
            "Reads and writes completed per second, per device.",
        ),
        rule(
            at("disk.*.*_bytes_per_s"),
            "spud_procstat_disk_bytes_per_second",
            &[j, ("device", "$1"), ("op", "$2")],
            Gauge,
            "Bytes read and written per second, per device.",
        ),
        rule(
            at("disk.*.busy_pct"),
            "spud_procstat_disk_busy_percent",
            &[j, ("device", "$1")],
            Gauge,
            "Share of the time the device was busy, in percent.",
        ),
    ]
}

/// StatsD: a timer's (or histogram's) percentiles, median, sum and count as one summary;
/// tags as labels. The sum and count are the last flush's, as StatsD flushes them.
fn statsd(job: &str) -> Vec<RuleConfig> {
    use Kind::{Gauge, Summary};
    let name = format!("{job}_$1");
    let summary = |stat: &str, part: &str| {
        let mut r = rule(
            format!("{job}.**.{stat}"),
            &name,
            &[],
            Summary,
            "StatsD: a timer's quantiles, sum and count over the last flush (a counter's or set's count alone).",
        );
        r.quantile = Some(part.into());
        r.tags = true;
        r
    };
    let gauge = |stat: &str, help: &str| {
        let mut r = rule(
            format!("{job}.**.{stat}"),
            &format!("{name}_{stat}"),
            &[],
            Gauge,
            help,
        );
        r.tags = true;
        r
    };
    let mut all = vec![
        summary("p*", "p$2"),
        summary("median", "median"),
        summary("sum", "sum"),
        summary("count", "count"),
    ];
    all.push({
        let mut r = gauge(
            "rate",
            "StatsD: events (or a timer's samples) per second over the last flush.",
        );
        r.name = Some(format!("{name}_per_second"));
        r
    });
    for stat in ["mean", "min", "max"] {
        all.push(gauge(
            stat,
            "StatsD: a timer's mean, minimum or maximum over the last flush.",
        ));
    }
    let mut gauges = rule(format!("{job}.**"), &name, &[], Gauge, "StatsD gauge.");
    gauges.tags = true;
    all.push(gauges);
    all
}

/// Graphite and Influx: the path (or measurement and field) as the name, tags as labels.
fn tagged(plugin: &str, job: &str) -> Vec<RuleConfig> {
    let help = format!("From the {plugin} receiver (job {job}).");
    let mut r = rule(
        format!("{job}.**"),
        &format!("{job}_$1"),
        &[],
        Kind::Gauge,
        &help,
    );
    r.tags = true;
    vec![r]
}
