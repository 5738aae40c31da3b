//! Process isolation: jobs in worker processes of their own, and what each kind of plugin
//! failure then costs (that worker alone). The failing plugins are the chaos plugin's
//! `segfault`, `hang`, `leak_threads` and `alloc` modes, which would take an in-process
//! host down with them.

use std::time::{Duration, Instant};

use spud_tests::{plugin, Client, SpudHost};

const T: Duration = Duration::from_secs(30);

/// A job that ticks in the host's own process, to show it never blinks.
const STEADY: &str = "[[job]]\nname = \"steady\"\nplugin = \"chaos\"\ninterval = \"100ms\"\noptions = { mode = \"ok\" }\n";

fn isolated(name: &str, mode: &str, extra: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\nplugin = \"chaos\"\ninterval = \"100ms\"\nisolation = \"process\"\n{extra}options = {{ mode = \"{mode}\" }}\n"
    )
}

fn number(c: &mut Client, key: &str) -> u64 {
    c.history(key)
        .first()
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

fn text(c: &mut Client, key: &str) -> String {
    c.history(key)
        .first()
        .and_then(|l| l.splitn(4, ' ').nth(3).map(str::to_string))
        .unwrap_or_default()
}

/// Waits until `key`'s newest value satisfies `ok`, naming the host's log if it never does.
fn wait(host: &SpudHost, key: &str, ok: impl Fn(&str) -> bool) -> String {
    host.wait_for(key, T, ok)
}

fn worker_pid(host: &SpudHost, job: &str) -> Option<u32> {
    let jobs = spud_tests::http::get_json(&format!("http://{}/api/jobs", host.http.unwrap()));
    jobs.as_array()?
        .iter()
        .find(|j| j["name"] == job)?
        .get("worker_pid")?
        .as_u64()
        .map(|p| p as u32)
}

fn alive(pid: u32) -> bool {
    // A zombie is gone for our purposes: only its exit status is left.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn an_isolated_job_runs_in_a_worker_of_its_own() {
    let config = format!(
        "[vars]\nsite = \"ams1\"\n\n{STEADY}\n{}\n{}",
        isolated("iso", "ok", ""),
        isolated("bad", "ok", "").replace("mode = \"ok\"", "mode = \"ok\", oops = 1")
    );
    let host = SpudHost::start(&["chaos"], &config);
    wait(&host, "iso.tick", |v| v.parse::<u64>().unwrap_or(0) >= 3);
    let mut c = host.connect();
    // The vars and counters a plugin uses work across the boundary.
    assert_eq!(text(&mut c, "iso.site"), "ams1");
    assert!(number(&mut c, "iso.collects") >= 3);

    let pid = worker_pid(&host, "iso").expect("a worker pid in /api/jobs");
    assert_ne!(pid, host.process.pid());
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("worker"),
        "{cmdline:?}"
    );
    assert!(worker_pid(&host, "steady").is_none());

    // Options are checked in the worker, and refused as in-process, naming the job.
    let log = host.process.log();
    assert!(
        log.contains("job bad: bad options: unknown field `oops`"),
        "{log}"
    );
}

#[test]
fn a_segfault_costs_only_its_worker_which_comes_back() {
    let host = SpudHost::start(
        &["chaos"],
        &format!("{STEADY}\n{}", isolated("seg", "segfault", "")),
    );
    wait(&host, "host.job.seg.errors", |v| {
        v.parse::<u64>().unwrap_or(0) >= 3
    });
    let mut c = host.connect();
    let why = text(&mut c, "host.job.seg.last_error");
    assert!(why.contains("died: killed by signal 11 (SIGSEGV)"), "{why}");
    // Each new worker ticks again before its own crash: it was started anew each time.
    let ticks: Vec<String> = c.history("seg.tick");
    assert!(
        ticks.iter().filter(|l| l.ends_with(" 1")).count() >= 3,
        "{ticks:?}"
    );
    // The host and its other job carried on throughout.
    let steady = number(&mut c, "steady.tick");
    wait(&host, "steady.tick", |v| {
        v.parse::<u64>().unwrap_or(0) >= steady + 5
    });
    host.process.wait_log("started a new worker", T);
}

