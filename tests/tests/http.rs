//! The HTTP listener end to end: the JSON API, JSON push and the event stream against the
//! real `spud-server`; the host's jobs; a real Prometheus scraping `/metrics` and receiving
//! remote write; the dashboard in real headless Chromium.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde_json::json;
use spud_tests::http::{get, get_json, post};
use spud_tests::prometheus::Prometheus;
use spud_tests::{SpudHost, SpudServer};

const T: Duration = Duration::from_secs(30);

fn base(server: &SpudServer) -> String {
    format!("http://{}", server.http.expect("HTTP is on"))
}

#[test]
fn json_api_reads_keys_history_and_uptime_and_refuses_clearly() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    c.ask("set 100 web1.load 0.5", "\r\n");
    c.ask("set 101 web1.load 0.75", "\r\n");
    c.ask("set 102 web2.load busy", "\r\n");
    let url = base(&server);

    let keys = get_json(&format!("{url}/api/keys?match=web*"));
    assert_eq!(
        keys,
        json!({ "total": 2, "keys": [
            { "key": "web1.load", "time": 101, "value": "0.75", "number": 0.75 },
            { "key": "web2.load", "time": 102, "value": "busy" },
        ]})
    );
    let limited = get_json(&format!("{url}/api/keys?match=web*&limit=1"));
    assert_eq!(
        (
            limited["total"].as_u64(),
            limited["keys"].as_array().unwrap().len()
        ),
        (Some(2), 1)
    );
    let history = get_json(&format!("{url}/api/history/web1.load"));
    assert_eq!(
        history,
        json!({ "key": "web1.load", "history": [
            { "time": 101, "value": "0.75", "number": 0.75 },
            { "time": 100, "value": "0.5", "number": 0.5 },
        ]})
    );
    let uptime = get_json(&format!("{url}/api/uptime"));
    assert!(uptime["keys"].as_u64().unwrap() >= 2, "{uptime}");

    // Clear refusals.
    let (status, body) = get(&format!("{url}/api/history/nope"));
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"error":"no key \"nope\""}"#)
    );
    let (status, body) = get(&format!("{url}/api/keys?match=%5B"));
    assert_eq!(status, 400, "{body}");
    let (status, body) = get(&format!("{url}/api/jobs"));
    assert_eq!(status, 404);
    assert!(body.contains("not embedded in spud-host"), "{body}");
    // The dashboard and the API's description come from the binary.
    let (status, page) = get(&format!("{url}/"));
    assert!(status == 200 && page.contains("<title>SPUD</title>"));
    assert_eq!(get(&format!("{url}/app.js")).0, 200);
    let (status, spec) = get(&format!("{url}/openapi.yaml"));
    assert!(status == 200 && spec.starts_with("openapi: 3"));
}

