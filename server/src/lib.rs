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

// In layers, each using only those below it (`tests/layers.rs` fails on a circle):
// the store at the bottom; alerts above it; the faces that speak to clients; `start`, which
// puts them together. `access` (tokens, TLS) and `client` (how other programs reach a
// server) need no store; `control` and `toml_error` are plain interfaces.
pub mod access;
pub mod alerts;
pub mod archiver;
pub mod client;
pub mod control;
pub mod faces;
pub mod past;
pub mod start;
pub mod store;
pub mod toml_error;

pub use start::{start, Running, Settings, StartError};
pub use store::counters::Stat;
pub use store::pattern::{Pattern, PatternError};
pub use store::server::{
    unix_now, ChangeCursor, Checked, Config, Server, SetError, Stamp, Subscription,
};
pub use store::subscriptions::Update;
pub use store::value::{Sample, Value};

/// Logs to stderr through `tracing`, at `RUST_LOG`'s levels (default `info`), in colour only
/// on a terminal. For the project's binaries.
pub fn init_logs() {
    init_logs_at("info");
}

/// `init_logs`, with `default` as the level when `RUST_LOG` says nothing (a one-shot command
/// such as `check-config` is quiet unless asked).
pub fn init_logs_at(default: &str) {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| default.into());
    // The NATS client logs every attempt to reconnect; the NATS output says an outage once
    // itself. Named in RUST_LOG, its lines are shown.
    let spec = if spec.contains("async_nats") {
        spec
    } else {
        format!("{spec},async_nats=off")
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(spec).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
