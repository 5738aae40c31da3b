//! One job's outlet in this process: where the samples its plugin sets go (checked once,
//! here, against the store's rules), its log lines, `[vars]`, its stop flag and its count of
//! samples. An isolated job's samples arrive here too, from its worker.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use spud_plugin_api::kit::listen::Sockets;
use spud_server::Checked;

use crate::loading::plugin_host::{Outlet, StopFlag};
use crate::model::Limits;
use crate::sinks::Sink;

/// What every job shares: where samples go and the config's `[vars]` (replaced in place
/// when the config changes: a new value needs no restart).
#[derive(Clone)]
pub struct Context {
    pub sink: Sink,
    pub vars: Arc<RwLock<HashMap<String, String>>>,
    /// What an isolated job's worker may use.
    pub limits: Limits,
    /// Listening sockets, by protocol, address and job: a receiving job's generations (a
    /// replaced `.so`'s too) share one, so nothing sent to it falls in a gap.
    pub sockets: Arc<Sockets>,
}

/// One job's side of the host.
pub struct JobHost {
    job: String,
    plugin: String,
    pub ctx: Context,
    pub samples: AtomicU64,
    stop: StopFlag,
    /// The sockets this generation was given: open while it lives.
    held: Mutex<Vec<Arc<socket2::Socket>>>,
}

impl JobHost {
    pub fn new(job: &str, plugin: &str, ctx: Context) -> JobHost {
        JobHost {
            job: job.to_string(),
            plugin: plugin.to_string(),
            ctx,
            samples: AtomicU64::new(0),
            stop: StopFlag::default(),
            held: Mutex::default(),
        }
    }

    /// Tells a service to stop.
    pub fn request_stop(&self) {
        self.stop.request();
    }
}

impl Outlet for JobHost {
    fn set(&self, key: &str, value: &str, time: Option<u64>) {
        match Checked::new(key, value) {
            Ok(sample) => {
                self.samples.fetch_add(1, Ordering::Relaxed);
                // A time the plugin gave (a receiver's own, a stream's) is the sample's;
                // without one it was taken now.
                let stamp = match time {
                    Some(time) => spud_server::Stamp::Given(time),
                    None => spud_server::Stamp::Taken(spud_server::unix_now()),
                };
                self.ctx.sink.set(sample, stamp);
            }
            Err(e) => {
                tracing::warn!(job = %self.job, plugin = %self.plugin, "sample dropped: {e}")
            }
        }
    }

    fn log(&self, level: u8, message: &str) {
        let (job, plugin) = (&self.job, &self.plugin);
        match level {
            0 | 1 => tracing::error!(job = %job, plugin = %plugin, "{message}"),
            2 => tracing::warn!(job = %job, plugin = %plugin, "{message}"),
            3 => tracing::info!(job = %job, plugin = %plugin, "{message}"),
            4 => tracing::debug!(job = %job, plugin = %plugin, "{message}"),
            _ => tracing::trace!(job = %job, plugin = %plugin, "{message}"),
        }
    }

    fn vars(&self) -> &RwLock<HashMap<String, String>> {
        &self.ctx.vars
    }

    fn stop(&self) -> &StopFlag {
        &self.stop
    }
}

impl JobHost {
    /// The sockets this generation holds.
    pub fn held_sockets(&self) -> Vec<Arc<socket2::Socket>> {
        self.held.lock().clone()
    }

    /// A descriptor of the listening socket kept for this job on `address` (see
    /// `jobs::sockets`), which this generation keeps open while it lives.
    pub fn held_socket(
        &self,
        tcp: bool,
        address: &str,
        recv_buffer: Option<usize>,
    ) -> Result<OwnedFd, String> {
        let sockets = &self.ctx.sockets;
        let shared = match tcp {
            true => sockets.tcp(address, &self.job),
            false => sockets.udp(address, &self.job, recv_buffer),
        };
        shared.and_then(|socket| {
            let fd = socket
                .try_clone()
                .map(OwnedFd::from)
                .map_err(|e| format!("listen = {address:?}: {e}"))?;
            self.held.lock().push(socket);
            Ok(fd)
        })
    }
}
