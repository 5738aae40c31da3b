//! The dashboard in real Chromium (Debian's `chromium` through `chromium-driver`): the
//! default config's charts, a week of history from the archive, zoom, thresholds and alert
//! states, the table a click away. Screenshots of each range go to `target/dashboard/`.

use std::time::{Duration, Instant};

use serde_json::Value;
use spud_tests::webdriver::Browser;
use spud_tests::{workspace_root, Client, DefaultHost, SpudHost};

const T: Duration = Duration::from_secs(60);

fn browser() -> Browser {
    assert!(
        Browser::installed(),
        "chromium and chromium-driver are missing: scripts/setup-test-deps installs them"
    );
    Browser::start()
}

/// Where the screenshots are kept.
fn shot(browser: &Browser, name: &str) {
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"));
    let dir = workspace_root().join("target/dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{name}.png"));
    std::fs::write(&out, png).unwrap();
    eprintln!("screenshot: {}", out.display());
}

/// The `api/range` requests of `group` the page made, as (from, to), in order.
fn asked(browser: &Browser, group: &str) -> Vec<(u64, u64)> {
    let urls = browser.execute(
        "return performance.getEntriesByType('resource').map((e) => e.name)\
         .filter((n) => n.includes('api/range'));",
    );
    urls.as_array()
        .unwrap()
        .iter()
        .filter_map(|u| {
            let url = u.as_str()?;
            let query = url.split_once('?')?.1;
            let param = |name: &str| {
                query
                    .split('&')
                    .find_map(|p| p.strip_prefix(&format!("{name}=")))
                    .map(|v| v.replace("%2E", ".").replace("%2e", "."))
            };
            (param("group")? == group)
                .then(|| Some((param("from")?.parse().ok()?, param("to")?.parse().ok()?)))?
        })
        .collect()
}

fn search(browser: &Browser, text: &str) {
    browser.execute(&format!(
        "const s = document.querySelector('#search'); s.value = {}; \
         s.dispatchEvent(new Event('input')); return true;",
        Value::from(text)
    ));
}

/// Waits until `group`'s chart has drawn points of a range newer than generation `after`
/// (each range the page asks for is a generation); returns that generation.
fn drawn_after(browser: &Browser, group: &str, after: i64) -> i64 {
    let script = format!(
        "const c = document.querySelector('.chart[data-group=\"{group}\"]'); \
         if (!c || c.dataset.drawn === undefined) return null; \
         const g = Number(c.dataset.drawn); \
         return Number(c.dataset.points) > 0 && g > {after} ? g : null;"
    );
    browser.wait_for(&script, T).as_i64().unwrap()
}

fn drawn(browser: &Browser, group: &str) -> i64 {
    drawn_after(browser, group, -1)
}

