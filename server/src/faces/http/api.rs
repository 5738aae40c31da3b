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

#[derive(Deserialize)]
pub struct AlertsQuery {
    #[serde(rename = "match")]
    pattern: Option<String>,
}

/// Alert instances that are not ok, with their rules' thresholds (for plotting), and the
/// receivers' figures. `enabled` is false on a server without rules.
pub async fn alerts(State(app): State<App>, Query(q): Query<AlertsQuery>) -> Response {
    let Some(alerts) = crate::alerts::Alerts::of(&app.server) else {
        return Json(json!({ "enabled": false, "alerts": [], "receivers": [] })).into_response();
    };
    let pattern = match q.pattern.as_deref().map(Pattern::new).transpose() {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("match: {e}")),
    };
    let rows: Vec<JsonValue> = alerts
        .active(pattern.as_ref())
        .iter()
        .map(|row| {
            let rule = &row.rule;
            let value = crate::alerts::format_value(row.value);
            json!({
                "name": rule.name,
                "key": &*row.key,
                "state": row.state.word(),
                "firing": row.state.is_firing(),
                "since": row.since,
                "active_since": row.active_since,
                "value": row.value,
                "summary": crate::alerts::summary(&rule.summary, &rule.name, &row.key, row.state, &value),
                "labels": rule.labels,
                "warn": rule.warn.as_ref().map(ToString::to_string),
                "crit": rule.crit.as_ref().map(ToString::to_string),
                "warn_threshold": rule.warn.as_ref().and_then(|c| c.threshold()),
                "crit_threshold": rule.crit.as_ref().and_then(|c| c.threshold()),
            })
        })
        .collect();
    // Every rule's thresholds, for charts to draw them whether or not anything alerts.
    let rules = alerts.rules();
    let thresholds: Vec<JsonValue> = rules
        .iter()
        .filter(|r| r.warn.is_some() || r.crit.is_some())
        .map(|rule| {
            json!({
                "name": rule.name,
                "keys": rule.keys_text,
                "regex": rule.keys.source(),
                "warn": rule.warn.as_ref().and_then(|c| c.threshold()),
                "crit": rule.crit.as_ref().and_then(|c| c.threshold()),
            })
        })
        .collect();
    Json(json!({
        "enabled": true,
        "file": alerts.path().map(|p| p.display().to_string()),
        "problems": alerts.problems(),
        "rules": rules.len(),
        "thresholds": thresholds,
        "instances": alerts.instance_count(),
        "alerts": rows,
        "receivers": alerts.receivers(),
    }))
    .into_response()
}
