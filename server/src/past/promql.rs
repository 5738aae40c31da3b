//! The past in a Prometheus-compatible query API (`[history] promql`, `--promql URL`):
//! VictoriaMetrics or Prometheus, which the fleet's hosts feed by remote write. A key is
//! asked for as the series `/metrics` and remote write map it to (the `[metrics]` rules):
//! `avg`, `min` and `max` over each step, one query each, scaled back to the key's unit.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use spud_archive::Row;

use super::Past;

/// A key's series, as `/metrics` and remote write name it: its selector (`name{labels}`)
/// and the factor its values were scaled by; None for a key they leave out.
pub type SeriesOf = Arc<dyn Fn(&str) -> Option<(String, f64)> + Send + Sync>;

/// Longest wait for one answer: a range query is on a reader's path.
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Promql {
    /// The API's base (`http://victoria:8428`, `http://prometheus:9090`).
    base: String,
    series_of: SeriesOf,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Promql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Promql").field("base", &self.base).finish()
    }
}

impl Promql {
    pub fn new(base: &str, series_of: SeriesOf) -> Promql {
        Promql {
            base: base.trim_end_matches('/').to_string(),
            series_of,
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(TIMEOUT))
                .http_status_as_error(false)
                .build()
                .into(),
        }
    }

    /// One `query_range`: its values by evaluation time.
    fn query(&self, query: &str, from: u64, to: u64, step: u64) -> Result<Vec<(u64, f64)>, String> {
        let url = format!("{}/api/v1/query_range", self.base);
        let mut response = self
            .agent
            .get(&url)
            .query("query", query)
            .query("start", from.to_string())
            .query("end", to.to_string())
            .query("step", step.to_string())
            .call()
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{url}: {e}"))?;
        let answer: Answer = serde_json::from_str(&text).map_err(|_| {
            let start: String = text.trim().chars().take(200).collect();
            format!("{url}: HTTP {status}: not a query API's answer: {start}")
        })?;
        if answer.status != "success" {
            return Err(format!(
                "{url}: {query}: {}",
                answer.error.unwrap_or_else(|| format!("HTTP {status}"))
            ));
        }
        let Some(series) = answer.data.and_then(|d| d.result.into_iter().next()) else {
            return Ok(Vec::new());
        };
        Ok(series
            .values
            .into_iter()
            .filter_map(|(t, v)| Some((t as u64, v.parse::<f64>().ok().filter(|v| v.is_finite())?)))
            .collect())
    }
}

impl Past for Promql {
    fn rows(&self, key: &str, from: u64, to: u64, step: u64) -> Result<Vec<Row>, String> {
        let Some((selector, scale)) = (self.series_of)(key) else {
            return Ok(Vec::new());
        };
        // Evaluated at a step's end, `…_over_time(x[step])` covers that step; the
        // aggregation makes one series of several (hosts that differ in other labels).
        let (first, last) = (from + step, to.max(from + step));
        let ask = |outer: &str, inner: &str| {
            self.query(
                &format!("{outer}({inner}_over_time({selector}[{step}s]))"),
                first,
                last,
                step,
            )
        };
        let avg = ask("avg", "avg")?;
        let min: std::collections::HashMap<u64, f64> = ask("min", "min")?.into_iter().collect();
        let max: std::collections::HashMap<u64, f64> = ask("max", "max")?.into_iter().collect();
        let scale = if scale == 0.0 { 1.0 } else { scale };
        Ok(avg
            .into_iter()
            .map(|(end, a)| Row {
                start: end - step,
                step,
                avg: Some(a / scale),
                min: min.get(&end).map(|v| v / scale),
                max: max.get(&end).map(|v| v / scale),
            })
            .collect())
    }
}

/// What `/api/v1/query_range` answers.
#[derive(Deserialize)]
struct Answer {
    status: String,
    error: Option<String>,
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    /// `[unix seconds, "value"]`.
    values: Vec<(f64, String)>,
}
