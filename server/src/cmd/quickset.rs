//! `quickset on|off`: accepted silently, as in the original, where it changed nothing.

use super::Session;
use crate::protocol::reply::Error;

pub(super) fn apply(args: &[u8], s: &mut Session) {
    if args != b"on" && args != b"off" {
        s.reply().err(Error::NotOnOrOff);
    }
}
