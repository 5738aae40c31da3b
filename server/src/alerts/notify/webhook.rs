//! A POST of Alertmanager's webhook JSON (version 4), one group per alert, so receivers
//! written for Alertmanager's webhook work unchanged.

use serde_json::{json, Value};

use super::{agent, post_json, rfc3339, Deliver, Notice};

pub(super) struct Webhook {
    url: String,
    receiver: String,
    agent: ureq::Agent,
}

impl Webhook {
    pub(super) fn new(url: &str, receiver: &str, timeout: u64) -> Webhook {
        Webhook {
            url: url.to_string(),
            receiver: receiver.to_string(),
            agent: agent(timeout),
        }
    }
}

/// The payload for one alert, as Alertmanager would send a group holding only it.
pub(super) fn payload(n: &Notice, receiver: &str) -> Value {
    let status = if n.firing { "firing" } else { "resolved" };
    let alerts: Vec<Value> = [Some(n.clone()), n.replaced()]
        .into_iter()
        .flatten()
        .map(|a| alert_entry(&a))
        .collect();
    let group = json!({ "alertname": n.labels.get("alertname"), "key": n.labels.get("key") });
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{}", n.id),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group,
        "commonLabels": n.labels,
        "commonAnnotations": n.annotations,
        "externalURL": "",
        "alerts": alerts,
    })
}

/// One alert of a payload; a severity change sends the new one firing and the old one
/// resolved, as Alertmanager would in a group holding both.
fn alert_entry(n: &Notice) -> Value {
    json!({
        "status": if n.firing { "firing" } else { "resolved" },
        "labels": n.labels,
        "annotations": n.annotations,
        "startsAt": rfc3339(n.starts_at),
        // Alertmanager's zero time for "not ended".
        "endsAt": n.ends_at.map_or("0001-01-01T00:00:00Z".to_string(), rfc3339),
        "generatorURL": "",
        "fingerprint": fingerprint(&format!("{}/{}", n.id, n.labels.get("severity").map_or("", String::as_str))),
    })
}

/// A stable 16-hex-digit id per alert instance, as Alertmanager's fingerprints look.
fn fingerprint(id: &str) -> String {
    // FNV-1a: stable across runs and versions, unlike the standard library's hasher.
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

impl Deliver for Webhook {
    fn deliver(&mut self, batch: &[Notice]) -> Result<(), String> {
        batch
            .iter()
            .try_for_each(|n| post_json(&self.agent, &self.url, &payload(n, &self.receiver)))
    }
}
