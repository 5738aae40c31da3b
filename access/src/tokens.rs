//! Who may do what: optional tokens with roles. A server without a tokens file behaves as
//! the original (anyone may read and write; `shutdown` and host control only on a
//! loopback-only server). With one, a connection starts with the file's `anonymous` roles
//! and gets a token's roles with `auth TOKEN`. Receivers that check tokens (Influx) take a
//! token with the `write` role.
//!
//! ```toml
//! # Readable by the server's user only: these are passwords.
//! anonymous = []               # roles without `auth` (default: none)
//! [[token]]
//! name = "web-hosts"           # named in logs, never the secret
//! secret = "5f0c9e…"           # or "env:NAME", "file:PATH" (see `SecretRef`)
//! roles = ["write"]            # any of "read", "write", "admin"
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::secret::{read_secret_file, SecretRef};

/// A set of roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles(u8);

/// One role: what a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `get`, `sub`, `list`, `uptime`; the HTTP API's reads, `/metrics`.
    Read,
    /// `set`, `qset`, `quickset`; JSON push.
    Write,
    /// `shutdown`, and spud-host's control (`jobs`, `pause`, `reload`, …).
    Admin,
}

impl Role {
    fn bit(self) -> u8 {
        match self {
            Role::Read => 1,
            Role::Write => 2,
            Role::Admin => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

impl Roles {
    pub const NONE: Roles = Roles(0);
    /// What anyone gets on a server without tokens, but admin.
    pub const READ_WRITE: Roles = Roles(1 | 2);
    pub const ALL: Roles = Roles(1 | 2 | 4);

    pub fn of(roles: &[Role]) -> Roles {
        Roles(roles.iter().fold(0, |bits, r| bits | r.bit()))
    }

    pub fn has(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// `read,write`, or `none`.
    pub fn names(self) -> String {
        let names: Vec<&str> = [Role::Read, Role::Write, Role::Admin]
            .into_iter()
            .filter(|r| self.has(*r))
            .map(Role::name)
            .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(",")
        }
    }
}

/// The tokens file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    anonymous: Vec<Role>,
    #[serde(default, rename = "token")]
    tokens: Vec<TokenEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    /// The secret, or `env:NAME` / `file:PATH` (see `SecretRef`).
    secret: SecretRef,
    roles: Vec<Role>,
}

/// The tokens a server accepts.
pub struct Tokens {
    anonymous: Roles,
    entries: Vec<(String, Vec<u8>, Roles)>,
}

/// Names and roles only: a secret never reaches a log through `{:?}`.
impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.entries
                    .iter()
                    .map(|(name, _, roles)| (name, roles.names())),
            )
            .finish()
    }
}

/// Shortest secret accepted: guessing must not be an option.
const MIN_SECRET: usize = 16;

impl Tokens {
    /// Reads and checks a tokens file: not readable by others, every secret long enough and
    /// different, at least one token.
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text = read_secret_file(path)?;
        Tokens::parse_in(&text, path.parent()).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A tokens file's text; `file:` secrets relative to the current folder.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        Tokens::parse_in(text, None)
    }

    /// A tokens file's text, its `file:` secrets relative to `base`.
    pub fn parse_in(text: &str, base: Option<&Path>) -> Result<Tokens, String> {
        let file: TokensFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
        if file.tokens.is_empty() {
            return Err("no [[token]]: nobody could authenticate".into());
        }
        let mut entries = Vec::new();
        for t in file.tokens {
            let secret = t
                .secret
                .resolve(base)
                .map_err(|e| format!("token {:?}: {e}", t.name))?;
            let secret = secret.expose();
            if secret.len() < MIN_SECRET || secret.chars().any(char::is_whitespace) {
                return Err(format!(
                    "token {:?}: the secret must be at least {MIN_SECRET} characters, without blanks",
                    t.name
                ));
            }
            if entries.iter().any(|(_, s, _)| s == secret.as_bytes()) {
                return Err(format!(
                    "token {:?}: the same secret as another token",
                    t.name
                ));
            }
            entries.push((t.name, secret.as_bytes().to_vec(), Roles::of(&t.roles)));
        }
        Ok(Tokens {
            anonymous: Roles::of(&file.anonymous),
            entries,
        })
    }

    /// The roles of a connection that has not authenticated.
    pub fn anonymous(&self) -> Roles {
        self.anonymous
    }

    /// The token's name and roles. Every secret is compared, each in constant time, so the
    /// answer's timing says nothing about which one (or how much of one) matched.
    pub fn check(&self, secret: &[u8]) -> Option<(&str, Roles)> {
        let mut found = None;
        for (name, s, roles) in &self.entries {
            if constant_time_eq::constant_time_eq(s, secret) {
                found = Some((name.as_str(), *roles));
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
anonymous = ["read"]
[[token]]
name = "pusher"
secret = "0123456789abcdef-pusher"
roles = ["write"]
[[token]]
name = "ops"
secret = "0123456789abcdef-ops"
roles = ["read", "write", "admin"]
"#;

    #[test]
    fn a_secret_gives_its_roles() {
        let t = Tokens::parse(FILE).unwrap();
        assert_eq!(t.anonymous(), Roles::of(&[Role::Read]));
        let (name, roles) = t.check(b"0123456789abcdef-pusher").unwrap();
        assert_eq!((name, roles.names().as_str()), ("pusher", "write"));
        assert_eq!(t.check(b"0123456789abcdef-ops").unwrap().1, Roles::ALL);
        assert!(t.check(b"0123456789abcdef-op").is_none());
        assert!(t.check(b"").is_none());
    }

    #[test]
    fn weak_or_repeated_secrets_and_unknown_roles_are_refused() {
        let short = "[[token]]\nname = \"a\"\nsecret = \"short\"\nroles = [\"read\"]\n";
        assert!(Tokens::parse(short).unwrap_err().contains("at least 16"));
        let twice = "[[token]]\nname = \"a\"\nsecret = \"0123456789abcdef\"\nroles = []\n\
                     [[token]]\nname = \"b\"\nsecret = \"0123456789abcdef\"\nroles = []\n";
        assert!(Tokens::parse(twice).unwrap_err().contains("same secret"));
        let role = "[[token]]\nname = \"a\"\nsecret = \"0123456789abcdef\"\nroles = [\"root\"]\n";
        assert!(Tokens::parse(role).unwrap_err().contains("unknown variant"));
        assert!(Tokens::parse("").unwrap_err().contains("no [[token]]"));
    }
}
