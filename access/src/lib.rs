//! Who may reach SPUD, one crate for the stat server, the host and its receivers alike:
//! tokens and their roles (`tokens`), the protected mode every server face follows
//! (`protected`), and secret settings given as `env:NAME` or `file:PATH` instead of in a
//! file beside the config (`secret`). Receivers' source networks are `spud-plugin-api`'s
//! `kit::access`, as third-party collectors use it.

pub mod protected;
pub mod secret;
pub mod tokens;

pub use protected::protected_mode;
pub use secret::{
    anchor_path, read_secret_file, read_secret_setting, read_token_file, Secret, SecretRef,
};
pub use tokens::{Role, Roles, Tokens};
