//! The `/proc` files procstat reads, each parsed into plain values: counters (the caller
//! turns them into rates) and gauges. Lines that do not parse are passed over.

const CPU_MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// What `/proc/stat` holds for procstat.
#[derive(Debug, Default, PartialEq)]
pub struct Stat<'a> {
    /// Ticks spent in each CPU mode, all CPUs together.
    pub cpu: Vec<(&'static str, u64)>,
    /// CPUs online (`cpuN` lines): what a load is divided by.
    pub cpus: usize,
    /// Context switches since boot.
    pub ctxt: Option<u64>,
    /// Processes created since boot.
    pub forks: Option<u64>,
    /// `procs_running` and `procs_blocked`, as given.
    pub procs: Vec<(&'static str, &'a str)>,
}

pub fn stat(text: &str) -> Stat<'_> {
    let mut stat = Stat::default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let number = |f: &mut std::str::SplitWhitespace| f.next()?.parse().ok();
        match f.next() {
            Some("cpu") => {
                stat.cpu = CPU_MODES
                    .iter()
                    .zip(f.map_while(|v| v.parse().ok()))
                    .map(|(mode, ticks)| (*mode, ticks))
                    .collect();
            }
            Some(word)
                if word.starts_with("cpu") && word[3..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                stat.cpus += 1;
            }
            Some("ctxt") => stat.ctxt = number(&mut f),
            Some("processes") => stat.forks = number(&mut f),
            Some("procs_running") => stat.procs.extend(f.next().map(|v| ("procs_running", v))),
            Some("procs_blocked") => stat.procs.extend(f.next().map(|v| ("procs_blocked", v))),
            _ => {}
        }
    }
    stat
}

/// `load.1`, `load.5`, `load.15`.
pub fn loadavg(text: &str) -> Vec<(&'static str, &str)> {
    ["load.1", "load.5", "load.15"]
        .into_iter()
        .zip(text.split_whitespace())
        .collect()
}

/// Memory and swap in kB, as `/proc/meminfo` gives them, with the swap in use.
pub fn meminfo(text: &str) -> Vec<(&'static str, u64)> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    let mut out: Vec<(&'static str, u64)> = [
        ("mem.total_kb", "MemTotal"),
        ("mem.free_kb", "MemFree"),
        ("mem.available_kb", "MemAvailable"),
        ("mem.buffers_kb", "Buffers"),
        ("mem.cached_kb", "Cached"),
        ("swap.total_kb", "SwapTotal"),
        ("swap.free_kb", "SwapFree"),
    ]
    .into_iter()
    .filter_map(|(key, name)| Some((key, field(name)?)))
    .collect();
    if let (Some(total), Some(free)) = (field("SwapTotal"), field("SwapFree")) {
        out.push(("swap.used_kb", total.saturating_sub(free)));
    }
    out
}

/// Each interface's counters, keyed `net.<if>.<counter>`.
pub fn net_dev(text: &str) -> Vec<(String, u64)> {
    const COLUMNS: [(usize, &str); 8] = [
        (0, "rx_bytes"),
        (1, "rx_packets"),
        (2, "rx_errors"),
        (3, "rx_drops"),
        (8, "tx_bytes"),
        (9, "tx_packets"),
        (10, "tx_errors"),
        (11, "tx_drops"),
    ];
    let mut out = Vec::new();
    // Two lines of headings first.
    for line in text.lines().skip(2) {
        let Some((iface, counters)) = line.split_once(':') else {
            continue;
        };
        let iface = iface.trim();
        let values: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        for (column, name) in COLUMNS {
            if let Some(v) = values.get(column) {
                out.push((format!("net.{iface}.{name}"), *v));
            }
        }
    }
    out
}

/// One block device's counters from `/proc/diskstats`.
#[derive(Debug, PartialEq)]
pub struct Disk<'a> {
    pub device: &'a str,
    /// reads, writes, read_bytes, write_bytes (sectors are 512 bytes).
    pub counters: Vec<(&'static str, u64)>,
    /// Milliseconds spent doing I/O.
    pub io_ms: Option<u64>,
}

