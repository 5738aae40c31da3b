//! `GET /api/range?key=K&from=T&to=T&step=S` (or `pattern=P`): samples over a range of time,
//! consolidated per step (`store::range`): `{"key": K, "step": S, "points": [[time, avg,
//! min, max], …]}`, oldest first, a step without a number left out; from memory and, before
//! it, from the past (`past::range`).

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value as JsonValue;

use super::{error, App};
use crate::past;
use crate::store::range::{Point, Span, DEFAULT_POINTS, MAX_POINTS};
use crate::store::server::unix_now;
use crate::Pattern;

/// Without `from`: the last hour.
const DEFAULT_SPAN: u64 = 3_600;

#[derive(Deserialize)]
pub struct RangeQuery {
    key: Option<String>,
    pattern: Option<String>,
    /// Every key whose prefix up to its last dot is this (`box.cpu`: `box.cpu.user`, …; a
    /// key without a dot is its own group): one chart's keys.
    group: Option<String>,
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
    match (q.key, q.pattern, q.group) {
        (Some(key), None, None) => {
            let server = app.server.clone();
            let found = tokio::task::spawn_blocking(move || {
                let points = past::range(&server, &key, span);
                (key, points)
            })
            .await;
            match found {
                Ok((key, Some(points))) => {
                    let mut body = format!(
                        "{{\"key\":{},\"step\":{},\"points\":",
                        JsonValue::from(key),
                        span.step
                    );
                    write_points(&mut body, &points);
                    body.push('}');
                    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
                }
                Ok((key, None)) => error(StatusCode::NOT_FOUND, format!("no key {key:?}")),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        (None, Some(text), None) => {
            let pattern = match Pattern::new(&text) {
                Ok(p) => p,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("pattern={text}: {e}")),
            };
            many(&app, "pattern", text, pattern, |_| true, span).await
        }
        (None, None, Some(group)) => {
            let Ok(pattern) = Pattern::new(&group) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("group={group}: not a key prefix"),
                );
            };
            let wanted = group.clone();
            let of_group = move |key: &str| group_of(key) == wanted;
            many(&app, "group", group, pattern, of_group, span).await
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "give one of key= (one key), pattern= (every key it matches) or group= (every key \
             whose prefix up to its last dot it is)",
        ),
    }
}

/// A key's group: its prefix up to its last dot (a key without a dot is its own).
fn group_of(key: &str) -> &str {
    key.rsplit_once('.').map_or(key, |(group, _)| group)
}

/// The series of every key `pattern` matches and `keep` keeps, under `{"<label>": text}`.
async fn many(
    app: &App,
    label: &'static str,
    text: String,
    pattern: Pattern,
    keep: impl Fn(&str) -> bool + Send + 'static,
    span: Span,
) -> Response {
    let server = app.server.clone();
    let series = tokio::task::spawn_blocking(move || {
        server
            .get_matching(&pattern)
            .into_iter()
            .filter(|(key, _)| keep(key))
            .map(|(key, _)| {
                let points = past::range(&server, &key, span).unwrap_or_default();
                let mut series = format!("{{\"key\":{},\"points\":", JsonValue::from(key));
                write_points(&mut series, &points);
                series.push('}');
                series
            })
            .collect::<Vec<String>>()
    })
    .await;
    match series {
        Ok(series) => {
            let body = format!(
                "{{\"{label}\":{},\"step\":{},\"series\":[{}]}}",
                JsonValue::from(text),
                span.step,
                series.join(",")
            );
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `[[time, avg, min, max], …]`, written straight into `out`: a day at 5 s is 17,280
/// points, which a JSON value tree would allocate one by one. Every number is finite.
fn write_points(out: &mut String, points: &[Point]) {
    use std::fmt::Write;
    out.reserve(points.len() * 40);
    out.push('[');
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // `{:?}` writes 3.0, not 3, as serde_json would (both are JSON numbers).
        let _ = write!(out, "[{},{:?},{:?},{:?}]", p.time, p.avg, p.min, p.max);
    }
    out.push(']');
}
