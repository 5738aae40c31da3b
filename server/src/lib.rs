//! The SPUD stat server.
//!
//! It keeps the newest samples of every key, answers `get`, and pushes updates to
//! subscribers by pattern, over the original SPUD line protocol (`PROTOCOL.md`).
//!
//! [`Server`] is the whole server in-process, with no socket: `spud-host` embeds it and
//! its plugins' samples go straight into the store. [`net::serve`] puts it on TCP.
//!
//! ```
//! use spud_server::{Config, Pattern, Server};
//!
//! let server = Server::new(Config::default());
//! server.set("memcached.local.curr_items", "42", None).unwrap();
//! let history = server.get("memcached.local.curr_items").unwrap();
//! assert_eq!(history[0].value.number(), Some(42.0));
//! let newest = server.get_matching(&Pattern::new("memcached.*").unwrap());
//! assert_eq!(newest.len(), 1);
//! ```

pub mod alerts;
pub mod auth;
mod blocks;
mod cmd;
pub mod control;
mod counters;
pub mod endpoint;
mod history;
pub mod http;
pub mod journal;
mod keyspace;
pub mod metrics;
pub mod munin;
pub mod net;
mod outbox;
mod pattern;
mod protocol;
pub mod pusher;
mod server;
pub mod snapshot;
pub mod start;
mod subscriptions;
pub mod tls;
pub mod toml_error;
mod value;

pub use counters::Stat;
pub use pattern::{Pattern, PatternError};
pub use server::{unix_now, ChangeCursor, Config, Server, SetError, Subscription, Update};
pub use start::{start, Running, Settings, StartError};
pub use value::Value;

/// Logs to stderr through `tracing`, at `RUST_LOG`'s levels (default `info`), in colour only
/// on a terminal. For the project's binaries.
pub fn init_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// One stored sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Unix seconds: given by the setter, or the time it arrived.
    pub time: u64,
    /// The value, exactly as set.
    pub value: Value,
}

impl Sample {
    pub(crate) fn new(time: u64, text: impl Into<Vec<u8>>) -> Sample {
        Sample {
            time,
            value: Value::new(text),
        }
    }
}
