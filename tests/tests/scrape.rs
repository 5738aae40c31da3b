//! The scrape collector: Debian's prometheus-node-exporter; SPUD's own `/metrics` scraped
//! back over TLS with a bearer token (a round trip keeps every value); OpenMetrics with
//! timestamps, histograms and summaries, malformed lines, and an endpoint that goes away.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spud_tests::{free_port, Pki, Process, SpudHost, SpudServer};

const T: Duration = Duration::from_secs(20);

fn job(name: &str, options: &str) -> String {
    format!("[[job]]\nname = \"{name}\"\nplugin = \"scrape\"\ninterval = \"1s\"\ntimeout = \"900ms\"\noptions = {{ {options} }}\n\n")
}

#[test]
fn node_exporter_is_scraped() {
    let exporter = "/usr/bin/prometheus-node-exporter";
    assert!(
        std::path::Path::new(exporter).exists(),
        "{exporter} is missing: scripts/setup-test-deps installs prometheus-node-exporter"
    );
    let addr = free_port();
    let mut cmd = Command::new(exporter);
    cmd.arg(format!("--web.listen-address={addr}")).args([
        "--collector.disable-defaults",
        "--collector.loadavg",
        "--collector.meminfo",
        "--collector.cpu",
    ]);
    let (_exporter, _) = Process::start(cmd, "Listening on", T);
    let host = SpudHost::start(
        &["scrape"],
        &job("node", &format!("url = \"http://{addr}/metrics\"")),
    );

    let load: f64 = host
        .wait_for("node.node_load1", T, |_| true)
        .parse()
        .unwrap();
    let proc_load = spud_tests::loadavg1();
    assert!(
        (load - proc_load).abs() < 1.0,
        "node_load1 {load}, /proc/loadavg {proc_load}"
    );
    let total_kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches(" kB").parse().ok())
        .unwrap();
    let total: f64 = host
        .wait_for("node.node_memory_MemTotal_bytes", T, |_| true)
        .parse()
        .unwrap();
    assert_eq!(total, total_kib * 1024.0);
    let idle: f64 = host
        .wait_for("node.node_cpu_seconds_total.cpu:0.mode:idle", T, |_| true)
        .parse()
        .unwrap();
    assert!(idle > 0.0);
    // Its Go runtime's summary, by quantile.
    host.wait_for("node.go_gc_duration_seconds.quantile:0.5", T, |_| true);
    host.wait_for("node.go_gc_duration_seconds_count", T, |_| true);
    assert_eq!(host.wait_for("node.scrape.up", T, |_| true), "1");
    let samples: u64 = host
        .wait_for("node.scrape.samples", T, |_| true)
        .parse()
        .unwrap();
    assert!(samples > 50, "{samples}");
}

