//! What a receiving collector counts about its input, and how it tells of bad input without
//! flooding the log.
//!
//! Figures land under `host.job.<job>.`: `received` (items taken: metrics, lines, values),
//! `bad` (items refused as malformed), `dropped` (well-formed items let go to keep memory
//! bounded) and `refused` (datagrams, connections or requests from a source or with
//! credentials the job's lock turns away). Each kind of bad input is logged at most once a second, with a sample and how
//! many more of its kind came since the last line. The figures run on across a reload: the
//! job's next generation, made while the old one still runs, shares its counts.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::Host;

/// At most one log line per kind of bad input per this.
pub const LOG_EVERY: Duration = Duration::from_secs(1);

/// Unchanged figures are stored again after this (for a server that lost them), as the
/// host's own are: an idle receiver writes nothing in between.
pub const REPUBLISH_EVERY: Duration = Duration::from_secs(300);

/// (received, bad, dropped, refused).
type Figures = (u64, u64, u64, u64);

/// A receiver's running figures. Shared by its threads (`&self` everywhere).
pub struct Intake {
    job: String,
    host: Host,
    counts: Arc<Counts>,
    said: Mutex<HashMap<&'static str, Said>>,
    /// What `publish` stored last, and when.
    published: Mutex<Option<(Instant, Figures)>>,
}

#[derive(Default)]
struct Counts {
    received: AtomicU64,
    bad: AtomicU64,
    dropped: AtomicU64,
    refused: AtomicU64,
}

/// Each job's counts, while a generation of it holds them.
static COUNTS: Mutex<Vec<(String, Weak<Counts>)>> = Mutex::new(Vec::new());

fn counts_of(job: &str) -> Arc<Counts> {
    let mut all = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|(_, c)| c.strong_count() > 0);
    if let Some(counts) = all
        .iter()
        .find(|(j, _)| j == job)
        .and_then(|(_, c)| c.upgrade())
    {
        return counts;
    }
    let counts = Arc::new(Counts::default());
    all.push((job.to_string(), Arc::downgrade(&counts)));
    counts
}

struct Said {
    at: Instant,
    unsaid: u64,
}

impl Intake {
    /// Figures for `job`, logged through `host`.
    pub fn new(job: &str, host: Host) -> Intake {
        Intake {
            job: job.to_string(),
            host,
            counts: counts_of(job),
            said: Mutex::new(HashMap::new()),
            published: Mutex::new(None),
        }
    }

