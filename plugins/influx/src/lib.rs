//! InfluxDB line protocol over HTTP, as Telegraf's `influxdb` output and the InfluxDB
//! clients send it: `POST /write` (v1, `precision=n|u|ms|s|m|h`) and `POST /api/v2/write`
//! (`precision=ns|us|ms|s`), bodies plain or gzip (`Content-Encoding: gzip`). `/ping`
//! answers 204 and `/query` an empty result, so clients that check the server or create
//! their database on start work unchanged; the database and bucket are not part of the key.
//!
//! Keys are described in [`points`]: `<job>.<measurement>[.<tag>:<value>…].<field>`.
//! A body with malformed lines stores its good lines and answers 400 with a
//! `partial write` error naming the first bad line, as InfluxDB does.
//!
//! ```toml
//! [[job]]
//! name = "influx"
//! plugin = "influx"
//! interval = "10s"          # how often host.job.influx.{received,bad,dropped} are stored
//! options = { listen = "0.0.0.0:8086", auth = true }
//! ```
//!
//! Options: `listen`; `auth` (writes need a token with the `write` role from the server's
//! tokens file, `[server] tokens`: `Authorization: Token SECRET` as v2 clients send it,
//! or v1's user and password, `u`/`p` or HTTP basic, the password being the secret);
//! `allow` (the source networks answered); beyond loopback, `auth` or `allow` is required
//! unless `open = true` says anyone may write; refusals count as `refused`; `max_body` (bytes after gzip is undone, default 32 MiB; more is 413);
//! `max_requests` (bodies held at once, default 8: memory stays under their product).
//! The listening socket is handed over to the job's next generation on reload.

pub mod line;
pub mod points;

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use spud_access::{Role, Tokens};
use spud_plugin_api::kit::access::{self, Allow};
use spud_plugin_api::kit::intake::Intake;
use spud_plugin_api::kit::listen::{self, Held};
use spud_plugin_api::serde::Deserialize;
use spud_plugin_api::{export_plugin, Collector, Error, Host, Job, Plugin, Service};
use tokio::sync::Semaphore;

use points::Precision;

/// The line protocol receiver.
pub struct Influx;

#[derive(Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct Options {
    listen: String,
    #[serde(default)]
    auth: bool,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    open: bool,
    #[serde(default = "max_body")]
    max_body: usize,
    #[serde(default = "max_requests")]
    max_requests: usize,
}

fn max_body() -> usize {
    32 << 20
}
fn max_requests() -> usize {
    8
}

struct Server {
    listener: Held<TcpListener>,
    interval: Duration,
    shared: Arc<Shared>,
}

struct Shared {
    host: Host,
    intake: Intake,
    /// With `auth`: the tokens, one of which with the `write` role a write must carry.
    tokens: Option<Tokens>,
    allow: Allow,
    max_body: usize,
    bodies: Semaphore,
}

impl Plugin for Influx {
    const NAME: &'static str = "influx";
    const DESCRIPTION: &'static str = "InfluxDB line protocol over HTTP";

    fn new_job(job: &Job, host: Host) -> Result<Collector, Error> {
        let o: Options = job.options()?;
        if o.max_requests == 0 {
            return Err("options: max_requests must be at least 1".into());
        }
        let allow = Allow::new(&o.allow)?;
        access::receiver_guard(
            &o.listen,
            o.auth || allow.is_set(),
            o.open,
            "auth = true (tokens from [server] tokens) or allow = [\"10.0.0.0/8\", …]",
        )?;
        let tokens = match o.auth {
            false => None,
            true => Some(tokens(&host)?),
        };
        let listener = listen::tcp(&o.listen, &job.name)?;
        Ok(Collector::service(Server {
            listener,
            interval: job.interval,
            shared: Arc::new(Shared {
                intake: Intake::new(&job.name, host.clone()),
                tokens,
                allow,
                host,
                max_body: o.max_body,
                bodies: Semaphore::new(o.max_requests),
            }),
        }))
    }
}

impl Service for Server {
    fn run(&mut self) -> Result<(), Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("influx")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the HTTP runtime: {e}"))?;
        let listener = self
            .listener
            .try_clone()
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("listener: {e}"))?;
        let shared = Arc::clone(&self.shared);
        let interval = self.interval;
        let app = Router::new()
            .route("/write", post(write))
            .route("/api/v2/write", post(write))
            .route("/ping", get(ping).head(ping))
            .route("/query", get(query).post(query))
            .with_state(Arc::clone(&shared));
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|e| format!("listener: {e}"))?;
            let watcher = Arc::clone(&shared);
            let stopped = tokio::task::spawn_blocking(move || {
                while !watcher.host.stop_requested(interval) {
                    watcher.intake.publish();
                }
            });
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            serve.await.map_err(|e| format!("HTTP server: {e}"))
        })?;
        // Requests still open after a stop get a moment, then the runtime goes.
        runtime.shutdown_timeout(Duration::from_secs(2));
        self.shared.intake.publish();
        Ok(())
    }
}

/// What `/ping` says it is: clients read this header (python-influxdb fails without it).
const VERSION: &str = "1.8.10 (spud)";

async fn ping() -> Response {
    (
        StatusCode::NO_CONTENT,
        [("X-Influxdb-Version", VERSION), ("X-Influxdb-Build", "OSS")],
    )
        .into_response()
}

async fn query() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"results":[{"statement_id":0}]}"#,
    )
        .into_response()
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let message = message
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"error\":\"{message}\"}}"),
    )
        .into_response()
}

