//! How other programs reach a stat server: an endpoint (address, token, TLS) and a pusher
//! that keeps a buffered, reconnecting stream of sets to it. Needs no store.

pub mod endpoint;
pub mod pusher;
