//! The stat server over TCP: a listener, and one reader and one writer task per connection.

mod connection;
mod listener;
mod options;

pub use listener::serve;
pub use options::ServeOptions;