#[test]
fn a_hung_worker_is_killed_after_the_grace_period_and_replaced() {
    let host = SpudHost::start(
        &["chaos"],
        &format!(
            "{STEADY}\n{}",
            isolated("hung", "hang", "timeout = \"300ms\"\n")
        ),
    );
    // The first collect never returns: wedged at its timeout, killed a grace period later.
    let first = {
        let deadline = Instant::now() + T;
        loop {
            if let Some(pid) = worker_pid(&host, "hung") {
                break pid;
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let why = wait(&host, "host.job.hung.last_error", |v| !v.is_empty());
    assert!(
        why.contains(&format!(
            "collect still running 1s past its 300ms timeout: worker {first} killed"
        )),
        "{why}"
    );
    assert!(!alive(first), "the hung worker {first} is still there");
    // After its backoff a new worker takes the job (and hangs in turn).
    let deadline = Instant::now() + T;
    while worker_pid(&host, "hung").is_none_or(|p| p == first) {
        assert!(Instant::now() < deadline, "{}", host.process.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut c = host.connect();
    let steady = number(&mut c, "steady.tick");
    wait(&host, "steady.tick", |v| {
        v.parse::<u64>().unwrap_or(0) >= steady + 5
    });
}

#[test]
fn leaked_threads_and_unbounded_allocation_are_stopped_at_the_limits() {
    let host = SpudHost::start(
        &["chaos"],
        &format!(
            "[host]\nworker_threads = 30\nworker_memory_mib = 512\n\n{STEADY}\n{}\n{}",
            isolated("threads", "leak_threads", ""),
            isolated("hog", "alloc", "")
        ),
    );
    // Spawning may fail first (the address space limit counts thread stacks too): a panic,
    // then the thread count is seen and the worker killed.
    wait(&host, "host.job.threads.last_error", |v| {
        v.contains("threads, over the limit of 30: killed")
    });
    let why = wait(&host, "host.job.hog.last_error", |v| !v.is_empty());
    assert!(
        why.contains("died: killed by signal 6 (SIGABRT)")
            && why.contains("its last words: ")
            && why.contains("memory allocation of"),
        "{why}"
    );
    // The host's own memory never saw the hog's.
    assert!(
        host.process.rss_kib() < 200 * 1024,
        "host RSS {} KiB",
        host.process.rss_kib()
    );
    let mut c = host.connect();
    let steady = number(&mut c, "steady.tick");
    wait(&host, "steady.tick", |v| {
        v.parse::<u64>().unwrap_or(0) >= steady + 5
    });
}

#[test]
fn with_host_wide_isolation_a_reload_retires_the_old_worker_and_maps_nothing() {
    let dir = SpudHost::prepare(
        &["versioned"],
        "[host]\nisolation = \"process\"\n\n[[job]]\nname = \"v\"\nplugin = \"versioned\"\ninterval = \"100ms\"\n",
    );
    let host = SpudHost::start_in(dir);
    wait(&host, "v.version", |v| v == "1");
    let old = worker_pid(&host, "v").unwrap();
    let plugins = host.dir.path().join("plugins");
    let tmp = plugins.join(".versioned.so.tmp");
    spud_tests::install_plugin(&plugin("versioned-v2"), &tmp);
    std::fs::rename(&tmp, plugins.join("versioned.so")).unwrap();
    wait(&host, "v.version", |v| v == "2");
    let new = worker_pid(&host, "v").unwrap();
    assert_ne!(old, new);
    let deadline = Instant::now() + T;
    while alive(old) {
        assert!(
            Instant::now() < deadline,
            "the old worker {old} was not retired"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The host read both versions' declarations through workers: it mapped neither.
    let mut c = host.connect();
    assert_eq!(number(&mut c, "host.generations"), 0);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", host.process.pid())).unwrap();
    assert!(!maps.contains("versioned"), "the host mapped a plugin");
}
