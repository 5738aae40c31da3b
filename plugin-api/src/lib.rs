//! Write a SPUD collector.
//!
//! A plugin is a `cdylib` crate that depends on this crate alone. It implements
//! [`Plugin`] and exports it with [`export_plugin!`]; `spud-host` loads the `.so` through a
//! stable ABI (`abi_stable`), checks that it was built against a compatible version of this
//! crate, and runs its jobs.
//!
//! A job is a [`Pull`] collector (the host calls `collect` once per interval and owns time
//! and deadlines) or a [`Service`] (a loop that runs until the host asks it to stop). Jobs
//! emit samples through their [`Host`]: `set` (relative to the job's name, so `curr_items`
//! lands at `memcached.local.curr_items`), `set_absolute`, `count`, logging, and the
//! config's `[vars]`.
//!
//! Every entry point is wrapped in `catch_unwind` on the plugin's side: a panic in a
//! collector becomes an error the host reports, never a crash of the host.
//!
//! # A complete collector
//!
//! ```
//! use spud_plugin_api::serde::Deserialize;
//! use spud_plugin_api::{export_plugin, Collector, Error, Host, Job, Plugin, Pull};
//!
//! /// Reports how many entries a directory holds.
//! struct DirCount;
//!
//! // Through this crate's `serde`: a plugin depends on `spud-plugin-api` alone.
//! #[derive(Deserialize)]
//! #[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
//! struct Options {
//!     path: String,
//! }
//!
//! struct Counter {
//!     path: String,
//!     host: Host,
//! }
//!
//! impl Plugin for DirCount {
//!     const NAME: &'static str = "dircount";
//!     const DESCRIPTION: &'static str = "Entries in a directory";
//!
//!     fn new_job(job: &Job, host: Host) -> Result<Collector, Error> {
//!         let options: Options = job.options()?;
//!         Ok(Collector::pull(Counter { path: options.path, host }))
//!     }
//! }
//!
//! impl Pull for Counter {
//!     fn collect(&mut self) -> Result<(), Error> {
//!         // An error names what is wrong, not the job: the host adds the job's name.
//!         let entries = std::fs::read_dir(&self.path)
//!             .map_err(|e| format!("cannot read {}: {e}", self.path))?
//!             .count();
//!         self.host.set("entries", entries);
//!         Ok(())
//!     }
//! }
//!
//! export_plugin!(DirCount);
//! ```
//!
//! With `[lib] crate-type = ["cdylib", "rlib"]` in its `Cargo.toml`, `cargo build --release`
//! makes `target/release/libdircount.so`; drop it into the host's plugins directory and add
//! a job to `gatherer.toml`:
//!
//! ```toml
//! [[job]]
//! name = "spool"
//! plugin = "dircount"
//! interval = "10s"
//! options = { path = "/var/spool/mail" }
//! ```
//!
//! # Versions
//!
//! The host accepts a plugin built against a compatible version of this crate:
//! while it is 0.x, the same 0.minor (0.1.0 and 0.1.7 load together; 0.2 does not); from
//! 1.0, the same major. The root module keeps its 0.1.0 layout (abi_stable refuses a library
//! whose root module has fewer fields than the host's); new capabilities come as symbols of
//! their own, such as the typed module of 0.1.2 ([`ffi::TypedMod`]) and the socket hook of
//! 0.1.5 ([`ffi::SocketsHook`]), or data of their own, such as the declared name of 0.1.6
//! ([`ffi::NAME_SECTION`]), so a plugin built against an older compatible version keeps
//! loading. (Nor may a type the host hands a plugin, such as [`ffi::HostApi`], grow: abi_stable
//! checks it the same way.)
#![deny(missing_docs)]

pub mod ffi;
mod host;
mod key;
pub mod kit;
mod plugin;

pub use abi_stable;
pub use ffi::Level;
pub use host::Host;
pub use key::{is_key_byte, is_valid_key, key_safe, push_key_safe};
pub use plugin::{
    guard, job_def_to_ffi, plugin_info, typed_collect, typed_run, untyped, Collector, Error, Job,
    JobDef, Plugin, Pull, Service,
};
pub use serde;
pub use toml;

/// The README's example is compiled and run with the doctests, so it cannot drift.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
