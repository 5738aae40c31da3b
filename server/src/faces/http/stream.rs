//! `GET /api/stream?match=P`: every set of a matching key as a server-sent event, the JSON
//! `{"time","key","value"[,"number"]}`. A client that cannot keep up is cut off like any slow
//! subscriber (an `error` event). With `every=500ms`, only the newest value of each key that
//! changed is sent, once per period: what a dashboard needs, whatever the set rate, and at
//! no cost to the sets (the server's own counters are not in it).

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
use crate::{Pattern, Value};

#[derive(Deserialize)]
pub struct StreamQuery {
    #[serde(rename = "match", default = "super::everything")]
    pattern: String,
    /// Coalesce: the newest value per key, once per this period (`250ms`, `1s`).
    every: Option<String>,
}

fn event(key: &str, time: u64, value: &Value) -> Event {
    let mut o = sample_json(time, value);
    o["key"] = key.into();
    Event::default().data(o.to_string())
}

/// Every set, through a subscription.
async fn every_set(app: App, pattern: Pattern, tx: mpsc::Sender<Event>) {
    let mut subscription = app.server.subscribe(pattern, "http");
    loop {
        tokio::select! {
            update = subscription.recv() => {
                let Some(u) = update else {
                    let cut = Event::default()
                        .event("error")
                        .data("cut off: this client fell too far behind");
                    let _ = tx.send(cut).await;
                    return;
                };
                if tx.send(event(&u.key, u.time, &u.value)).await.is_err() {
                    return; // the client went away
                }
            }
            () = tx.closed() => return,
        }
    }
}

/// The newest value of each key that changed, once per period. No subscription: the
/// server is asked what changed since it last looked, so sets pay nothing for it.
async fn coalesced(app: App, pattern: Pattern, every: Duration, tx: mpsc::Sender<Event>) {
    let mut cursor = app.server.change_cursor();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = tx.closed() => return,
        }
        for (key, sample) in app.server.changed_since(&mut cursor, &pattern) {
            if tx
                .send(event(&key, sample.time, &sample.value))
                .await
                .is_err()
            {
                return;
            }
        }
    }
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
    let (tx, rx) = mpsc::channel::<Event>(1024);
    match every {
        Some(every) => tokio::spawn(coalesced(app, pattern, every, tx)),
        None => tokio::spawn(every_set(app, pattern, tx)),
    };
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
