//! What sees every set as it is stored, under its key's lock: the alerts. The store knows
//! only this trait, so nothing in the store depends on what watches it.

use std::any::Any;
use std::sync::Arc;

use crate::store::keyspace::EntryMut;

/// Told of every set, under the key's lock, before it is acknowledged.
pub(crate) trait Watcher: Send + Sync + 'static {
    /// `entry` has just taken a sample, whose number (if it is one) is `number`, stamped
    /// `taken` by the server's clock (None: its time came with it).
    fn note_set(&self, entry: &mut EntryMut<'_>, number: Option<f64>, taken: Option<u64>);

    /// The watcher as itself, for the layer that attached it to find it again.
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}
