//! Where samples go: straight into the embedded server's store, or to a remote server; and
//! to every `[[output]]` besides.

pub mod backlog;
pub mod outputs;

use std::sync::Arc;

use arc_swap::ArcSwap;

use spud_server::client::pusher::Pusher;
use spud_server::{Checked, Stamp};

use crate::sinks::outputs::Output;

/// The store a sample goes to.
#[derive(Clone)]
pub enum Target {
    /// The stat server in this process: no socket in between.
    Embedded(spud_server::Server),
    /// A `spud-server` elsewhere, over TCP, buffered while it is away.
    Remote(Arc<Pusher>),
}

/// The running outputs, replaced whole when the config's `[[output]]`s change.
pub type Outputs = Arc<ArcSwap<Vec<Arc<dyn Output>>>>;

/// A sample's destinations. Cheap to clone; clones share the outputs.
#[derive(Clone)]
pub struct Sink {
    pub target: Target,
    pub outputs: Outputs,
}

impl Sink {
    /// A sink with these outputs.
    pub fn new(target: Target, outputs: Vec<Arc<dyn Output>>) -> Sink {
        Sink {
            target,
            outputs: Arc::new(ArcSwap::from_pointee(outputs)),
        }
    }

    /// The outputs running now.
    pub fn outputs(&self) -> Arc<Vec<Arc<dyn Output>>> {
        self.outputs.load_full()
    }

    /// Stores one of the host's own figures now (its line breaks made blanks).
    pub fn report(&self, key: &str, value: impl std::fmt::Display) {
        let value = value.to_string().replace(['\r', '\n'], " ");
        match Checked::new(key, &value) {
            Ok(sample) => self.set(sample, Stamp::Taken(spud_server::unix_now())),
            // Keys made from names the config accepted are valid; said should one not be.
            Err(e) => tracing::warn!("figure dropped: {e}"),
        }
    }

    /// Stores one sample, checked where it entered the host, at its time: taken now by a
    /// collector, or given with it (a repeat of a given sample is stored once).
    pub fn set(&self, sample: Checked<'_>, stamp: Stamp) {
        let (key, value) = (sample.key(), sample.value());
        let (Stamp::Taken(time) | Stamp::Given(time)) = stamp;
        match &self.target {
            Target::Embedded(server) => {
                // Only a log that cannot be written refuses a checked sample.
                if let Err(e) = server.set_checked(sample, stamp) {
                    tracing::warn!("sample refused: {e}");
                }
            }
            Target::Remote(remote) => remote.push(key, value, time),
        }
        for output in self.outputs.load().iter() {
            output.offer(key, value, time);
        }
    }
}
