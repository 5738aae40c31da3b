//! The store: every key and its history in memory (`keyspace`, `history`, `blocks`,
//! `value`), who is told of each set (`subscriptions`, `outbox`), the server's own counters,
//! and what survives a restart (`journal`, the write-ahead log; `snapshot`; `recovery`, which
//! puts them back together). `server` is the handle everything above uses.

pub(crate) mod blocks;
pub(crate) mod counters;
pub(crate) mod history;
pub mod journal;
pub(crate) mod keyspace;
pub(crate) mod outbox;
pub(crate) mod pattern;
pub mod range;
pub(crate) mod recovery;
pub(crate) mod server;
pub mod snapshot;
pub(crate) mod spill;
pub(crate) mod subscriptions;
pub(crate) mod value;
pub(crate) mod watcher;
