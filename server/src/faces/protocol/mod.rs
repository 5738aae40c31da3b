//! The SPUD line protocol, in three layers: `frame` cuts a byte stream into lines, `parse`
//! splits a line into a command word and its arguments, and `reply` writes answers the
//! way the original did, counting them. What each command means lives in `crate::cmd`.

pub(crate) mod frame;
pub(crate) mod parse;
pub(crate) mod reply;
