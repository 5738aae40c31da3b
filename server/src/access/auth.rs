//! Who may do what: tokens with roles, protected mode and secret files, from `spud-access`,
//! the crate every listener of SPUD shares (the stat server, the host's receivers). A
//! server without a tokens file behaves as the original (anyone may read and write;
//! `shutdown` and host control only on a loopback-only server). With one, a connection
//! starts with the file's `anonymous` roles and gets a token's roles with `auth TOKEN`.

pub use spud_access::{protected_mode, read_secret_file, read_token_file, Role, Roles, Tokens};