#[test]
fn charts_of_the_default_config_a_week_from_the_archive_zoom_and_thresholds() {
    let host = DefaultHost::start(
        "[[alert]]\nname = \"backfill_high\"\nkeys = \"week.backfill.load\"\n\
         warn = \"last > 80\"\ncrit = \"last > 95\"\n\n\
         [[alert]]\nname = \"heartbeat_seen\"\nkeys = \"test.heartbeat\"\nwarn = \"last > 0\"\n",
    );
    // A week of a daily wave at 5 s (and a flat line beside it), as timed sets: 240k
    // samples, which the archive takes whole (the history in memory keeps 100 of each).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t0 = (now - 7 * 86400) / 5 * 5;
    let mut c = Client::connect(host.addr);
    for day in 0..7u64 {
        let mut batch = String::new();
        for i in 0..17_280u64 {
            let t = t0 + day * 86_400 + 5 * i;
            let phase = (t % 86_400) as f64 / 86_400.0 * std::f64::consts::TAU;
            batch += &format!(
                "qset {t} week.backfill.load {:.2}\r\nqset {t} week.backfill.base 20\r\n",
                50.0 + 45.0 * phase.sin()
            );
        }
        c.send(&batch);
    }
    c.ask("uptime", "OK done\r\n");

    let b = browser();
    b.resize(1400, 1800);
    b.goto(&format!("http://{}/", host.http));
    // The default config's charts, live.
    b.wait_for("return document.body.dataset.firstPaintMs ?? null;", T);
    for group in ["box.cpu", "box.load", "box.mem"] {
        drawn(&b, group);
    }
    search(&b, "test");
    drawn(&b, "test");
    let states = b.wait(r#".chart[data-group="test"] .states .sev.warning"#, T);
    assert_eq!(b.text(&states), "WARNING");
    search(&b, "");
    // Live: the heartbeat's line grows by itself (server-sent events).
    let points = |b: &Browser| -> u64 {
        b.execute("return document.querySelector('.chart[data-group=\"test\"]').dataset.points;")
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    // Charts out of view wait to be drawn: bring it into view.
    b.execute(
        "document.querySelector('.chart[data-group=\"test\"]').scrollIntoView(); return true;",
    );
    let first = points(&b);
    let deadline = Instant::now() + T;
    while points(&b) < first + 5 {
        assert!(
            Instant::now() < deadline,
            "the live chart stayed at {first} points"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    b.execute("window.scrollTo(0, 0); return true;");
    shot(&b, "live");

    // A week: the backfill, from the archive (the history in memory is 8 minutes of it).
    let week = b.wait(r#"#ranges button[data-range="604800"]"#, T);
    b.click(&week);
    search(&b, "week");
    let deadline = Instant::now() + Duration::from_secs(120);
    let generation = loop {
        let g = drawn(&b, "week.backfill");
        let points: u64 = b
            .execute("return document.querySelector('.chart[data-group=\"week.backfill\"]').dataset.points;")
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        // Two keys, an hour a step: about 2 × 168 when the archive has the week.
        if points >= 300 {
            break g;
        }
        assert!(
            Instant::now() < deadline,
            "{points} points\n{}",
            host.process.log()
        );
        // The archiver is still writing: ask again.
        b.click(&week);
        std::thread::sleep(Duration::from_millis(500));
    };
    let (from, to) = *asked(&b, "week.backfill").last().unwrap();
    assert!((604_790..=604_810).contains(&(to - from)), "{from}..{to}");
    let thresholds = b.execute(
        "return document.querySelector('.chart[data-group=\"week.backfill\"]').dataset.thresholds;",
    );
    assert_eq!(thresholds, "2", "warn and crit of backfill_high");
    shot(&b, "1w");

    // Zoom: a drag across the chart asks for that span, and draws it.
    let over = b.wait(r#".chart[data-group="week.backfill"] .u-over"#, T);
    let before = asked(&b, "week.backfill").len();
    // From a quarter of its width left of the middle to an eighth right of it: 37.5%.
    let width = b
        .execute("return document.querySelector('.chart[data-group=\"week.backfill\"] .u-over').clientWidth;")
        .as_i64()
        .unwrap();
    b.drag(&over, -width / 4, width / 8);
    let deadline = Instant::now() + T;
    let (zfrom, zto) = loop {
        let all = asked(&b, "week.backfill");
        if all.len() > before {
            break *all.last().unwrap();
        }
        assert!(Instant::now() < deadline, "no range asked after the drag");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        zfrom > from && zto < to && zto - zfrom < (to - from) / 2,
        "{zfrom}..{zto}"
    );
    drawn_after(&b, "week.backfill", generation);
    let span = b.text(&b.wait("#span", T));
    assert!(span.contains("steps"), "{span}");
    shot(&b, "zoomed");

    // Every other range, a picture each.
    for (range, name) in [
        ("3600", "1h"),
        ("86400", "1d"),
        ("2592000", "1month"),
        ("31536000", "1year"),
    ] {
        let button = b.wait(&format!(r#"#ranges button[data-range="{range}"]"#), T);
        let shown = drawn(&b, "week.backfill");
        b.click(&button);
        drawn_after(&b, "week.backfill", shown);
        std::thread::sleep(Duration::from_millis(300));
        shot(&b, name);
    }

    // The table, one click away; a key there opens its chart.
    let table = b.wait(r#"#views button[data-view="table"]"#, T);
    b.click(&table);
    let row = b.wait(r#"#keys tr[data-key="test.heartbeat"]"#, T);
    shot(&b, "table");
    b.click(&row);
    b.wait_for(
        "return !document.querySelector('#charts').hidden && \
         !document.querySelector('.chart[data-group=\"test\"]').hidden;",
        T,
    );
}

#[test]
fn the_table_shows_live_values_and_the_host_jobs() {
    let host = SpudHost::start(
        &["chaos"],
        "[[job]]\nname = \"dash\"\nplugin = \"chaos\"\ninterval = \"200ms\"\noptions = { mode = \"ok\" }\n\
         [[job]]\nname = \"broken\"\nplugin = \"chaos\"\ninterval = \"200ms\"\noptions = { mode = \"panic\" }\n",
    );
    host.wait_for("dash.tick", T, |_| true);
    let b = browser();
    b.goto(&format!("http://{}/", host.http.unwrap()));
    // Charts first: the job's chart.
    drawn(&b, "dash");
    let table = b.wait(r#"#views button[data-view="table"]"#, T);
    b.click(&table);
    let cell = b.wait(r#"tr[data-key="dash.tick"] td.value"#, T);
    let first: u64 = b.text(&cell).parse().expect("a tick number");
    // The value changes on the page by itself (server-sent events).
    let deadline = Instant::now() + T;
    loop {
        let cell = b.wait(r#"tr[data-key="dash.tick"] td.value"#, T);
        let now: u64 = b.text(&cell).parse().unwrap_or(0);
        if now >= first + 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the value stayed at {now}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The host's jobs with their state.
    let state = b.wait(r#"tr[data-job="dash"] td.state.running"#, T);
    assert_eq!(b.text(&state), "running");
    b.wait(r#"tr[data-job="broken"] td.error"#, T);
    shot(&b, "jobs");
}
