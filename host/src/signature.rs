//! Signed plugins. With `[host] trusted_keys` set, a plugin loads only with a minisign
//! signature beside it (`name.so.minisig`) made by one of those keys, checked over the
//! private copy: the very bytes that are then mapped, never the watched file again.

use std::io::Read;
use std::path::{Path, PathBuf};

use minisign_verify::{PublicKey, Signature};

/// The keys whose signatures the host trusts; none (the default) trusts every file.
#[derive(Clone, Default)]
pub struct Trust {
    keys: Vec<TrustedKey>,
}

#[derive(Clone)]
struct TrustedKey {
    /// The key as written (base64): how it is named in messages and compared on reload.
    text: String,
    key: PublicKey,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| short(&k.text)))
            .finish()
    }
}

impl PartialEq for Trust {
    fn eq(&self, other: &Trust) -> bool {
        self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .zip(&other.keys)
                .all(|(a, b)| a.text == b.text)
    }
}

/// How a loaded plugin came to be trusted.
#[derive(Debug, Clone, PartialEq)]
pub enum Signed {
    /// No keys are set: every safe file loads.
    NotRequired,
    /// Signed by this key (its first characters), with the signature's trusted comment.
    By { key: String, comment: String },
}

impl std::fmt::Display for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signed::NotRequired => write!(f, "not checked (no trusted_keys)"),
            Signed::By { key, comment } => write!(f, "signed by trusted key {key} ({comment})"),
        }
    }
}

/// Why a plugin's signature does not let it load.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("unsigned: no signature {} beside it (sign it with `minisign -Sm`)", .0.display())]
    Missing(PathBuf),
    #[error("cannot read its signature {}: {}", .0.display(), .1)]
    Unreadable(PathBuf, std::io::Error),
    #[error("its signature {} is not a minisign signature", .0.display())]
    Malformed(PathBuf),
    #[error("signed by a key that is not in trusted_keys")]
    UnknownKey,
    #[error("made with `minisign -l` (legacy, not prehashed): sign it again without -l")]
    Legacy,
    #[error("its signature does not match its content: altered after signing")]
    Altered,
    #[error("cannot read the copy to check its signature: {0}")]
    Copy(std::io::Error),
}

impl Trust {
    /// The keys given inline (base64, as a `minisign.pub` file's second line) and in
    /// `file` (one or more `minisign.pub` files' text: comment lines are skipped).
    pub fn new(inline: &[String], file: Option<&Path>) -> Result<Trust, String> {
        let mut texts: Vec<String> = inline.iter().map(|k| k.trim().to_string()).collect();
        if let Some(file) = file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("trusted_keys_file {}: {e}", file.display()))?;
            texts.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
                    .map(str::to_string),
            );
        }
        let keys = texts
            .into_iter()
            .map(|text| match PublicKey::from_base64(&text) {
                Ok(key) => Ok(TrustedKey { text, key }),
                Err(_) => Err(format!(
                    "trusted key {:?} is not a minisign public key (the second line of a minisign.pub file)",
                    short(&text)
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Trust { keys })
    }

    /// Whether signatures are required.
    pub fn is_required(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Where the signature of the plugin file `so` is looked for.
    pub fn signature_of(so: &Path) -> PathBuf {
        let mut name = so.as_os_str().to_owned();
        name.push(".minisig");
        PathBuf::from(name)
    }

    /// The plugin file a signature belongs to, if `path` names one (`x.so.minisig`).
    pub fn signed_file(path: &Path) -> Option<PathBuf> {
        let name = path.to_str()?.strip_suffix(".minisig")?;
        name.ends_with(".so").then(|| PathBuf::from(name))
    }

    /// Checks the signature of the plugin file `so` over its private copy `copy`.
    pub fn check(&self, so: &Path, copy: &Path) -> Result<Signed, SignatureError> {
        if !self.is_required() {
            return Ok(Signed::NotRequired);
        }
        let sig_path = Trust::signature_of(so);
        let text = match std::fs::read_to_string(&sig_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SignatureError::Missing(sig_path))
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(SignatureError::Malformed(sig_path))
            }
            Err(e) => return Err(SignatureError::Unreadable(sig_path, e)),
        };
        let signature =
            Signature::decode(&text).map_err(|_| SignatureError::Malformed(sig_path.clone()))?;
        let mut copy = std::fs::File::open(copy).map_err(SignatureError::Copy)?;
        let mut block = vec![0u8; 256 * 1024];
        for trusted in &self.keys {
            let mut verifier = match trusted.key.verify_stream(&signature) {
                Ok(v) => v,
                Err(minisign_verify::Error::UnexpectedKeyId) => continue,
                Err(minisign_verify::Error::UnsupportedLegacyMode) => {
                    return Err(SignatureError::Legacy)
                }
                Err(_) => return Err(SignatureError::Malformed(sig_path)),
            };
            // The key matches: this is the one verdict.
            loop {
                let n = copy.read(&mut block).map_err(SignatureError::Copy)?;
                if n == 0 {
                    break;
                }
                verifier.update(&block[..n]);
            }
            return match verifier.finalize() {
                Ok(()) => Ok(Signed::By {
                    key: short(&trusted.text),
                    comment: signature.trusted_comment().replace('\t', " "),
                }),
                Err(_) => Err(SignatureError::Altered),
            };
        }
        Err(SignatureError::UnknownKey)
    }
}

/// A key's first characters: enough to tell keys apart in a message.
fn short(text: &str) -> String {
    match text.get(..12) {
        Some(head) if text.len() > 12 => format!("{head}…"),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_names_its_plugin_file() {
        let so = Path::new("/p/memcached.so");
        assert_eq!(
            Trust::signature_of(so),
            PathBuf::from("/p/memcached.so.minisig")
        );
        assert_eq!(
            Trust::signed_file(Path::new("/p/memcached.so.minisig")),
            Some(so.to_path_buf())
        );
        assert_eq!(Trust::signed_file(Path::new("/p/notes.minisig")), None);
        assert_eq!(Trust::signed_file(so), None);
    }

    #[test]
    fn keys_that_are_not_minisign_keys_are_refused_by_name() {
        let e = Trust::new(&["not a key at all".into()], None).unwrap_err();
        assert!(e.contains("\"not a key at\u{2026}\""), "{e}");
        assert!(!Trust::default().is_required());
    }
}