/// Every device but loop and RAM disks.
pub fn diskstats(text: &str) -> Vec<Disk<'_>> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 14 || f[2].starts_with("loop") || f[2].starts_with("ram") {
                return None;
            }
            let num = |i: usize| f[i].parse::<u64>().ok();
            let counters = [
                ("reads", num(3)),
                ("writes", num(7)),
                ("read_bytes", num(5).map(|s| s * 512)),
                ("write_bytes", num(9).map(|s| s * 512)),
            ]
            .into_iter()
            .filter_map(|(name, v)| Some((name, v?)))
            .collect();
            Some(Disk {
                device: f[2],
                counters,
                io_ms: num(12),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_counters_and_processes() {
        let text = "cpu  10 2 30 400 5 6 7 8 0 0\ncpu0 5 1 15 200 2 3 3 4 0 0\n\
                    ctxt 12345\nbtime 1700000000\nprocesses 678\nprocs_running 3\nprocs_blocked 1\n";
        let s = stat(text);
        assert_eq!(
            s.cpu,
            vec![
                ("user", 10),
                ("nice", 2),
                ("system", 30),
                ("idle", 400),
                ("iowait", 5),
                ("irq", 6),
                ("softirq", 7),
                ("steal", 8)
            ]
        );
        assert_eq!(s.ctxt, Some(12345));
        assert_eq!(s.forks, Some(678));
        assert_eq!(s.cpus, 1, "cpu0 is one CPU; the `cpu` total line is none");
        assert_eq!(
            s.procs,
            vec![("procs_running", "3"), ("procs_blocked", "1")]
        );
        assert_eq!(stat("garbage\n\n"), Stat::default());
    }

    #[test]
    fn loadavg_three_averages() {
        assert_eq!(
            loadavg("0.52 0.58 0.59 1/389 12345\n"),
            vec![("load.1", "0.52"), ("load.5", "0.58"), ("load.15", "0.59")]
        );
    }

    #[test]
    fn meminfo_fields_and_swap_used() {
        let text = "MemTotal:       16000 kB\nMemFree:         4000 kB\nMemAvailable:    8000 kB\n\
                    Buffers:          100 kB\nCached:          2000 kB\nSwapCached: 0 kB\n\
                    SwapTotal:       1000 kB\nSwapFree:         400 kB\n";
        let m = meminfo(text);
        assert!(m.contains(&("mem.total_kb", 16000)));
        assert!(m.contains(&("mem.cached_kb", 2000)));
        assert!(m.contains(&("swap.used_kb", 600)));
        // `SwapCached` is not `Cached`, nor `SwapFree` `Free`.
        assert_eq!(m.iter().filter(|(k, _)| *k == "mem.cached_kb").count(), 1);
        assert!(meminfo("").is_empty());
    }

    #[test]
    fn net_dev_counters_per_interface() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
                    face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                    lo:  100  2 0 0 0 0 0 0  100  2 0 0 0 0 0 0\n  \
                    eth0: 5000 40 1 2 0 0 0 0 7000 50 3 4 0 0 0 0\n";
        let n = net_dev(text);
        assert!(n.contains(&("net.lo.rx_bytes".into(), 100)));
        assert!(n.contains(&("net.eth0.rx_drops".into(), 2)));
        assert!(n.contains(&("net.eth0.tx_bytes".into(), 7000)));
        assert!(n.contains(&("net.eth0.tx_drops".into(), 4)));
        assert_eq!(n.len(), 16);
    }

    #[test]
    fn diskstats_devices_without_loop_and_ram() {
        let text = "   8       0 sda 100 0 2000 50 200 0 4000 80 0 120 130\n   \
                    7       0 loop0 1 0 2 0 0 0 0 0 0 0 0\n   \
                    1       0 ram0 1 0 2 0 0 0 0 0 0 0 0\n   \
                    8       1 short 1 2\n";
        let d = diskstats(text);
        assert_eq!(
            d,
            vec![Disk {
                device: "sda",
                counters: vec![
                    ("reads", 100),
                    ("writes", 200),
                    ("read_bytes", 2000 * 512),
                    ("write_bytes", 4000 * 512)
                ],
                io_ms: Some(120),
            }]
        );
    }
}