#[test]
fn a_range_is_consolidated_per_step_from_the_stored_samples() {
    let server = SpudServer::start(&[]);
    let mut c = server.connect();
    for (time, value) in [
        (1000, "1"),
        (1003, "5"),
        (1010, "2"),
        (1011, "down"),
        (1025, "9"),
    ] {
        c.ask(&format!("set {time} box.cpu.user {value}"), "\r\n");
    }
    c.ask("set 1004 box.cpu.idle 90", "\r\n");
    let url = base(&server);
    let range = get_json(&format!(
        "{url}/api/range?key=box.cpu.user&from=1000&to=1030&step=10"
    ));
    assert_eq!(
        range,
        json!({ "key": "box.cpu.user", "step": 10, "points": [
            [1000, 3.0, 1.0, 5.0],
            [1010, 2.0, 2.0, 2.0],
            [1020, 9.0, 9.0, 9.0],
        ]})
    );
    let group = get_json(&format!(
        "{url}/api/range?pattern=box.cpu.*&from=1000&to=1010&step=10"
    ));
    let keys: Vec<&str> = group["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 2, "{group}");
    assert!(keys.contains(&"box.cpu.idle") && keys.contains(&"box.cpu.user"));
    for (query, says) in [
        ("key=box.cpu.user&from=10&to=5", "must come before"),
        ("key=box.cpu.user&from=0&to=1000000&step=1", "at most"),
        ("from=0&to=10", "give one of key="),
    ] {
        let (status, body) = get(&format!("{url}/api/range?{query}"));
        assert!(
            status == 400 && body.contains(says),
            "{query}: {status} {body}"
        );
    }
    assert_eq!(get(&format!("{url}/api/range?key=nope")).0, 404);
}

#[test]
fn a_range_beyond_the_history_in_memory_comes_from_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let server = SpudServer::start(&[
        "--history",
        "10",
        "--archive-flush",
        "1s",
        "--archive",
        dir.path().to_str().unwrap(),
    ]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t0 = (now - 1000) / 50 * 50;
    let mut c = server.connect();
    // 60 samples 5 s apart, 10 and 20 in turn; memory keeps the newest 10.
    for i in 0..60u64 {
        let value = if i % 2 == 0 { 10 } else { 20 };
        c.ask(&format!("set {} box.load {value}", t0 + 5 * i), "\r\n");
        // The archiver looks once a second: no more than the history between two looks.
        if i % 8 == 7 {
            std::thread::sleep(Duration::from_millis(1100));
        }
    }
    let url = format!(
        "{}/api/range?key=box.load&from={t0}&to={}&step=50",
        base(&server),
        t0 + 300
    );
    let deadline = Instant::now() + T;
    let points = loop {
        let range = get_json(&url);
        let points = range["points"].as_array().unwrap().clone();
        if points.len() >= 5 || Instant::now() > deadline {
            break points;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let times: Vec<u64> = points.iter().map(|p| p[0].as_u64().unwrap()).collect();
    assert!(
        times.contains(&(t0 + 50)) && times.contains(&(t0 + 250)),
        "{points:?}"
    );
    // Each 50 s step held 10 and 20 in turn: the archive keeps the spread as memory does.
    for p in &points {
        let (avg, min, max) = (
            p[1].as_f64().unwrap(),
            p[2].as_f64().unwrap(),
            p[3].as_f64().unwrap(),
        );
        assert!(
            min >= 10.0 && max <= 20.0 && min <= avg && avg <= max,
            "{points:?}"
        );
    }
    let archived = points
        .iter()
        .find(|p| p[0] == t0 + 100)
        .expect("a step from the archive");
    assert_eq!(
        (archived[2].as_f64(), archived[3].as_f64()),
        (Some(10.0), Some(20.0)),
        "{points:?}"
    );
}

#[test]
fn json_push_in_the_sister_format_is_all_or_nothing() {
    let server = SpudServer::start(&[]);
    let url = base(&server);
    // The sister system's own example, posted where its scripts post.
    let (status, body) = post(
        &format!("{url}/put?topic=tachyon-metric-json"),
        "application/json",
        br#"{"grouping": "fifo","metric": "fifo.vm.createions","time": 12345,"value": 1,"tags": {"fifo-host":"fifo01"}}"#,
    );
    assert_eq!((status, body.as_str()), (200, r#"{"stored":1}"#));
    let mut c = server.connect();
    assert_eq!(
        c.history("fifo.vm.createions.fifo-host:fifo01"),
        ["OK 1 12345 1"]
    );

    // An array, and one object per line; milliseconds; tags in name order; a string value.
    let (status, body) = post(
        &format!("{url}/api/push"),
        "application/json",
        br#"[{"grouping":"zone","metric":"cpu.usage","time":1700000000000,"value":12.5,"tags":{"zone":"z1","az":"east"}},
             {"metric":"disk.state","time":1700000001,"value":"degraded"}]"#,
    );
    assert_eq!((status, body.as_str()), (200, r#"{"stored":2}"#));
    assert_eq!(
        c.history("zone.cpu.usage.az:east.zone:z1"),
        ["OK 1 1700000000 12.5"]
    );
    assert_eq!(c.history("disk.state"), ["OK 1 1700000001 degraded"]);
    let (status, _) = post(
        &format!("{url}/api/push"),
        "application/x-ndjson",
        b"{\"metric\":\"nd.a\",\"time\":5,\"value\":1}\n{\"metric\":\"nd.b\",\"time\":5,\"value\":2}\n",
    );
    assert_eq!(status, 200);
    assert_eq!(c.history("nd.b"), ["OK 1 5 2"]);

    // One bad item refuses the batch, saying which and why; nothing of it is stored.
    let (status, body) = post(
        &format!("{url}/api/push"),
        "application/json",
        br#"[{"metric":"ok.one","value":1},{"metric":"bad.two","value":{"x":1}}]"#,
    );
    assert_eq!(status, 400);
    assert!(
        body.contains("item 1: value must be a number or a string; nothing was stored"),
        "{body}"
    );
    assert!(
        c.get("ok.one").is_empty(),
        "a refused batch stored something"
    );
    let (status, body) = post(
        &format!("{url}/api/push"),
        "application/json",
        b"{\"metric\": ",
    );
    assert_eq!(status, 400, "{body}");
}

/// Reads server-sent events' data lines from `url` until `n` have come.
fn events(url: &str, n: usize, after_open: impl FnOnce()) -> Vec<serde_json::Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(T))
        .build()
        .into();
    let reply = agent.get(url).call().unwrap();
    assert_eq!(
        reply.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    after_open();
    let mut lines = BufReader::new(reply.into_body().into_reader()).lines();
    let mut out = Vec::new();
    while out.len() < n {
        let line = lines.next().expect("the stream ended").unwrap();
        if let Some(data) = line.strip_prefix("data: ") {
            out.push(serde_json::from_str(data).unwrap());
        }
    }
    out
}

#[test]
fn stream_sends_every_set_and_coalesces_with_every() {
    let server = SpudServer::start(&[]);
    let url = base(&server);
    let addr = server.addr;
    let setter = move |lines: &'static [&'static str]| {
        move || {
            std::thread::spawn(move || {
                // Once the subscription is in place.
                std::thread::sleep(Duration::from_millis(300));
                let mut c = spud_tests::Client::connect(addr);
                for l in lines {
                    c.ask(l, "\r\n");
                }
            });
        }
    };
    let got = events(
        &format!("{url}/api/stream?match=live.*"),
        3,
        setter(&[
            "set 1 live.a 1",
            "set 2 other.b 2",
            "set 3 live.a 3",
            "set 4 live.c x",
        ]),
    );
    assert_eq!(
        got,
        [
            json!({ "key": "live.a", "time": 1, "value": "1", "number": 1.0 }),
            json!({ "key": "live.a", "time": 3, "value": "3", "number": 3.0 }),
            json!({ "key": "live.c", "time": 4, "value": "x" }),
        ]
    );
    // Coalesced: three sets of one key within the period arrive as the newest one.
    let got = events(
        &format!("{url}/api/stream?match=co.*&every=1s"),
        1,
        setter(&["set 1 co.k 1", "set 2 co.k 2", "set 3 co.k 3"]),
    );
    assert_eq!(
        got,
        [json!({ "key": "co.k", "time": 3, "value": "3", "number": 3.0 })]
    );
    let (status, body) = get(&format!("{url}/api/stream?every=1ns"));
    assert_eq!(status, 400, "{body}");
}

#[test]
fn host_serves_its_jobs_and_plugins() {
    let host = SpudHost::start(
        &["chaos"],
        "[[job]]\nname = \"good\"\nplugin = \"chaos\"\ninterval = \"100ms\"\noptions = { mode = \"ok\" }\n\
         [[job]]\nname = \"bad\"\nplugin = \"chaos\"\ninterval = \"100ms\"\noptions = { mode = \"error\" }\n",
    );
    let url = format!("http://{}", host.http.expect("HTTP is on"));
    let deadline = Instant::now() + T;
    let jobs = loop {
        let jobs = get_json(&format!("{url}/api/jobs"));
        let bad = jobs
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == "bad")
            .cloned();
        if bad.is_some_and(|b| b["errors"].as_u64() > Some(0) && b.get("last_error").is_some()) {
            break jobs;
        }
        assert!(Instant::now() < deadline, "{jobs}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let good = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "good")
        .unwrap();
    assert_eq!(good["state"], "running");
    assert_eq!(good["plugin"], "chaos");
    assert_eq!(good["generation"], 1);
    let plugins = get_json(&format!("{url}/api/plugins"));
    assert_eq!(plugins[0]["name"], "chaos", "{plugins}");
}

#[test]
fn prometheus_scrapes_metrics_through_the_mapping_rules() {
    assert!(
        Prometheus::installed(),
        "prometheus is missing: scripts/setup-test-deps installs it"
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        r#"
[[rule]]
match = "memcached.*.curr_items"
name = "memcached_curr_items"
labels = { instance = "$1" }
help = "Items stored in memcached."
"#,
    )
    .unwrap();
    let server = SpudServer::start(&["--metrics-rules", rules.to_str().unwrap()]);
    let mut c = server.connect();
    c.ask("set memcached.web1:11211.curr_items 42", "\r\n");
    c.ask("set web1.load 0.5", "\r\n");
    c.ask("set web1.state up", "\r\n");
    let http = server.http.unwrap();

    let (status, text) = get(&format!("http://{http}/metrics"));
    assert_eq!(status, 200);
    assert!(
        text.contains(
            "# TYPE memcached_curr_items gauge\nmemcached_curr_items{instance=\"web1:11211\"} 42\n"
        ),
        "{text}"
    );
    assert!(text.contains("\nweb1_load 0.5\n"), "{text}");
    assert!(
        text.contains("# TYPE spud_server_commands_total counter\n"),
        "{text}"
    );
    assert!(!text.contains("web1_state"), "{text}");

    // honor_labels: the rules' `instance` is the memcached's, not the scraped server's.
    let prometheus = Prometheus::start(
        &format!(
            "global: {{ scrape_interval: 1s }}\nscrape_configs:\n  - job_name: spud\n    honor_labels: true\n    static_configs:\n      - targets: ['{http}']\n"
        ),
        &[],
    );
    let found = prometheus.wait_for("memcached_curr_items", T, |v| v == 42.0);
    assert_eq!(found[0].0["instance"], "web1:11211", "{found:?}");
    prometheus.wait_for("web1_load", T, |v| v == 0.5);
    prometheus.wait_for("spud_server_commands_total{command=\"set\"}", T, |v| {
        v >= 3.0
    });
    // The scrape itself was clean: Prometheus says the target is up.
    prometheus.wait_for("up{job=\"spud\"}", T, |v| v == 1.0);
}

#[test]
fn remote_write_output_reaches_a_real_prometheus() {
    assert!(
        Prometheus::installed(),
        "prometheus is missing: scripts/setup-test-deps installs it"
    );
    let prometheus = Prometheus::start("global: {}\n", &["--web.enable-remote-write-receiver"]);
    let host = SpudHost::start(
        &["chaos"],
        &format!(
            r#"
[[job]]
name = "rw"
plugin = "chaos"
interval = "100ms"
options = {{ mode = "ok" }}

[[metrics.rule]]
match = "*.tick"
name = "chaos_tick"
labels = {{ job_name = "$1" }}

[[output]]
type = "prometheus_remote_write"
name = "prom"
url = "http://{}/api/v1/write"
match = "rw.*"
labels = {{ instance = "test-host" }}
flush = "200ms"
"#,
            prometheus.addr
        ),
    );
    let found = prometheus.wait_for("chaos_tick", T, |v| v >= 3.0);
    assert_eq!(found[0].0["job_name"], "rw", "{found:?}");
    assert_eq!(found[0].0["instance"], "test-host", "{found:?}");
    // Only what the output matches: the host's own keys stay home.
    assert!(prometheus.query("spud_host_samples_total").is_empty());
    let sent = host.wait_for("host.output.prom.sent", T, |v| {
        v.parse::<u64>().unwrap_or(0) > 0
    });
    assert!(sent.parse::<u64>().unwrap() > 0);
    assert_eq!(host.wait_for("host.output.prom.refused", T, |_| true), "0");
}

#[test]
fn outputs_and_metrics_rules_change_with_a_config_edit() {
    assert!(
        Prometheus::installed(),
        "prometheus is missing: scripts/setup-test-deps installs it"
    );
    let prometheus = Prometheus::start("global: {}\n", &["--web.enable-remote-write-receiver"]);
    let job = "[[job]]\nname = \"live\"\nplugin = \"chaos\"\ninterval = \"100ms\"\noptions = { mode = \"ok\" }\n";
    let host = SpudHost::start(&["chaos"], job);
    host.wait_for("live.tick", T, |_| true);
    let conf = host.dir.path().join("gatherer.toml");
    let base = std::fs::read_to_string(&conf).unwrap();
    let edit = |text: &str| {
        let tmp = host.dir.path().join(".gatherer.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &conf).unwrap();
    };
    // An output and a mapping rule added while it runs: the job is not restarted.
    edit(&format!(
        "{base}\n[[metrics.rule]]\nmatch = \"live.tick\"\nname = \"edited_tick\"\n\n\
         [[output]]\ntype = \"prometheus_remote_write\"\nname = \"added\"\n\
         url = \"http://{}/api/v1/write\"\nmatch = \"live.*\"\nflush = \"100ms\"\n",
        prometheus.addr
    ));
    host.process
        .wait_log("outputs: 1 started, 0 replaced, 0 stopped", T);
    prometheus.wait_for("edited_tick", T, |v| v >= 1.0);
    assert!(host.process.log().contains("[metrics] rules replaced"));
    // And removed again.
    edit(&base);
    host.process
        .wait_log("outputs: 0 started, 0 replaced, 1 stopped", T);
    let log = host.process.log();
    assert!(!log.contains("takes effect when"), "{log}");
    // The job ran on through both edits: its ticks are one unbroken run from 1.
    let mut ticks: Vec<u64> = host
        .connect()
        .history("live.tick")
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    ticks.reverse();
    assert!(ticks.windows(2).all(|w| w[1] == w[0] + 1), "{ticks:?}");
}

#[test]
fn remote_write_keeps_samples_while_the_receiver_is_away() {
    assert!(
        Prometheus::installed(),
        "prometheus is missing: scripts/setup-test-deps installs it"
    );
    let addr = spud_tests::free_port();
    let host = SpudHost::start(
        &["chaos"],
        &format!(
            "[[job]]\nname = \"away\"\nplugin = \"chaos\"\ninterval = \"100ms\"\noptions = {{ mode = \"ok\" }}\n\
             [[output]]\ntype = \"prometheus_remote_write\"\nname = \"late\"\nurl = \"http://{addr}/api/v1/write\"\n\
             match = \"away.tick\"\nflush = \"100ms\"\n"
        ),
    );
    // Nothing listens yet: samples wait.
    host.wait_for("host.output.late.buffered", T, |v| {
        v.parse::<u64>().unwrap_or(0) >= 30
    });
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    let prometheus = Prometheus::start_on(
        addr,
        "global: {}\n",
        &["--web.enable-remote-write-receiver"],
    );
    // What waited arrives with its own times: samples dated before the receiver existed
    // (one per second: the last value of a second wins).
    let found = prometheus.wait_for(
        &format!("count_over_time(away_tick[1m] @ {before})"),
        T,
        |n| n >= 2.0,
    );
    assert!(found[0].1 >= 2.0, "{found:?}");
    assert_eq!(host.wait_for("host.output.late.dropped", T, |_| true), "0");
    let log = host.process.log();
    assert!(
        log.contains("keeping samples and trying again") && log.contains("takes samples again"),
        "{log}"
    );
}

/// `promtool check metrics` (Prometheus' own linter) on the default config's `/metrics`
/// while StatsD and Graphite clients send: no error and no warning.
#[test]
fn the_default_configs_metrics_pass_promtool_under_statsd_and_graphite_traffic() {
    let promtool = std::process::Command::new("promtool")
        .arg("--version")
        .output();
    assert!(
        promtool.is_ok(),
        "promtool is missing: scripts/setup-test-deps installs prometheus"
    );
    let host = spud_tests::DefaultHost::start("");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..50 {
        for m in [
            "deploys:1|c".to_string(),
            format!("api.latency:{}|ms", i * 3),
            format!("queue.depth:{i}|g"),
            format!("users:u{i}|s"),
            "api.req:1|c|#route:/users,method:get".to_string(),
            "db.query:12|ms|@0.5|#table:orders".to_string(),
            format!("upload.size:{}|h", i * 100),
        ] {
            udp.send_to(m.as_bytes(), host.statsd).unwrap();
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    {
        use std::io::Write;
        let mut g = std::net::TcpStream::connect(host.graphite).unwrap();
        for i in 0..10 {
            write!(
                g,
                "web.rps {i} {now}\nweb.servers.web1.load 0.5 {now}\n\
                 app.requests;env=prod;dc=ams 12 {now}\n"
            )
            .unwrap();
        }
    }
    // Both receivers flush every 10 s (the default config's interval).
    let url = format!("http://{}/metrics", host.http);
    let deadline = Instant::now() + Duration::from_secs(40);
    let text = loop {
        let (_, text) = get(&url);
        let all = [
            "statsd_api_latency{quantile=\"0.9\"}",
            "statsd_db_query_count{table=\"orders\"}",
            "graphite_app_requests{dc=\"ams\",env=\"prod\"} 12",
            "spud_procstat_cpu_percent{mode=\"user\"",
            "statsd_upload_size_sum",
            "statsd_api_req_per_second{method=\"get\",route=\"_users\"}",
        ];
        if all.iter().all(|s| text.contains(s)) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "not all series yet:\n{text}\n{}",
            host.process.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        text.contains("# TYPE statsd_api_latency summary\n"),
        "{text}"
    );
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        check
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}
