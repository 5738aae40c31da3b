//! Alertmanager's v2 API: `POST /api/v2/alerts` with every waiting alert. A firing alert
//! carries `endsAt` four repeats ahead, as Prometheus does, so Alertmanager resolves it
//! by itself if SPUD goes away; re-sending while it fires moves that on. A resolved one
//! carries the time it resolved; so does the old severity of an alert that changed
//! severity (Alertmanager tells alerts apart by their labels, severity among them).
//! Silences, grouping and routing are Alertmanager's.

use serde_json::{json, Value};

use super::{agent, post_json, rfc3339, unix_now, Deliver, Notice};

pub(super) struct Alertmanager {
    url: String,
    agent: ureq::Agent,
    repeat: u64,
}

impl Alertmanager {
    pub(super) fn new(base: &str, timeout: u64, repeat: u64) -> Alertmanager {
        Alertmanager {
            url: format!("{base}/api/v2/alerts"),
            agent: agent(timeout),
            repeat,
        }
    }
}

pub(super) fn alert_json(n: &Notice, valid_for: u64) -> Value {
    let ends_at = n.ends_at.unwrap_or_else(|| unix_now() + valid_for);
    json!({
        "labels": n.labels,
        "annotations": n.annotations,
        "startsAt": rfc3339(n.starts_at),
        "endsAt": rfc3339(ends_at),
    })
}

impl Deliver for Alertmanager {
    fn deliver(&mut self, batch: &[Notice]) -> Result<(), String> {
        // A severity change: the new severity firing, the old one resolved at that moment.
        let alerts: Vec<Value> = batch
            .iter()
            .flat_map(|n| [Some(n.clone()), n.replaced()])
            .flatten()
            .map(|n| alert_json(&n, 4 * self.repeat))
            .collect();
        post_json(&self.agent, &self.url, &Value::Array(alerts))
    }

    fn batches(&self) -> bool {
        true
    }
}