    /// `n` items taken.
    pub fn received(&self, n: u64) {
        self.counts.received.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` well-formed items let go (a bound was reached); `why` is logged like bad input.
    pub fn dropped(&self, n: u64, kind: &'static str, why: impl Display) {
        self.counts.dropped.fetch_add(n, Ordering::Relaxed);
        self.tell(kind, why);
    }

    /// One malformed item: counted, and logged as `kind: detail` unless a line of this kind
    /// went out less than [`LOG_EVERY`] ago.
    pub fn bad(&self, kind: &'static str, detail: impl Display) {
        self.counts.bad.fetch_add(1, Ordering::Relaxed);
        self.tell(kind, detail);
    }

    /// A datagram, connection or request from `from` turned away by the job's lock:
    /// counted, and logged like bad input.
    pub fn refused(&self, from: impl Display) {
        self.counts.refused.fetch_add(1, Ordering::Relaxed);
        self.tell("refused", format_args!("{from} is not allowed to send"));
    }

    /// A request whose credentials the job's lock turns away (`why`: missing, unknown).
    pub fn unauthorized(&self, from: impl Display, why: impl Display) {
        self.counts.refused.fetch_add(1, Ordering::Relaxed);
        self.tell("refused", format_args!("{from}: {why}"));
    }

    fn tell(&self, kind: &'static str, detail: impl Display) {
        let now = Instant::now();
        let mut said = self.said.lock().unwrap_or_else(|e| e.into_inner());
        match said.get_mut(kind) {
            Some(s) if now.duration_since(s.at) < LOG_EVERY => s.unsaid += 1,
            Some(s) => {
                let more = std::mem::take(&mut s.unsaid);
                s.at = now;
                drop(said);
                self.host.warn(format_args!(
                    "{kind}: {detail} ({more} more since the last line like it)"
                ));
            }
            None => {
                said.insert(kind, Said { at: now, unsaid: 0 });
                drop(said);
                self.host.warn(format_args!("{kind}: {detail}"));
            }
        }
    }

    /// The figures as they stand: (received, bad, dropped, refused).
    pub fn figures(&self) -> Figures {
        (
            self.counts.received.load(Ordering::Relaxed),
            self.counts.bad.load(Ordering::Relaxed),
            self.counts.dropped.load(Ordering::Relaxed),
            self.counts.refused.load(Ordering::Relaxed),
        )
    }

    /// Stores the figures under `host.job.<job>.` when they changed (or every
    /// [`REPUBLISH_EVERY`]). Call once per interval, not per item.
    pub fn publish(&self) {
        let figures = self.figures();
        {
            let mut last = self.published.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, was)) = *last {
                if was == figures && at.elapsed() < REPUBLISH_EVERY {
                    return;
                }
            }
            *last = Some((Instant::now(), figures));
        }
        let (received, bad, dropped, refused) = figures;
        let job = &self.job;
        self.host
            .set_absolute(&format!("host.job.{job}.received"), received);
        self.host.set_absolute(&format!("host.job.{job}.bad"), bad);
        self.host
            .set_absolute(&format!("host.job.{job}.dropped"), dropped);
        self.host
            .set_absolute(&format!("host.job.{job}.refused"), refused);
    }
}

/// The key for a metric that carries tags (DogStatsD, Influx, Prometheus labels), one rule
/// for every collector: the name, then each tag as `.<tag>:<value>` in the order of the tag
/// names, every character a key cannot hold made `_`. `cpu{host=web1,cpu=0}` is
/// `cpu.cpu:0.host:web1`; a tag without a value (DogStatsD's `#canary`) is `.canary`.
pub fn tagged_key<'a>(name: &str, tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut key = String::new();
    push_tagged_key(&mut key, name, tags);
    key
}

/// [`tagged_key`] appended to `key`: a receiver that builds one key per metric reuses one
/// buffer, and a metric with up to 16 tags sorts them on the stack.
pub fn push_tagged_key<'a>(
    key: &mut String,
    name: &str,
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    const FEW: usize = 16;
    let mut few = [("", ""); FEW];
    let (mut n, mut more) = (0, Vec::new());
    for tag in tags {
        if n < FEW {
            few[n] = tag;
            n += 1;
        } else {
            more.push(tag);
        }
    }
    let tags = if more.is_empty() {
        &mut few[..n]
    } else {
        more.extend_from_slice(&few);
        &mut more[..]
    };
    tags.sort_unstable();
    crate::push_key_safe(key, name);
    for (tag, value) in tags.iter() {
        key.push('.');
        crate::push_key_safe(key, tag);
        if !value.is_empty() {
            key.push(':');
            crate::push_key_safe(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_sorted_by_name_and_made_safe() {
        assert_eq!(
            tagged_key("cpu", [("host", "web1"), ("cpu", "0")]),
            "cpu.cpu:0.host:web1"
        );
        assert_eq!(
            tagged_key("req time", [("path", "/a b"), ("canary", "")]),
            "req_time.canary.path:_a_b"
        );
        assert!(crate::is_valid_key(&tagged_key("é", [("ü", "ß")])));
        let many: Vec<String> = (0..20).rev().map(|i| format!("t{i:02}")).collect();
        let key = tagged_key("m", many.iter().map(|t| (t.as_str(), "")));
        assert!(
            key.starts_with("m.t00.t01.") && key.ends_with(".t18.t19"),
            "{key}"
        );
    }
}
