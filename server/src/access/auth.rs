//! Who may do what: optional tokens with roles. A server without a tokens file behaves as
//! the original (anyone may read and write; `shutdown` and host control only on a
//! loopback-only server). With one, a connection starts with the file's `anonymous` roles
//! and gets a token's roles with `auth TOKEN`.
//!
//! ```toml
//! # Readable by the server's user only: these are passwords.
//! anonymous = []               # roles without `auth` (default: none)
//! [[token]]
//! name = "web-hosts"           # named in logs, never the secret
//! secret = "5f0c9e…"
//! roles = ["write"]            # any of "read", "write", "admin"
//! ```

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

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
    secret: String,
    roles: Vec<Role>,
}

/// The tokens a server accepts.
#[derive(Debug)]
pub struct Tokens {
    anonymous: Roles,
    entries: Vec<(String, Vec<u8>, Roles)>,
}

/// Shortest secret accepted: guessing must not be an option.
const MIN_SECRET: usize = 16;

impl Tokens {
    /// Reads and checks a tokens file: not readable by others, every secret long enough and
    /// different, at least one token.
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text = read_secret_file(path)?;
        Tokens::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Tokens, String> {
        let file: TokensFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
        if file.tokens.is_empty() {
            return Err("no [[token]]: nobody could authenticate".into());
        }
        let mut entries = Vec::new();
        for t in file.tokens {
            if t.secret.len() < MIN_SECRET || t.secret.chars().any(char::is_whitespace) {
                return Err(format!(
                    "token {:?}: the secret must be at least {MIN_SECRET} characters, without blanks",
                    t.name
                ));
            }
            if entries.iter().any(|(_, s, _)| s == t.secret.as_bytes()) {
                return Err(format!(
                    "token {:?}: the same secret as another token",
                    t.name
                ));
            }
            entries.push((t.name, t.secret.into_bytes(), Roles::of(&t.roles)));
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

/// Redis' protected mode: a server reachable beyond loopback must either check tokens or
/// have been told explicitly that anyone may use it. `with_tokens` and `open` name the
/// settings that say so, for the message.
pub fn protected_mode(
    authenticated: bool,
    addrs: impl IntoIterator<Item = SocketAddr>,
    with_tokens: &str,
    open: &str,
) -> Result<(), String> {
    if authenticated {
        return Ok(());
    }
    match addrs.into_iter().find(|a| !a.ip().is_loopback()) {
        None => Ok(()),
        Some(addr) => Err(format!(
            "refusing to listen on {addr} without authentication: anyone reaching it could \
             read and write every key. Give {with_tokens} or a TLS client CA (see \
             docs/security.md), or {open} to allow it knowingly"
        )),
    }
}

/// Reads a file holding secrets (a tokens file, a client's token), refusing one that other
/// users can read or write: like ssh with a private key, better a clear refusal than a leak.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(format!(
            "{} holds secrets but other users may read or write it (mode {mode:04o}); `chmod o-rwx` it",
            path.display()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Reads a client's token file: the secret on its first line.
pub fn read_token_file(path: &Path) -> Result<String, String> {
    let text = read_secret_file(path)?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(format!("{}: no token on its first line", path.display()));
    }
    Ok(token)
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