#[test]
fn spud_metrics_scraped_back_over_tls_with_a_token_keep_their_values() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[token]]\nname = \"scraper\"\nsecret = \"scrape-secret-0123456789\"\nroles = [\"read\"]\n\n[[token]]\nname = \"writer\"\nsecret = \"write-secret-0123456789\"\nroles = [\"read\", \"write\"]\n",
    )
    .unwrap();
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "scrape-secret-0123456789\n").unwrap();
    let (cert, key) = (pki.file("server.pem"), pki.file("server.key"));
    let server = SpudServer::start(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tokens",
        tokens.to_str().unwrap(),
    ]);

    let writer_token = dir.path().join("writer");
    std::fs::write(&writer_token, "write-secret-0123456789\n").unwrap();
    std::fs::set_permissions(&writer_token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let values = [
        ("web1.load", "0.5"),
        ("web1.rps", "1200"),
        ("db.lag_ms", "-3.25"),
        ("big.count", "123456789012"),
    ];
    for (k, v) in values {
        let out = Command::new(spud_tests::binary("spud"))
            .args([
                "--server",
                &server.addr.to_string(),
                "--tls-ca",
                &pki.file("ca.pem"),
            ])
            .args([
                "--token-file",
                writer_token.to_str().unwrap(),
                "set",
                "--",
                k,
                v,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let url = format!("https://localhost:{}/metrics", server.http.unwrap().port());
    let ca = pki.file("ca.pem");
    let config = job(
        "back",
        &format!(
            "url = \"{url}\", ca = \"{ca}\", bearer_token_file = \"{}\"",
            token_file.display()
        ),
    ) + &job("anonymous", &format!("url = \"{url}\", ca = \"{ca}\""))
        + &job("untrusting", &format!("url = \"{url}\""));
    let host = SpudHost::start(&["scrape"], &config);
    for (k, v) in values {
        let scraped = format!("back.{}", k.replace('.', "_"));
        assert_eq!(
            host.wait_for(&scraped, T, |_| true),
            v,
            "{k} came back as {scraped}"
        );
    }
    // Without the token: 401; without the CA: the certificate is not trusted. One line each.
    assert_eq!(host.wait_for("anonymous.scrape.up", T, |_| true), "0");
    assert_eq!(host.wait_for("untrusting.scrape.up", T, |_| true), "0");
    let log = host.process.wait_log("untrusting", T);
    assert!(log.contains("scrape.up 0: HTTP 401"), "{log}");
    std::thread::sleep(Duration::from_secs(2));
    let log = host.process.log();
    assert_eq!(log.matches("scrape.up 0: HTTP 401").count(), 1, "{log}");
}

/// Serves `body` with `content_type` on every request, until the returned switch says 404.
fn endpoint(content_type: &'static str, body: String) -> (std::net::SocketAddr, Arc<Mutex<bool>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let up = Arc::new(Mutex::new(true));
    let serving = Arc::clone(&up);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request);
            let response = if *serving.lock().unwrap() {
                format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = conn.write_all(response.as_bytes());
        }
    });
    (addr, up)
}

#[test]
fn openmetrics_timestamps_histograms_summaries_and_bad_lines() {
    let body = "# TYPE rpc_seconds histogram\n\
        rpc_seconds_bucket{le=\"0.1\",svc=\"a\"} 5 1700000000.5\n\
        rpc_seconds_bucket{le=\"+Inf\",svc=\"a\"} 9 1700000000.5\n\
        rpc_seconds_sum{svc=\"a\"} 1.25 1700000000.5\n\
        rpc_seconds_count{svc=\"a\"} 9 1700000000.5\n\
        # TYPE lat summary\n\
        lat{quantile=\"0.99\",path=\"/a b\"} 0.75\n\
        # TYPE jobs counter\n\
        jobs_total{kind=\"\"} 17 # {trace_id=\"abc\"} 1 1700000000\n\
        this line is broken\n\
        ok_after 3\n\
        # EOF\n"
        .to_string();
    let (addr, up) = endpoint(
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        body,
    );
    let host = SpudHost::start(
        &["scrape"],
        &job("om", &format!("url = \"http://{addr}/metrics\"")),
    );
    host.wait_for("om.ok_after", T, |_| true);
    let mut c = host.connect();
    assert_eq!(
        c.history("om.rpc_seconds_bucket.le:0.1.svc:a")[0],
        "OK 1 1700000000 5"
    );
    assert_eq!(
        c.history("om.rpc_seconds_bucket.le:_Inf.svc:a")[0],
        "OK 1 1700000000 9"
    );
    assert_eq!(
        c.history("om.rpc_seconds_sum.svc:a")[0],
        "OK 1 1700000000 1.25"
    );
    assert!(c.history("om.lat.path:_a_b.quantile:0.99")[0].ends_with(" 0.75"));
    // An empty label is no label, as Prometheus reads it; the exemplar is not the value.
    assert!(c.history("om.jobs_total")[0].ends_with(" 17"));
    host.wait_for("host.job.om.bad", T, |v| v.parse::<u64>().unwrap() >= 1);
    host.process.wait_log("line unreadable: line 10", T);

    *up.lock().unwrap() = false;
    assert_eq!(host.wait_for("om.scrape.up", T, |v| v == "0"), "0");
    host.process.wait_log("scrape.up 0: HTTP 404", T);
    *up.lock().unwrap() = true;
    host.wait_for("om.scrape.up", T, |v| v == "1");
    host.process.wait_log("scrape.up 1 (was 0)", T);
}
