//! Who may do what: tokens and their roles, and TLS, for servers and clients alike.

pub mod auth;
pub mod tls;
