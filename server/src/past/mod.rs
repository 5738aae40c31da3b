//! A key over any range of time: the steps the history in memory holds come from it, those
//! before from a `Past` — the server's RRD archive (`[archive]`), or a Prometheus-compatible
//! query API the fleet's samples reach (`[history] promql`, VictoriaMetrics or Prometheus).
//! The HTTP API's `/api/range` and the protocol's `range` both answer from `range`.

pub mod archive;
pub mod promql;

pub use crate::store::range::Past;
use crate::store::range::{consolidate, consolidate_rows, step_of, Point, Span};
use crate::Server;

/// `key` over `span`, consolidated per step, oldest first; None for a key neither memory
/// nor the past knows.
pub fn range(server: &Server, key: &str, span: Span) -> Option<Vec<Point>> {
    let samples = server.get(key);
    // Newest first: the last is the oldest in memory.
    let oldest = samples.as_ref().and_then(|s| s.last()).map(|s| s.time);
    let memory_from = oldest.map_or(span.to, |t| step_of(span, t));
    let mut points = Vec::new();
    if let Some(past) = &server.config().past {
        if span.from < memory_from {
            match past.rows(key, span.from, memory_from.min(span.to), span.step) {
                Ok(rows) => points = consolidate_rows(&rows, span, memory_from),
                Err(e) => tracing::warn!("range of {key}: {e}"),
            }
        }
    }
    if let Some(samples) = &samples {
        let mut recent = consolidate(samples, span);
        recent.retain(|p| p.time >= memory_from);
        points.extend(recent);
    }
    (samples.is_some() || !points.is_empty()).then_some(points)
}
