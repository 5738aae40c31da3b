//! The dashboard's first paint in Chromium (Debian's, through chromedriver): 500 keys in 60
//! charts (six jobs of ten groups), each key's 100 samples in memory. The page says when
//! every chart in view has drawn (`data-first-paint-ms`, from the start of navigation);
//! measured with a window of a usual size and with one tall enough to show all 60 charts.

use std::time::Duration;

use anyhow::{Context, Result};
use spud_tests::webdriver::Browser;
use spud_tests::{release_binary, SpudServer};

use crate::common::median;

const KEYS: usize = 500;
const GROUPS: usize = 60;
const LOADS: usize = 5;

/// Waits for the page to say when it first drew every chart in view.
fn paint_ms(browser: &Browser) -> Result<f64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = browser.execute("return document.body.dataset.firstPaintMs ?? null;");
        if let Some(ms) = v.as_str() {
            return Ok(ms.parse()?);
        }
        if std::time::Instant::now() > deadline {
            let state = browser.execute(
                "return [location.href, document.querySelectorAll('.chart').length, \
                 document.querySelectorAll('.chart[data-drawn]').length, innerWidth, innerHeight];",
            );
            anyhow::bail!("the dashboard never painted: {state}; {}", browser.logs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn dashboard(report: &mut Vec<String>) -> Result<()> {
    println!("== dashboard: first paint of {KEYS} keys in {GROUPS} charts, in Chromium");
    anyhow::ensure!(
        Browser::installed(),
        "chromium and chromium-driver are missing: scripts/setup-test-deps installs them"
    );
    let server = SpudServer::start_binary(&release_binary("spud-server"), &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut batch = String::new();
    for k in 0..KEYS {
        let g = k % GROUPS;
        let key = format!("job{}.group{}.m{}", g / 10, g % 10, k / GROUPS);
        for s in 0..100u64 {
            let t = now - 500 + 5 * s;
            batch += &format!("qset {t} {key} {}\r\n", (s * 7 + k as u64) % 100);
        }
    }
    let mut c = server.connect();
    c.send(&batch);
    c.ask("uptime", "OK done\r\n");
    let url = format!("http://{}/", server.http.context("HTTP is on")?);
    let browser = Browser::start();
    for (label, height) in [
        ("a 1400×900 window", 900),
        ("every chart in view (1400×16000)", 16_000),
    ] {
        browser.resize(1400, height);
        let mut times = Vec::new();
        let mut charts = 0;
        for _ in 0..=LOADS {
            browser.goto("about:blank");
            browser.goto(&url);
            let ms = paint_ms(&browser)?;
            charts = browser
                .execute("return document.querySelectorAll('.chart[data-drawn]').length;")
                .as_u64()
                .unwrap_or(0);
            times.push(ms);
        }
        // The first load fetched uPlot and the page; the others had them cached.
        let cold = times.remove(0);
        let warm = median(times);
        println!("  {label}: {charts} charts drawn, first paint {cold:.0} ms cold, {warm:.0} ms warm (median of {LOADS})");
        report.push(format!(
            "| dashboard first paint, {KEYS} keys in {GROUPS} charts, {label} ({charts} drawn) | {warm:.0} ms (cold {cold:.0} ms) | target < 1000 ms | {:.2}× the target |",
            warm / 1000.0
        ));
    }
    Ok(())
}
