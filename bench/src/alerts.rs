//! Alerting's cost and speed: ingest over 100,000 keys with and without 1,000 rules (the
//! fair, same-client figure, the two servers taking turns in one run); the latency from a
//! violating `set` to its state key's push; and to a real Alertmanager listing the alert.

use std::io::{BufRead, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use spud_tests::alertmanager::Alertmanager;
use spud_tests::SpudServer;

use crate::common::*;
use crate::ingest::{windowed_over, Speaks, CONNS};
use crate::Scale;

const KEYS_PER_CONN: usize = 25_000;
const RULES_PER_CONN: usize = 250;

/// 1,000 rules, each over 100 of the 100,000 keys (`alerts.cC.kJJJ*`), that do not fire
/// under the ingest: `warn` as written here, `crit = "last > 1e12"`.
fn rules_file(dir: &std::path::Path, name: &str, warn: &str) -> Result<std::path::PathBuf> {
    let mut text = String::new();
    for c in 0..CONNS {
        for j in 0..RULES_PER_CONN {
            text.push_str(&format!(
                "[[alert]]\nname = \"r{c}_{j}\"\nkeys = \"alerts.c{c}.k{j:03}*\"\n\
                 warn = \"{warn}\"\ncrit = \"last > 1e12\"\nnodata = \"10m\"\n\n"
            ));
        }
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

pub fn alerts(scale: &Scale, report: &mut Vec<String>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Rules whose conditions bound the values they look at (a set inside the proven quiet
    // band costs a comparison), and rules that do not (every set is evaluated).
    let bounded = rules_file(dir.path(), "bounded", "avg(1m) > 1e9")?;
    let unbounded = rules_file(dir.path(), "unbounded", "rate(1m) > 1e9")?;
    let per_conn = scale.ingest_per_conn / 4;
    println!(
        "== ingest with 1,000 alert rules over 100,000 keys, same client: {CONNS} connections, windows of 100"
    );
    let plain = SpudServer::start(&[]);
    let watched = SpudServer::start(&["--rules", bounded.to_str().unwrap()]);
    let evaluated = SpudServer::start(&["--rules", unbounded.to_str().unwrap()]);
    let servers = [&plain, &watched, &evaluated];
    // Every key exists on each before the clock runs.
    for server in servers {
        windowed_over(
            server.addr,
            Speaks::Spud,
            KEYS_PER_CONN,
            KEYS_PER_CONN,
            "alerts".into(),
        )?;
    }
    let instances = wait_instances(&watched, 100_000)?;
    wait_instances(&evaluated, 100_000)?;
    let mut rates = vec![Vec::new(); servers.len()];
    for t in 0..scale.trials {
        for (n, server) in servers.iter().enumerate() {
            rates[n].push(windowed_over(
                server.addr,
                Speaks::Spud,
                per_conn,
                KEYS_PER_CONN,
                "alerts".into(),
            )?);
        }
        println!(
            "  trial {t}: without rules {}, avg/last rules {}, rate rules {}",
            fmt_rate(rates[0][t]),
            fmt_rate(rates[1][t]),
            fmt_rate(rates[2][t])
        );
    }
    let [without, with, every] = [0, 1, 2].map(|n| median(rates[n].clone()));
    let cpu: Vec<f64> = servers
        .iter()
        .map(|s| cpu_time(s.process.pid()).map(|d| d.as_secs_f64()))
        .collect::<Result<_>>()?;
    println!(
        "  median: without {}, avg/last rules {} = {:.2}×, rate rules {} = {:.2}× ({instances} instances; server CPU {:.1}s, {:.1}s, {:.1}s)",
        fmt_rate(without),
        fmt_rate(with),
        with / without,
        fmt_rate(every),
        every / without,
        cpu[0],
        cpu[1],
        cpu[2]
    );
    report.push(format!(
        "| ingest with 1,000 rules (`avg(1m) > T`, `last > T`) over 100,000 keys ({instances} instances), same client, set, {CONNS} conns, windows of 100 (median of {}) | {} | the same server without rules: {} | {:.2}× (target ≥ 0.80×) |",
        scale.trials,
        fmt_rate(with),
        fmt_rate(without),
        with / without
    ));
    report.push(format!(
        "| the same with `rate(1m) > T` rules (no quiet band; proofs of 64 sets) | {} | without rules: {} | {:.2}× (target ≥ 0.80×) |",
        fmt_rate(every),
        fmt_rate(without),
        every / without
    ));
    drop(plain);

    // Set → state key, on the servers holding the 1,000 rules and 100,000 keys.
    let (p50, p99) = violations(&watched, "2e12", "critical")?;
    println!("  violating set → state key pushed: p50 {p50:.3} ms, p99 {p99:.3} ms (300 sets)");
    report.push(format!(
        "| violating set → `alert.*` state key pushed, 1,000 rules / 100k keys (300 sets) | p50 {p50:.3} ms, p99 {p99:.3} ms | target p50 < 5 ms | {:.2}× |",
        p50 / 5.0
    ));
    // A value that takes `rate(1m)` over its threshold but `last` not over its own.
    let (p50, p99) = violations(&evaluated, "5e11", "warning")?;
    println!("  the same with rate rules (5e11: rate over 1e9): p50 {p50:.3} ms, p99 {p99:.3} ms (300 sets)");
    report.push(format!(
        "| violating set → state key pushed, 1,000 `rate(1m) > T` rules / 100k keys (300 sets) | p50 {p50:.3} ms, p99 {p99:.3} ms | target p50 < 5 ms | {:.2}× |",
        p50 / 5.0
    ));
    drop(evaluated);
    drop(watched);

    // Set → a real Alertmanager lists it.
    let am = Alertmanager::start("route:\n  receiver: none\nreceivers:\n  - name: none\n");
    let path = dir.path().join("am.toml");
    std::fs::write(
        &path,
        format!(
            "[[alert]]\nname = \"am\"\nkeys = \"am.*\"\ncrit = \"last > 100\"\n\n[[notify]]\ntype = \"alertmanager\"\nurl = \"{}\"\n",
            am.url()
        ),
    )?;
    let server = SpudServer::start(&["--rules", path.to_str().unwrap()]);
    let mut setter = TcpStream::connect(server.addr)?;
    setter.set_nodelay(true)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut latencies = Vec::new();
    for n in 0..50 {
        let key = format!("am.k{n}");
        let url = format!("{}/api/v2/alerts?filter=key%3D%22{key}%22", am.url());
        let t0 = Instant::now();
        write!(setter, "qset {key} 500\r\n")?;
        loop {
            let body = agent.get(&url).call()?.body_mut().read_to_string()?;
            if body.contains(&key) {
                break;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                bail!("Alertmanager never listed {key}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    println!("  violating set → listed by Alertmanager's /api/v2/alerts: p50 {p50:.1} ms, p99 {p99:.1} ms (50 alerts, polled every 2 ms)");
    report.push(format!(
        "| violating set → listed by a real Alertmanager (50 alerts, its API polled every 2 ms) | p50 {p50:.1} ms, p99 {p99:.1} ms | target p50 < 100 ms | {:.2}× |",
        p50 / 100.0
    ));

    // A severity change: critical → warning, until Alertmanager holds the warning alone
    // (the critical one resolved), then back.
    let path = dir.path().join("sev.toml");
    std::fs::write(
        &path,
        format!(
            "[[alert]]\nname = \"sev\"\nkeys = \"sev.*\"\nwarn = \"last > 100\"\ncrit = \"last > 200\"\n\n\
             [[notify]]\ntype = \"alertmanager\"\nurl = \"{}\"\nrepeat = \"60s\"\n",
            am.url()
        ),
    )?;
    let server = SpudServer::start(&["--rules", path.to_str().unwrap()]);
    let mut setter = TcpStream::connect(server.addr)?;
    setter.set_nodelay(true)?;
    let mut latencies = Vec::new();
    for n in 0..30 {
        let key = format!("sev.k{n}");
        let url = format!("{}/api/v2/alerts?filter=key%3D%22{key}%22", am.url());
        let severities = |agent: &ureq::Agent| -> Result<Vec<String>> {
            let body = agent.get(&url).call()?.body_mut().read_to_string()?;
            let alerts: serde_json::Value = serde_json::from_str(&body)?;
            let mut found: Vec<String> = alerts
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["labels"]["severity"].as_str().map(str::to_string))
                .collect();
            found.sort();
            Ok(found)
        };
        write!(setter, "qset {key} 500\r\n")?;
        while severities(&agent)? != ["critical"] {
            std::thread::sleep(Duration::from_millis(2));
        }
        let t0 = Instant::now();
        write!(setter, "qset {key} 150\r\n")?;
        while severities(&agent)? != ["warning"] {
            if t0.elapsed() > Duration::from_secs(10) {
                bail!("Alertmanager kept the critical {key}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    println!("  severity change → the old severity resolved in Alertmanager: p50 {p50:.1} ms, p99 {p99:.1} ms (30 alerts)");
    report.push(format!(
        "| critical → warning: Alertmanager holds the warning alone (30 alerts, polled every 2 ms) | p50 {p50:.1} ms, p99 {p99:.1} ms | target: within 1 s of the change | {:.3}× |",
        p50 / 1000.0
    ));
    Ok(())
}

/// Waits until the server evaluates about `n` instances (every key looked at once).
/// Milliseconds from a `set` of `value` to the push of its instance's new `state`, over
/// 300 distinct keys each ok until then: p50 and p99.
fn violations(server: &SpudServer, value: &str, state: &str) -> Result<(f64, f64)> {
    let mut sub = subscribe(server.addr, "alert.*")?;
    let mut setter = TcpStream::connect(server.addr)?;
    setter.set_nodelay(true)?;
    let mut reply = std::io::BufReader::new(setter.try_clone()?);
    let mut latencies = Vec::new();
    let mut line = String::new();
    for n in 0..300 {
        let key = format!("alerts.c{}.k{:05}", n % CONNS, (n * 83) % KEYS_PER_CONN);
        let t0 = Instant::now();
        write!(setter, "set {key} {value}\r\n")?;
        let want = format!(".{key} {state}");
        loop {
            line.clear();
            if sub.read_line(&mut line)? == 0 {
                bail!("the subscription closed");
            }
            if line.trim_end().ends_with(&want) {
                break;
            }
        }
        latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
        line.clear();
        reply.read_line(&mut line)?;
        std::thread::sleep(Duration::from_millis(3));
    }
    latencies.sort_by(f64::total_cmp);
    Ok((percentile(&latencies, 0.5), percentile(&latencies, 0.99)))
}

fn wait_instances(server: &SpudServer, n: u64) -> Result<u64> {
    let url = format!("http://{}/api/alerts", server.http.expect("HTTP"));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = spud_tests::http::get_json(&url);
        let have = v["instances"].as_u64().unwrap_or(0);
        if have >= n {
            return Ok(have);
        }
        if Instant::now() > deadline {
            bail!("only {have} of {n} alert instances after 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
