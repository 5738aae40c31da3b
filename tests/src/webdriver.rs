//! Just enough of the W3C WebDriver protocol to drive Debian's headless Chromium through
//! chromedriver: open a page, find elements, read text, click, take a screenshot. (A client
//! crate would bring a TLS stack to talk to a process on loopback.)

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::{free_port, Process};

pub struct Browser {
    base: String,
    _driver: Process,
}

fn call(method: &str, url: &str, body: Option<Value>) -> Value {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut reply = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        ("DELETE", _) => agent.delete(url).call(),
        (_, body) => agent.post(url).send_json(body.unwrap_or(json!({}))),
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let text = reply.body_mut().read_to_string().unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"));
    value["value"].clone()
}

impl Browser {
    /// Whether chromium and chromedriver are installed.
    pub fn installed() -> bool {
        Command::new("chromedriver")
            .arg("--version")
            .output()
            .is_ok()
            && std::path::Path::new("/usr/bin/chromium").exists()
    }

    /// Starts chromedriver and a headless Chromium session.
    pub fn start() -> Browser {
        let addr: SocketAddr = free_port();
        let mut cmd = Command::new("chromedriver");
        cmd.arg(format!("--port={}", addr.port()));
        let (driver, _) =
            Process::start_stdout(cmd, "started successfully", Duration::from_secs(30));
        let root = format!("http://{addr}");
        let profile = std::env::temp_dir().join(format!("spud-chromium-{}", addr.port()));
        let session = call(
            "POST",
            &format!("{root}/session"),
            Some(json!({
                "capabilities": { "alwaysMatch": { "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    // The machine has no network: without the background flags Chromium
                    // keeps trying to reach Google's hosts.
                    "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                             "--no-first-run", "--disable-background-networking",
                             "--disable-component-update", "--disable-sync",
                             "--window-size=1280,900",
                             format!("--user-data-dir={}", profile.display())]
                }}}
            })),
        );
        let id = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {session}"))
            .to_string();
        Browser {
            base: format!("{root}/session/{id}"),
            _driver: driver,
        }
    }

    pub fn goto(&self, url: &str) {
        call(
            "POST",
            &format!("{}/url", self.base),
            Some(json!({ "url": url })),
        );
    }

    /// The element matching a CSS selector, if there is one now.
    pub fn find(&self, css: &str) -> Option<String> {
        let found = call(
            "POST",
            &format!("{}/element", self.base),
            Some(json!({ "using": "css selector", "value": css })),
        );
        // An error ("no such element") is an object too, without this key.
        found
            .get("element-6066-11e4-a52e-4f735466cecf")
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// Waits for an element; returns its id.
    pub fn wait(&self, css: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(e) = self.find(css) {
                return e;
            }
            assert!(Instant::now() < deadline, "no {css} on the page");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn text(&self, element: &str) -> String {
        call(
            "GET",
            &format!("{}/element/{element}/text", self.base),
            None,
        )
        .as_str()
        .unwrap_or("")
        .to_string()
    }

    pub fn click(&self, element: &str) {
        call(
            "POST",
            &format!("{}/element/{element}/click", self.base),
            None,
        );
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub fn execute(&self, script: &str) -> Value {
        let v = call(
            "POST",
            &format!("{}/execute/sync", self.base),
            Some(json!({ "script": script, "args": [] })),
        );
        if let Some(e) = v.get("error") {
            panic!("{script}: {e}: {}", v["message"]);
        }
        v
    }

    /// Drags the mouse across `element`, from `from` to `to` pixels right of its centre
    /// (negative: left), as a person selects a span: real pointer input, through the
    /// browser's input pipeline.
    pub fn drag(&self, element: &str, from: i64, to: i64) {
        let origin = json!({ "element-6066-11e4-a52e-4f735466cecf": element });
        call(
            "POST",
            &format!("{}/actions", self.base),
            Some(json!({ "actions": [{
                "type": "pointer", "id": "mouse", "parameters": { "pointerType": "mouse" },
                "actions": [
                    { "type": "pointerMove", "duration": 0, "origin": origin, "x": from, "y": 0 },
                    { "type": "pointerDown", "button": 0 },
                    { "type": "pointerMove", "duration": 150, "origin": origin, "x": (from + to) / 2, "y": 0 },
                    { "type": "pointerMove", "duration": 150, "origin": origin, "x": to, "y": 0 },
                    { "type": "pointerUp", "button": 0 }
                ]
            }]})),
        );
    }

    /// Resizes the window.
    pub fn resize(&self, width: u32, height: u32) {
        call(
            "POST",
            &format!("{}/window/rect", self.base),
            Some(json!({ "width": width, "height": height })),
        );
    }

    /// Waits until `script` (a function body) returns something other than null or false;
    /// returns that.
    pub fn wait_for(&self, script: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.execute(script);
            if !v.is_null() && v != Value::Bool(false) {
                return v;
            }
            assert!(Instant::now() < deadline, "never true: {script}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the page logged (errors, failed requests) since the last call.
    pub fn logs(&self) -> Value {
        call(
            "POST",
            &format!("{}/se/log", self.base),
            Some(json!({ "type": "browser" })),
        )
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        let b64 = call("GET", &format!("{}/screenshot", self.base), None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or(""))
            .expect("base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        call("DELETE", &self.base, None);
    }
}
