//! `GET /api/stream?match=P`: every set of a matching key as a server-sent event, the JSON
//! `{"time","key","value"[,"number"]}`. With `every=500ms`, only the newest value of each key
//! that changed is sent, once per period: what a dashboard needs, whatever the set rate.
//! A client that cannot keep up is cut off like any slow subscriber (an `error` event).

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::api::sample_json;
use super::{error, App};
use crate::{Pattern, Update};

#[derive(Deserialize)]
pub struct StreamQuery {
    #[serde(rename = "match", default = "everything")]
    pattern: String,
    /// Coalesce: the newest value per key, once per this period (`250ms`, `1s`).
    every: Option<String>,
}

fn everything() -> String {
    "*".into()
}

fn event(update: &Update) -> Event {
    let mut o = sample_json(update.time, &update.value);
    o["key"] = update.key.clone().into();
    Event::default().data(o.to_string())
}

pub async fn stream(State(app): State<App>, Query(q): Query<StreamQuery>) -> Response {
    let pattern = match Pattern::new(&q.pattern) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("match={}: {e}", q.pattern)),
    };
    let every = match q.every.as_deref().map(humantime::parse_duration) {
        None => None,
        Some(Ok(d)) if d >= Duration::from_millis(10) => Some(d),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "every: a duration of at least 10ms, such as 500ms",
            )
        }
    };
    let mut subscription = app.server.subscribe(pattern, "http");
    let (tx, rx) = mpsc::channel::<Event>(1024);
    tokio::spawn(async move {
        let mut newest: HashMap<String, Update> = HashMap::new();
        let mut tick = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
        loop {
            tokio::select! {
                update = subscription.recv() => {
                    let Some(update) = update else {
                        let cut = Event::default().event("error").data("cut off: this client fell too far behind");
                        let _ = tx.send(cut).await;
                        return;
                    };
                    if every.is_some() {
                        newest.insert(update.key.clone(), update);
                    } else if tx.send(event(&update)).await.is_err() {
                        return; // the client went away
                    }
                }
                _ = tick.tick(), if every.is_some() => {
                    for (_, update) in newest.drain() {
                        if tx.send(event(&update)).await.is_err() {
                            return;
                        }
                    }
                }
                () = tx.closed() => return,
            }
        }
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
