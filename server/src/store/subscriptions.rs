//! Who wants which keys.
//!
//! The registry keeps every subscription in the order it was made. Each key caches the
//! list of subscribers that match it, tagged with the registry's generation; a set only
//! matches patterns again when subscriptions changed since, so it costs O(subscribers of
//! that key), not O(all patterns).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;

use crate::store::outbox::{Outbox, Pushed};
use crate::{Pattern, Value};

/// The subscribers of one key, each once, as matched at some generation of the registry:
/// a thin pointer, to a list shared by all the keys nobody subscribes to. `Default`: not
/// matched yet.
#[derive(Clone, Default)]
pub(crate) struct SinkList(Option<Arc<Matched>>);

struct Matched {
    generation: u64,
    sinks: Vec<Arc<Sink>>,
}

impl SinkList {
    /// Whether this list was matched at `generation`.
    pub(crate) fn is_current(&self, generation: u64) -> bool {
        self.0.as_ref().is_some_and(|m| m.generation == generation)
    }
}

impl std::ops::Deref for SinkList {
    type Target = [Arc<Sink>];

    fn deref(&self) -> &[Arc<Sink>] {
        self.0.as_deref().map_or(&[], |m| m.sinks.as_slice())
    }
}

/// Where the pushes for one subscriber go.
pub(crate) struct Sink {
    pub(crate) id: u64,
    /// Shown by `list` and `listall`.
    pub(crate) label: String,
    kind: SinkKind,
}

enum SinkKind {
    /// A protocol connection: pushes are `SET <time> <key> <value>` lines.
    Connection(Arc<Outbox>),
    /// An in-process subscriber.
    /// An in-process subscriber; the sender is dropped when it is cut off, which ends
    /// its stream once it has read what was queued.
    Channel(Mutex<Option<mpsc::Sender<Update>>>),
}

/// The push line, built once per set and only if some connection needs it.
pub(crate) struct Push<'a> {
    pub(crate) time: u64,
    pub(crate) key: &'a str,
    pub(crate) value: &'a [u8],
    line: Vec<u8>,
}

impl<'a> Push<'a> {
    pub(crate) fn new(time: u64, key: &'a str, value: &'a [u8]) -> Push<'a> {
        Push {
            time,
            key,
            value,
            line: Vec::new(),
        }
    }

    fn line(&mut self) -> &[u8] {
        if self.line.is_empty() {
            let mut time = itoa::Buffer::new();
            let time = time.format(self.time).as_bytes();
            let parts: [&[u8]; 7] = [
                b"SET ",
                time,
                b" ",
                self.key.as_bytes(),
                b" ",
                self.value,
                b"\r\n",
            ];
            self.line.reserve(parts.iter().map(|p| p.len()).sum());
            parts.iter().for_each(|p| self.line.extend_from_slice(p));
        }
        &self.line
    }
}

/// What a delivery did, for the server's counters.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct Delivered {
    pub(crate) lines: u64,
    pub(crate) cut_off: u64,
    /// What a commit of the write-ahead log must reach for this sample (None: no log).
    pub(crate) ticket: Option<crate::store::journal::Ticket>,
}

impl Sink {
    pub(crate) fn connection(id: u64, label: String, outbox: Arc<Outbox>) -> Sink {
        Sink {
            id,
            label,
            kind: SinkKind::Connection(outbox),
        }
    }

    pub(crate) fn channel(id: u64, label: String, tx: mpsc::Sender<Update>) -> Sink {
        Sink {
            id,
            label,
            kind: SinkKind::Channel(Mutex::new(Some(tx))),
        }
    }

    fn deliver(&self, push: &mut Push<'_>, done: &mut Delivered) {
        match &self.kind {
            SinkKind::Connection(outbox) => match outbox.push(push.line()) {
                Pushed::Queued => done.lines += 1,
                Pushed::CutOff => done.cut_off += 1,
                Pushed::Closed => {}
            },
            SinkKind::Channel(tx) => {
                let mut tx = tx.lock();
                let Some(sender) = tx.as_ref() else { return };
                let update = Update {
                    time: push.time,
                    key: push.key.to_string(),
                    value: Value::new(push.value),
                };
                match sender.try_send(update) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        *tx = None;
                        done.cut_off += 1;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => *tx = None,
                }
            }
        }
    }
}

/// Sends one set to every subscriber in `sinks`.
pub(crate) fn deliver(sinks: &[Arc<Sink>], push: &mut Push<'_>) -> Delivered {
    let mut done = Delivered::default();
    for sink in sinks {
        sink.deliver(push, &mut done);
    }
    done
}

struct Subscription {
    sink: Arc<Sink>,
    pattern: Pattern,
}

pub(crate) struct Subscriptions {
    list: RwLock<Registry>,
    /// Bumped (under the write lock) on every change to `list`.
    generation: AtomicU64,
}

struct Registry {
    subs: Vec<Subscription>,
    /// The empty list of this generation, which most keys share.
    nobody: SinkList,
}

impl Registry {
    fn changed(&mut self, generation: &AtomicU64) {
        let generation = generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.nobody = SinkList(Some(Arc::new(Matched {
            generation,
            sinks: Vec::new(),
        })));
    }
}

impl Default for Subscriptions {
    fn default() -> Subscriptions {
        let generation = AtomicU64::new(0);
        let mut registry = Registry {
            subs: Vec::new(),
            nobody: SinkList::default(),
        };
        registry.changed(&generation);
        Subscriptions {
            list: RwLock::new(registry),
            generation,
        }
    }
}

impl Subscriptions {
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Adds a subscription; false if this sink already has this exact pattern.
    pub(crate) fn add(&self, sink: &Arc<Sink>, pattern: Pattern) -> bool {
        let mut list = self.list.write();
        if list
            .subs
            .iter()
            .any(|s| s.sink.id == sink.id && s.pattern.converted() == pattern.converted())
        {
            return false;
        }
        list.subs.push(Subscription {
            sink: Arc::clone(sink),
            pattern,
        });
        list.changed(&self.generation);
        true
    }

    pub(crate) fn remove_sink(&self, id: u64) {
        let mut list = self.list.write();
        let before = list.subs.len();
        list.subs.retain(|s| s.sink.id != id);
        if list.subs.len() != before {
            list.changed(&self.generation);
        }
    }

    /// The subscribers of `key`, each once however many of its patterns match.
    pub(crate) fn matching(&self, key: &str) -> SinkList {
        let list = self.list.read();
        let mut sinks: Vec<Arc<Sink>> = Vec::new();
        for s in list.subs.iter() {
            if !sinks.iter().any(|k| k.id == s.sink.id) && s.pattern.is_match(key) {
                sinks.push(Arc::clone(&s.sink));
            }
        }
        if sinks.is_empty() {
            return list.nobody.clone();
        }
        SinkList(Some(Arc::new(Matched {
            generation: self.generation.load(Ordering::Acquire),
            sinks,
        })))
    }

    pub(crate) fn len(&self) -> usize {
        self.list.read().subs.len()
    }

    /// `(label, converted pattern)` in the order made; only `sink`'s when given.
    pub(crate) fn describe(&self, sink: Option<u64>) -> Vec<(String, Vec<u8>)> {
        self.list
            .read()
            .subs
            .iter()
            .filter(|s| sink.is_none_or(|id| s.sink.id == id))
            .map(|s| (s.sink.label.clone(), s.pattern.converted().to_vec()))
            .collect()
    }
}

/// One pushed set.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// When the sample was taken (Unix seconds).
    pub time: u64,
    /// Which key was set.
    pub key: String,
    /// What it was set to.
    pub value: Value,
}
