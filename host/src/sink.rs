//! Where samples go: straight into the embedded server's store, or to a remote server; and
//! to every `[[output]]` besides.

use std::sync::Arc;

use spud_server::client::pusher::Pusher;

use crate::outputs::Output;

/// The store a sample goes to.
#[derive(Clone)]
pub enum Target {
    /// The stat server in this process: no socket in between.
    Embedded(spud_server::Server),
    /// A `spud-server` elsewhere, over TCP, buffered while it is away.
    Remote(Arc<Pusher>),
}

/// A sample's destinations. Cheap to clone.
#[derive(Clone)]
pub struct Sink {
    pub target: Target,
    pub outputs: Arc<[Arc<dyn Output>]>,
}

impl Sink {
    /// A sink with no outputs.
    pub fn new(target: Target) -> Sink {
        Sink {
            target,
            outputs: Arc::new([]),
        }
    }

    /// Stores one sample. The key and value were checked by the caller.
    pub fn set(&self, key: &str, value: &str, time: u64) {
        match &self.target {
            Target::Embedded(server) => {
                if let Err(e) = server.set(key, value, Some(time)) {
                    tracing::warn!("sample refused: {e}");
                }
            }
            Target::Remote(remote) => remote.push(key, value, time),
        }
        for output in self.outputs.iter() {
            output.offer(key, value, time);
        }
    }
}
