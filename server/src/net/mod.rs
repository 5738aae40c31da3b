//! The stat server over TCP: a listener, and one reader and one writer task per connection.

mod connection;
mod listener;

pub use listener::{serve, ServeOptions};
