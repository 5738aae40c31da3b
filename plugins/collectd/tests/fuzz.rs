//! collectd's binary network protocol, fuzzed (see `spud-fuzzing`) at every security
//! level: any packet, never a panic, and value lists in proportion to it.

use proptest::prelude::*;
use spud_plugin_collectd::packet::{self, Security, Users};

const WORDS: &[&str] = &[
    "\0\0",
    "\0\x01",
    "\0\x02",
    "\0\x03",
    "\0\x04",
    "\0\x05",
    "\0\x06",
    "\0\x07",
    "\0\x08",
    "\0\x09",
    "\x02\0",
    "\x02\x10",
    "\0\x04",
    "\0\0\0\0\0\0\0\0",
    "user",
    "\0",
];

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let users: Users = [("user".to_string(), "secret".to_string())].into();
    for level in [Security::None, Security::Sign, Security::Encrypt] {
        let mut lists = Vec::new();
        let _ = packet::parse(bytes, level, &users, &mut lists);
        // The smallest values part is 4 + 2 + 9 bytes.
        prop_assert!(
            lists.len() <= bytes.len() / 15 + 1,
            "{} lists from {} bytes",
            lists.len(),
            bytes.len()
        );
        for list in &lists {
            prop_assert!(list.values.len() <= bytes.len() / 9 + 1);
        }
    }
    Ok(())
}

spud_fuzzing::fuzz_target!(any_packet, WORDS, check, 3000);
