//! `POST /api/push` (also `/put`, where the sister system's scripts already post): samples as
//! JSON in that system's format, one object, an array of them, or one per line:
//!
//! ```json
//! {"grouping": "fifo", "metric": "fifo.vm.creations", "time": 12345, "value": 1,
//!  "tags": {"fifo-host": "fifo01"}}
//! ```
//!
//! The key is the metric, prefixed with `grouping.` unless it already starts with it, then
//! `.name:value` for each tag in name order: `fifo.vm.creations.fifo-host:fifo01`. Characters
//! a key cannot hold become `_`. `time` is Unix seconds (milliseconds above 10^11; default
//! now); `value` a number or a string. A batch is all or nothing: one bad item refuses it,
//! naming the item and what is wrong.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value as JsonValue;

use super::{error, App};
use spud_plugin_api::key_safe;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    grouping: Option<String>,
    metric: String,
    time: Option<f64>,
    value: JsonValue,
    #[serde(default)]
    tags: BTreeMap<String, JsonValue>,
}

/// The key an item is stored under.
pub fn key_for(grouping: Option<&str>, metric: &str, tags: &BTreeMap<String, String>) -> String {
    let clean = key_safe;
    let mut key = String::new();
    if let Some(g) = grouping.filter(|g| !g.is_empty()) {
        if !metric.starts_with(&format!("{g}.")) {
            key.push_str(&clean(g));
            key.push('.');
        }
    }
    key.push_str(&clean(metric));
    for (name, value) in tags {
        key.push('.');
        key.push_str(&clean(name));
        key.push(':');
        key.push_str(&clean(value));
    }
    key
}

fn text(v: &JsonValue) -> Option<String> {
    match v {
        JsonValue::String(s) => Some(s.clone()),
        JsonValue::Number(n) => Some(n.to_string()),
        JsonValue::Bool(b) => Some(u8::from(*b).to_string()),
        _ => None,
    }
}

/// One item's key, value and time, or what is wrong with it.
fn check(item: JsonValue) -> Result<(String, String, Option<u64>), String> {
    let item: Item = serde_json::from_value(item).map_err(|e| e.to_string())?;
    if item.metric.is_empty() {
        return Err("metric is empty".into());
    }
    let value = text(&item.value).ok_or("value must be a number or a string")?;
    if value.contains(['\n', '\r']) {
        return Err("value contains a line break".into());
    }
    let mut tags = BTreeMap::new();
    for (name, v) in &item.tags {
        let v = text(v).ok_or_else(|| format!("tag {name:?} must be a string or a number"))?;
        tags.insert(name.clone(), v);
    }
    let time = match item.time {
        None => None,
        Some(t) if t.is_finite() && t >= 0.0 => Some(if t > 1e11 {
            (t / 1000.0) as u64
        } else {
            t as u64
        }),
        Some(t) => return Err(format!("time {t} is not a Unix time")),
    };
    Ok((
        key_for(item.grouping.as_deref(), &item.metric, &tags),
        value,
        time,
    ))
}

pub async fn push(State(app): State<App>, body: axum::body::Bytes) -> Response {
    let items: Vec<JsonValue> = match serde_json::from_slice::<JsonValue>(&body) {
        Ok(JsonValue::Array(items)) => items,
        Ok(item @ JsonValue::Object(_)) => vec![item],
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "expected an object or an array of objects",
            )
        }
        // Not one JSON document: one per line.
        Err(_) => {
            let mut items = Vec::new();
            for (n, line) in body.split(|&b| b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice(line) {
                    Ok(item) => items.push(item),
                    Err(e) => {
                        return error(StatusCode::BAD_REQUEST, format!("line {}: {e}", n + 1))
                    }
                }
            }
            items
        }
    };
    let mut samples = Vec::with_capacity(items.len());
    for (n, item) in items.into_iter().enumerate() {
        match check(item) {
            Ok(sample) => samples.push(sample),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("item {n}: {e}; nothing was stored"),
                )
            }
        }
    }
    for (key, value, time) in &samples {
        if let Err(e) = app.server.set(key, value, *time) {
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
    }
    Json(serde_json::json!({ "stored": samples.len() })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_the_sister_format() {
        let tags: BTreeMap<String, String> = [
            ("fifo-host".into(), "fifo01".into()),
            ("az".into(), "us east".into()),
        ]
        .into();
        assert_eq!(
            key_for(Some("fifo"), "fifo.vm.creations", &tags),
            "fifo.vm.creations.az:us_east.fifo-host:fifo01"
        );
        assert_eq!(
            key_for(Some("zone"), "cpu.usage", &BTreeMap::new()),
            "zone.cpu.usage"
        );
        assert_eq!(key_for(None, "a b", &BTreeMap::new()), "a_b");
    }
}
