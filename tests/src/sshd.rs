//! OpenSSH's `sshd` (Debian's `openssh-server`), started by a test on a loopback port with
//! the project's own `conf/sshd_config` and `conf/authorized_keys`: the account is the
//! test's own user and the forced command the `spud` binary under test, the rest as
//! shipped. A client key made by the test; `ssh` as the replicator runs it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{binary, free_port, workspace_root, Process};

/// A key pair for `ssh`, without a passphrase.
pub struct ClientKey {
    pub private: PathBuf,
    pub public: String,
}

impl ClientKey {
    pub fn new(dir: &Path, name: &str) -> ClientKey {
        let private = dir.join(name);
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&private)
            .output()
            .expect("ssh-keygen runs (scripts/setup-test-deps installs openssh-client)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let public = std::fs::read_to_string(private.with_extension("pub"))
            .unwrap()
            .trim()
            .to_string();
        ClientKey { private, public }
    }
}

pub struct Sshd {
    pub process: Option<Process>,
    pub addr: SocketAddr,
    pub user: String,
    config: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Sshd {
    /// sshd letting `key` in as this user, its forced command `spud cmdshell --conf
    /// cmdshell_conf`; `authorized_keys` lines as `conf/authorized_keys` writes them.
    pub fn start(key: &ClientKey, cmdshell_conf: &Path) -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let host_key = dir.path().join("host_key");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .output()
            .expect("ssh-keygen");
        assert!(out.status.success());
        // conf/authorized_keys, its example key replaced by the test's.
        let shipped =
            std::fs::read_to_string(workspace_root().join("conf/authorized_keys")).unwrap();
        let line = shipped
            .lines()
            .find(|l| !l.starts_with('#') && !l.trim().is_empty())
            .expect("a key line in conf/authorized_keys");
        let options = &line[..line.find(" ssh-").expect("options, then the key")];
        let authorized = dir.path().join("authorized_keys");
        std::fs::write(&authorized, format!("{options} {}\n", key.public)).unwrap();
        // conf/sshd_config for this user and this build of spud.
        let shipped = std::fs::read_to_string(workspace_root().join("conf/sshd_config")).unwrap();
        let spud = binary("spud");
        let ours = shipped
            .replace("Match User spud", &format!("Match User {user}"))
            .replace(
                "/usr/local/bin/spud cmdshell --conf /etc/spud/cmdshell.conf",
                &format!(
                    "{} cmdshell --conf {}",
                    spud.display(),
                    cmdshell_conf.display()
                ),
            );
        assert_ne!(
            ours, shipped,
            "conf/sshd_config changed shape: update the test"
        );
        let addr = free_port();
        // What the machine's own sshd_config would say; StrictModes is off because the
        // test's files live under /tmp, which is writable by all.
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile none\n\
                 AuthorizedKeysFile {}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nStrictModes no\nLogLevel VERBOSE\n\n{ours}",
                addr.port(),
                host_key.display(),
                authorized.display()
            ),
        )
        .unwrap();
        // sshd's privilege separation directory, when it runs as root.
        let _ = std::fs::create_dir_all("/run/sshd");
        let check = Command::new("/usr/sbin/sshd")
            .arg("-t")
            .arg("-f")
            .arg(&config)
            .output()
            .expect("sshd runs (scripts/setup-test-deps installs openssh-server)");
        assert!(
            check.status.success(),
            "sshd refuses the config made from conf/sshd_config: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let mut sshd = Sshd {
            process: None,
            addr,
            user,
            config,
            dir,
        };
        sshd.restart();
        sshd
    }

    /// Starts it (again) on its port.
    pub fn restart(&mut self) {
        let mut cmd = Command::new("/usr/sbin/sshd");
        cmd.args(["-D", "-e", "-f"]).arg(&self.config);
        let process = Process::start_listening(cmd, self.addr, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
        self.process = Some(process);
    }

    /// Kills it and every session it runs, as a crash or `kill -9` of the service would.
    pub fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            kill_tree(process.pid());
            drop(process);
        }
    }

    /// `ssh` to it with `key`, as the replicator's `--from-cmd` runs it.
    pub fn ssh(&self, key: &ClientKey) -> String {
        format!(
            "ssh -i {} -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -o BatchMode=yes -o LogLevel=ERROR -o IdentitiesOnly=yes {}@127.0.0.1",
            key.private.display(),
            self.addr.port(),
            self.user
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGKILLs `pid` and all its descendants, children first found, then the parent.
fn kill_tree(pid: u32) {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        all.extend(children(all[i]));
        i += 1;
    }
    for pid in all {
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}
