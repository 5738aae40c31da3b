//! The stat server over HTTP: a JSON API, a live dashboard, `/metrics` for Prometheus and
//! a JSON push endpoint. The line protocol stays the fast path; everything here reads the
//! same in-process store, so an open dashboard or a scrape does not stand in its way.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the dashboard (every asset inside the binary) |
//! | `GET /api/keys?match=P` | newest value of every matching key |
//! | `GET /api/history/{key}` | one key's history, newest first |
//! | `GET /api/range?key=K&from=T&to=T&step=S` (or `pattern=P`) | samples over a range, consolidated per step |
//! | `GET /api/stream?match=P[&every=500ms]` | server-sent events of every set (or the newest per key per `every`) |
//! | `GET /api/uptime` | uptime, subscriptions, keys |
//! | `GET /api/alerts[?match=P]` | alert instances not ok, with thresholds; receivers |
//! | `GET /api/jobs`, `/api/plugins` | spud-host's jobs and plugins (embedded in the host) |
//! | `POST /api/push` (and `/put`) | samples as JSON, in the sister system's format |
//! | `GET /metrics` | the Prometheus text format |
//! | `GET /openapi.yaml` | the API's description |
//!
//! With tokens (`crate::auth`), every `/api/*`, `/put` and `/metrics` request needs
//! `Authorization: Bearer SECRET` (or `?access_token=SECRET`, for `EventSource`) of a token
//! with the read role (GET) or the write role (POST); the dashboard's files stay open.

mod api;
mod auth;
mod dashboard;
mod push;
mod range;
mod stream;

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::access::auth::{Role, Tokens};
use crate::access::tls::TlsListener;
use crate::faces::metrics::Exporter;
use crate::Server;

#[derive(Clone)]
struct App {
    server: Server,
    exporter: Arc<Exporter>,
}

/// The routes, over `server`, with `/metrics` rendered by `exporter`; with `tokens`, reads
/// and writes need a token with the role.
pub fn router(server: Server, exporter: Arc<Exporter>, tokens: Option<Arc<Tokens>>) -> Router {
    let app = App { server, exporter };
    let reads = Router::new()
        .route("/api/keys", get(api::keys))
        .route("/api/history/{key}", get(api::history))
        .route("/api/range", get(range::range))
        .route("/api/uptime", get(api::uptime))
        .route("/api/alerts", get(api::alerts))
        .route("/api/jobs", get(api::jobs))
        .route("/api/plugins", get(api::plugins))
        .route("/api/stream", get(stream::stream))
        .route("/metrics", get(metrics));
    let writes = Router::new()
        .route("/api/push", post(push::push))
        .route("/put", post(push::push));
    let (reads, writes) = match tokens {
        Some(tokens) => {
            let needs = |role| {
                let guard = auth::Guard {
                    tokens: Arc::clone(&tokens),
                    role,
                };
                axum::middleware::from_fn_with_state(guard, auth::guard)
            };
            (
                reads.route_layer(needs(Role::Read)),
                writes.route_layer(needs(Role::Write)),
            )
        }
        None => (reads, writes),
    };
    Router::new()
        .route("/", get(dashboard::index))
        .route("/app.js", get(dashboard::script))
        .route("/style.css", get(dashboard::style))
        .route("/uplot.js", get(dashboard::uplot_script))
        .route("/uplot.css", get(dashboard::uplot_style))
        .route("/openapi.yaml", get(dashboard::openapi))
        .merge(reads)
        .merge(writes)
        .with_state(app)
}

/// Serves HTTP (HTTPS with `tls`) on `listener` until `shutdown`.
pub async fn serve(
    server: Server,
    exporter: Arc<Exporter>,
    tokens: Option<Arc<Tokens>>,
    tls: Option<Arc<rustls::ServerConfig>>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(server, exporter, tokens);
    match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        }
        Some(config) => {
            let listener = TlsListener::new(listener, config, |s| {
                let _ = s.set_nodelay(true);
            })?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        }
    }
}

async fn metrics(axum::extract::State(app): axum::extract::State<App>) -> Response {
    // Rendering walks every key: off the runtime's reactor threads.
    let text = tokio::task::spawn_blocking(move || app.exporter.render(&app.server)).await;
    match text {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The pattern of a query that names none.
fn everything() -> String {
    "*".into()
}

/// A JSON error body: `{"error": "..."}`.
fn error(status: StatusCode, text: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": text.into() })),
    )
        .into_response()
}
