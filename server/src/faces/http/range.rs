//! `GET /api/range?key=K&from=T&to=T&step=S` (or `pattern=P`): samples over a range of time,
//! consolidated per step (`store::range`): `{"key": K, "step": S, "points": [[time, avg,
//! min, max], …]}`, oldest first, a step without a number left out.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value as JsonValue};

use super::{error, App};
use crate::store::range::{consolidate, Point, Span};
use crate::store::server::unix_now;
use crate::Pattern;

/// Steps one answer may hold: a day at one a second (a day at 5 s is 17,280).
const MAX_POINTS: u64 = 86_400;
/// Without `from`: the last hour.
const DEFAULT_SPAN: u64 = 3_600;
/// Without `step`: about this many steps.
const DEFAULT_POINTS: u64 = 720;

#[derive(Deserialize)]
pub struct RangeQuery {
    key: Option<String>,
    pattern: Option<String>,
    /// Unix seconds; default `to` less an hour.
    from: Option<u64>,
    /// Unix seconds, not included; default now.
    to: Option<u64>,
    /// Seconds; default about 720 steps.
    step: Option<u64>,
}

pub async fn range(State(app): State<App>, Query(q): Query<RangeQuery>) -> Response {
    let to = q.to.unwrap_or_else(|| unix_now() + 1);
    let from = q.from.unwrap_or(to.saturating_sub(DEFAULT_SPAN));
    let step = q
        .step
        .unwrap_or_else(|| Span::step_for(from, to, DEFAULT_POINTS));
    let span = match Span::new(from, to, step, MAX_POINTS) {
        Ok(span) => span,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match (q.key, q.pattern) {
        (Some(key), None) => match app.server.get(&key) {
            Some(samples) => Json(json!({
                "key": key,
                "step": span.step,
                "points": points_json(&consolidate(&samples, span)),
            }))
            .into_response(),
            None => error(StatusCode::NOT_FOUND, format!("no key {key:?}")),
        },
        (None, Some(text)) => {
            let pattern = match Pattern::new(&text) {
                Ok(p) => p,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("pattern={text}: {e}")),
            };
            let series: Vec<JsonValue> = app
                .server
                .get_matching(&pattern)
                .into_iter()
                .filter_map(|(key, _)| {
                    let samples = app.server.get(&key)?;
                    Some(json!({ "key": key, "points": points_json(&consolidate(&samples, span)) }))
                })
                .collect();
            Json(json!({ "pattern": text, "step": span.step, "series": series })).into_response()
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "give one of key= (one key) or pattern= (every key it matches)",
        ),
    }
}

fn points_json(points: &[Point]) -> JsonValue {
    points
        .iter()
        .map(|p| json!([p.time, p.avg, p.min, p.max]))
        .collect()
}
