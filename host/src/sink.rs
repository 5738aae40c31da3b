//! Where samples go: straight into the embedded server's store, or to a remote server.

use std::sync::Arc;

use spud_server::pusher::Pusher;

/// A sample's destination. Cheap to clone.
#[derive(Clone)]
pub enum Sink {
    /// The stat server in this process: no socket in between.
    Embedded(spud_server::Server),
    /// A `spud-server` elsewhere, over TCP, buffered while it is away.
    Remote(Arc<Pusher>),
}

impl Sink {
    /// Stores one sample. The key and value were checked by the caller.
    pub fn set(&self, key: &str, value: &str, time: u64) {
        match self {
            Sink::Embedded(server) => {
                if let Err(e) = server.set(key, value, Some(time)) {
                    tracing::warn!("sample refused: {e}");
                }
            }
            Sink::Remote(remote) => remote.push(key, value, time),
        }
    }
}
