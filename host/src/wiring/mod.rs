//! The wiring: `daemon::run` is the table of contents; `store` is the embedded stat server
//! or the remote one.

pub mod daemon;
pub mod store;