/// The server's tokens file, as the host names it (`[server] tokens`).
fn tokens(host: &Host) -> Result<Tokens, Error> {
    let path = host.var(TOKENS_VAR).ok_or(
        "options: auth = true needs the server's tokens file: give [server] tokens in gatherer.toml",
    )?;
    Tokens::load(std::path::Path::new(&path)).map_err(|e| format!("auth: {e}"))
}

/// The variable the host names its tokens file by.
const TOKENS_VAR: &str = "spud.tokens";

/// The answer refusing a write from `peer` with these credentials; None if it may go on.
fn refusal(
    shared: &Shared,
    peer: SocketAddr,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Option<Response> {
    if !shared.allow.admits(peer, &shared.intake) {
        return Some(error(StatusCode::FORBIDDEN, "this address may not write"));
    }
    let tokens = shared.tokens.as_ref()?;
    let unauthorized = |why: &str| {
        shared.intake.unauthorized(peer, why);
        // InfluxDB's words, which its clients recognise.
        error(StatusCode::UNAUTHORIZED, "authorization failed")
    };
    let Some(secret) = credentials(headers, params) else {
        return Some(unauthorized("no credentials"));
    };
    match tokens.check(secret.as_bytes()) {
        None => Some(unauthorized("unknown credentials")),
        Some((name, roles)) if !roles.has(Role::Write) => {
            shared
                .intake
                .unauthorized(peer, format_args!("token {name} lacks the write role"));
            Some(error(
                StatusCode::FORBIDDEN,
                format!("token {name} may not write"),
            ))
        }
        Some(_) => None,
    }
}

/// The secret a request carries: v2's `Authorization: Token SECRET` (or v1's compatible
/// `Token USER:SECRET`), HTTP basic's password, or v1's `p` parameter.
fn credentials(headers: &HeaderMap, params: &HashMap<String, String>) -> Option<String> {
    use base64::Engine;
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, rest) = value.trim().split_once(' ')?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer") {
            return Some(rest.to_string());
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            return text
                .split_once(':')
                .map(|(_, password)| password.to_string());
        }
        return None;
    }
    params.get("p").cloned()
}

async fn write(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(refused) = refusal(&shared, peer, &headers, &params) {
        // Read (a bounded part of) what the client sends, so that it sees the answer
        // rather than a connection closed while it was still sending.
        let _ = axum::body::to_bytes(body, 1 << 20).await;
        return refused;
    }
    // Bodies held at once are bounded: a flood waits here (and in the kernel) instead of
    // growing memory.
    let Ok(_permit) = shared.bodies.acquire().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "stopping");
    };
    // The body is read before any answer: a client still sending it would otherwise see
    // the connection close instead of the answer.
    let bytes = match axum::body::to_bytes(body, shared.max_body).await {
        Ok(b) => b,
        Err(_) => {
            let e = format!("the body is over max_body ({} bytes)", shared.max_body);
            shared.intake.dropped(1, "body too large", &e);
            return error(StatusCode::PAYLOAD_TOO_LARGE, e);
        }
    };
    let precision = match Precision::parse(params.get("precision").map(String::as_str)) {
        Ok(p) => p,
        Err(e) => {
            shared.intake.bad("bad precision", &e);
            return error(StatusCode::BAD_REQUEST, e);
        }
    };
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let shared2 = Arc::clone(&shared);
    // Parsing and storing a large body is CPU work: off the runtime's threads.
    tokio::task::spawn_blocking(move || store(&shared2, bytes, gzip, precision))
        .await
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))
}

fn store(shared: &Shared, bytes: Bytes, gzip: bool, precision: Precision) -> Response {
    let inflated;
    let bytes: &[u8] = if gzip {
        let mut out = Vec::new();
        let limit = shared.max_body as u64 + 1;
        match flate2::read::MultiGzDecoder::new(&bytes[..])
            .take(limit)
            .read_to_end(&mut out)
        {
            Ok(n) if n as u64 >= limit => {
                let e = format!(
                    "the body inflates past max_body ({} bytes)",
                    shared.max_body
                );
                shared.intake.dropped(1, "body too large", &e);
                return error(StatusCode::PAYLOAD_TOO_LARGE, e);
            }
            Ok(_) => {}
            Err(e) => {
                shared.intake.bad("bad gzip body", &e);
                return error(StatusCode::BAD_REQUEST, format!("gzip: {e}"));
            }
        }
        inflated = out;
        &inflated
    } else {
        &bytes
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        shared
            .intake
            .bad("body is not UTF-8", "line protocol is UTF-8 text");
        return error(StatusCode::BAD_REQUEST, "the body is not UTF-8");
    };
    let mut taken = 0;
    let refused = points::samples(text, precision, |key, value, time| {
        taken += 1;
        match time {
            Some(t) => shared.host.set_at(key, value, t),
            None => shared.host.set(key, value),
        }
    });
    shared.intake.received(taken);
    let Some(first) = refused.first() else {
        return StatusCode::NO_CONTENT.into_response();
    };
    for r in &refused {
        shared
            .intake
            .bad("line refused", format_args!("line {}: {}", r.line, r.why));
    }
    error(
        StatusCode::BAD_REQUEST,
        format!(
            "partial write: {} line(s) refused, the first: line {}: {}",
            refused.len(),
            first.line,
            first.why
        ),
    )
}

export_plugin!(Influx);
