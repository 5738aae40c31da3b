//! `spud get --since DURATION KEY`: the key over the last DURATION, per step (average,
//! minimum, maximum), from the server's memory and, before it, its archive or its
//! Prometheus-compatible history (the protocol's `range`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::client::{Client, ClientError};
use crate::cmd::when;
use crate::out;
use spud_server::client::endpoint::Endpoint;
use spud_server::store::range::{Span, DEFAULT_POINTS};

pub enum Format {
    Table,
    Csv,
    Json,
}

pub fn run(
    server: &Endpoint,
    key: &str,
    since: Duration,
    step: Option<Duration>,
    format: Format,
) -> Result<i32, ClientError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (from, to) = (now.saturating_sub(since.as_secs()), now + 1);
    // The server's default step, worked out here so that the JSON can say it.
    let step = step.map_or_else(
        || Span::step_for(from, to, DEFAULT_POINTS),
        |s| s.as_secs().max(1),
    );
    let ask = format!("range {key} {from} {to} {step}");
    let mut client = Client::connect(server)?;
    let lines = match client.multi(&ask) {
        Ok(lines) => lines,
        Err(ClientError::Refused(e)) if e.starts_with("not_found") => {
            eprintln!("spud: {key}: no such key");
            return Ok(1);
        }
        Err(ClientError::Refused(e)) if e.starts_with("bad_range") => {
            eprintln!("spud: {}", e.trim_start_matches("bad_range "));
            return Ok(2);
        }
        Err(e) => return Err(e),
    };
    let points: Vec<[f64; 4]> = lines
        .iter()
        .filter_map(|l| {
            let mut n = l.split(' ').map(|w| w.parse::<f64>().ok());
            Some([n.next()??, n.next()??, n.next()??, n.next()??])
        })
        .collect();
    match format {
        Format::Json => {
            let body = serde_json::json!({ "key": key, "step": step, "points": points });
            out::lines([body]);
        }
        Format::Csv => out::lines(
            std::iter::once("time,avg,min,max".to_string()).chain(
                points
                    .iter()
                    .map(|[t, a, lo, hi]| format!("{t},{a},{lo},{hi}")),
            ),
        ),
        Format::Table => out::lines(
            std::iter::once(format!(
                "{:20}  {:>12}  {:>12}  {:>12}",
                "time", "avg", "min", "max"
            ))
            .chain(points.iter().map(|[t, a, lo, hi]| {
                format!("{:20}  {a:>12}  {lo:>12}  {hi:>12}", when(*t as u64))
            })),
        ),
    }
    Ok(0)
}
