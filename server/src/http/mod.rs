//! The stat server over HTTP: a JSON API, a live dashboard, `/metrics` for Prometheus and
//! a JSON push endpoint. The line protocol stays the fast path; everything here reads the
//! same in-process store, so an open dashboard or a scrape does not stand in its way.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the dashboard (every asset inside the binary) |
//! | `GET /api/keys?match=P` | newest value of every matching key |
//! | `GET /api/history/{key}` | one key's history, newest first |
//! | `GET /api/stream?match=P[&every=500ms]` | server-sent events of every set (or the newest per key per `every`) |
//! | `GET /api/uptime` | uptime, subscriptions, keys |
//! | `GET /api/jobs`, `/api/plugins` | spud-host's jobs and plugins (embedded in the host) |
//! | `POST /api/push` (and `/put`) | samples as JSON, in the sister system's format |
//! | `GET /metrics` | the Prometheus text format |
//! | `GET /openapi.yaml` | the API's description |

mod api;
mod dashboard;
mod push;
mod stream;

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Exporter;
use crate::Server;

/// The default HTTP address, next to the line protocol's 9107.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9108";

#[derive(Clone)]
struct App {
    server: Server,
    exporter: Arc<Exporter>,
}

/// The routes, over `server`, with `/metrics` rendered by `exporter`.
pub fn router(server: Server, exporter: Arc<Exporter>) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/app.js", get(dashboard::script))
        .route("/style.css", get(dashboard::style))
        .route("/openapi.yaml", get(dashboard::openapi))
        .route("/api/keys", get(api::keys))
        .route("/api/history/{key}", get(api::history))
        .route("/api/uptime", get(api::uptime))
        .route("/api/jobs", get(api::jobs))
        .route("/api/plugins", get(api::plugins))
        .route("/api/stream", get(stream::stream))
        .route("/api/push", post(push::push))
        .route("/put", post(push::push))
        .route("/metrics", get(metrics))
        .with_state(App { server, exporter })
}

/// Serves HTTP on `listener` until `shutdown`.
pub async fn serve(
    server: Server,
    exporter: Arc<Exporter>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(server, exporter))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
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
