//! Secret settings. Wherever a setting holds a secret (a token, a header, a password, a
//! webhook URL, a TLS key) it may say where the secret is instead of holding it:
//!
//! - `env:NAME`: the environment variable `NAME`;
//! - `file:PATH`: the file's content, less one trailing line end. A relative `PATH` is
//!   looked for first in `$CREDENTIALS_DIRECTORY` (systemd's `LoadCredential=`), then
//!   beside the config that names it. A file that other users may read is refused;
//! - anything else: the secret itself, as written.
//!
//! A resolved [`Secret`] prints as `<secret>` in every `{}` and `{:?}`: only
//! [`Secret::expose`] gives its text, at the one place that sends it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A secret setting as written: where the secret is, or the secret itself.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretRef(String);

/// A secret, resolved. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Why a secret setting could not be resolved; names where it was looked for, never it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("env:{0}: the environment variable is not set")]
    NoVariable(String),
    #[error("file:{0}: {1}")]
    File(String, String),
    #[error("{0}: empty")]
    Empty(String),
}

impl SecretRef {
    /// A setting with this text.
    pub fn new(text: impl Into<String>) -> SecretRef {
        SecretRef(text.into())
    }

    /// Where the secret comes from, safe to print: `env:NAME`, `file:PATH`, or `inline`.
    pub fn source(&self) -> &str {
        if self.0.starts_with("env:") || self.0.starts_with("file:") {
            &self.0
        } else {
            "inline"
        }
    }

    /// The secret, read now; `file:` paths relative to `base` (the config's folder) when
    /// `$CREDENTIALS_DIRECTORY` does not hold them.
    pub fn resolve(&self, base: Option<&Path>) -> Result<Secret, SecretError> {
        let text = if let Some(name) = self.0.strip_prefix("env:") {
            std::env::var(name).map_err(|_| SecretError::NoVariable(name.to_string()))?
        } else if let Some(path) = self.0.strip_prefix("file:") {
            let found = credential_path(Path::new(path), base);
            let text =
                read_secret_file(&found).map_err(|e| SecretError::File(path.to_string(), e))?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            text.strip_suffix('\r').unwrap_or(text).to_string()
        } else {
            self.0.clone()
        };
        if text.is_empty() {
            return Err(SecretError::Empty(self.source().to_string()));
        }
        Ok(Secret(text))
    }
}

/// Where `file:PATH` is read: `$CREDENTIALS_DIRECTORY/PATH` if there, else relative to `base`.
fn credential_path(path: &Path, base: Option<&Path>) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let candidate = Path::new(&dir).join(path);
        if candidate.exists() {
            return candidate;
        }
    }
    match base {
        Some(base) => base.join(path),
        None => path.to_path_buf(),
    }
}

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretRef({})", self.source())
    }
}

impl Secret {
    /// A secret made from others (an `Authorization` header from a password).
    pub fn new(text: String) -> Secret {
        Secret(text)
    }

    /// The secret's text, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
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

/// Whether a setting's text says where a secret is (`env:NAME`, `file:PATH`).
pub fn is_reference(text: &str) -> bool {
    text.starts_with("env:") || text.starts_with("file:")
}

/// A path setting that may hold a secret reference, anchored at a config's folder `base`:
/// a plain relative path is joined to it; `file:REL` becomes `file:` its absolute place
/// (`$CREDENTIALS_DIRECTORY` first); `env:NAME` stays.
pub fn anchor_path(base: &Path, path: &Path) -> PathBuf {
    let Some(text) = path.to_str() else {
        return base.join(path);
    };
    match text.strip_prefix("file:") {
        Some(rel) => PathBuf::from(format!(
            "file:{}",
            credential_path(Path::new(rel), Some(base)).display()
        )),
        None if is_reference(text) => path.to_path_buf(),
        None => base.join(path),
    }
}

/// The content of a file setting that holds a secret (a TLS key, NATS credentials, a
/// token file): the file at `path`, refused if others may read it; or, when `path` is
/// `env:NAME` or `file:PATH`, that secret.
pub fn read_secret_setting(path: &Path) -> Result<Secret, String> {
    match path.to_str().filter(|t| is_reference(t)) {
        Some(reference) => SecretRef::new(reference)
            .resolve(None)
            .map_err(|e| e.to_string()),
        None => read_secret_file(path).map(Secret),
    }
}

/// Reads a client's token file: the secret on its first line (or `env:NAME`, `file:PATH`).
pub fn read_token_file(path: &Path) -> Result<String, String> {
    let text = read_secret_setting(path)?.expose().to_string();
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(format!("{}: no token on its first line", path.display()));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn env_file_and_inline_secrets_resolve_and_never_print() {
        std::env::set_var("SPUD_ACCESS_TEST_SECRET", "from-the-environment");
        let env = SecretRef::new("env:SPUD_ACCESS_TEST_SECRET");
        let secret = env.resolve(None).unwrap();
        assert_eq!(secret.expose(), "from-the-environment");
        assert_eq!(
            format!("{secret} {secret:?} {env:?}"),
            "<secret> <secret> SecretRef(env:SPUD_ACCESS_TEST_SECRET)"
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s");
        std::fs::write(&file, "from-a-file\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let by_file = SecretRef::new("file:s").resolve(Some(dir.path())).unwrap();
        assert_eq!(by_file.expose(), "from-a-file");

        let inline = SecretRef::new("just-the-secret");
        assert_eq!(inline.resolve(None).unwrap().expose(), "just-the-secret");
        assert_eq!(format!("{inline:?}"), "SecretRef(inline)");
    }

    #[test]
    fn missing_or_open_secrets_are_refused_by_where_not_what() {
        let e = SecretRef::new("env:SPUD_ACCESS_TEST_UNSET")
            .resolve(None)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "env:SPUD_ACCESS_TEST_UNSET: the environment variable is not set"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("open");
        std::fs::write(&file, "readable-by-all").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = SecretRef::new("file:open")
            .resolve(Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("other users may read"), "{e}");
        assert!(!e.contains("readable-by-all"), "{e}");
    }
}
