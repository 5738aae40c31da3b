//! Debian's `minisign`, as a plugin's author uses it: a key pair made by the test, and
//! detached signatures (`x.so.minisig`) beside the files it signs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A minisign key pair, without a password, in a directory of its own.
pub struct SigningKey {
    dir: tempfile::TempDir,
}

impl SigningKey {
    pub fn new() -> SigningKey {
        let dir = tempfile::tempdir().unwrap();
        run(Command::new("minisign")
            .args(["-G", "-W", "-p"])
            .arg(dir.path().join("minisign.pub"))
            .arg("-s")
            .arg(dir.path().join("minisign.key")));
        SigningKey { dir }
    }

    /// The `minisign.pub` file.
    pub fn public_file(&self) -> PathBuf {
        self.dir.path().join("minisign.pub")
    }

    /// The public key as `trusted_keys` takes it: the second line of `minisign.pub`.
    pub fn public(&self) -> String {
        let text = std::fs::read_to_string(self.public_file()).unwrap();
        text.lines().nth(1).expect("a key line").trim().to_string()
    }

    /// Signs `file` into `signature` (minisign's default: prehashed).
    pub fn sign_into(&self, file: &Path, signature: &Path) {
        run(Command::new("minisign")
            .arg("-S")
            .arg("-s")
            .arg(self.dir.path().join("minisign.key"))
            .arg("-m")
            .arg(file)
            .arg("-x")
            .arg(signature));
    }

    /// Signs `file` beside it: `file.minisig`.
    pub fn sign(&self, file: &Path) -> PathBuf {
        let mut signature = file.as_os_str().to_owned();
        signature.push(".minisig");
        let signature = PathBuf::from(signature);
        self.sign_into(file, &signature);
        signature
    }
}

impl Default for SigningKey {
    fn default() -> Self {
        SigningKey::new()
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("minisign cannot run ({e}): scripts/setup-test-deps installs it")
    });
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
