//! The JSON API's reads: keys by pattern, one key's history, uptime, and spud-host's view.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value as JsonValue};

use super::{error, App};
use crate::{Pattern, Sample};

#[derive(Deserialize)]
pub struct KeysQuery {
    #[serde(rename = "match", default = "super::everything")]
    pattern: String,
    /// At most this many keys (default 1,000); `total` says how many matched.
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    1000
}

/// A sample as JSON: its text, and its number when it is one.
pub fn sample_json(time: u64, value: &crate::Value) -> JsonValue {
    let mut o = json!({ "time": time, "value": value.to_string_lossy() });
    if let Some(n) = value.number() {
        o["number"] = json!(n);
    }
    o
}

pub async fn keys(State(app): State<App>, Query(q): Query<KeysQuery>) -> Response {
    let pattern = match Pattern::new(&q.pattern) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("match={}: {e}", q.pattern)),
    };
    let all = app.server.get_matching(&pattern);
    let total = all.len();
    let keys: Vec<JsonValue> = all
        .into_iter()
        .take(q.limit)
        .map(|(key, Sample { time, value })| {
            let mut o = sample_json(time, &value);
            o["key"] = key.into();
            o
        })
        .collect();
    Json(json!({ "keys": keys, "total": total })).into_response()
}

pub async fn history(State(app): State<App>, Path(key): Path<String>) -> Response {
    match app.server.get(&key) {
        Some(samples) => {
            let history: Vec<JsonValue> = samples
                .iter()
                .map(|s| sample_json(s.time, &s.value))
                .collect();
            Json(json!({ "key": key, "history": history })).into_response()
        }
        None => error(StatusCode::NOT_FOUND, format!("no key {key:?}")),
    }
}

pub async fn uptime(State(app): State<App>) -> Json<JsonValue> {
    Json(json!({
        "uptime_seconds": app.server.uptime().as_secs(),
        "subscriptions": app.server.subscription_count(),
        "keys": app.server.key_count(),
    }))
}

pub async fn jobs(State(app): State<App>) -> Response {
    host_view(&app, "jobs")
}

pub async fn plugins(State(app): State<App>) -> Response {
    host_view(&app, "plugins")
}

fn host_view(app: &App, what: &str) -> Response {
    match app.server.control().and_then(|c| c.view(what)) {
        Some(view) => Json(view).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no {what} here: this stat server is not embedded in spud-host"),
        ),
    }
}
