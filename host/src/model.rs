//! The host's plain data: what a job is once the config's defaults are filled in, where it
//! runs, what a worker may use, and how a call into a plugin failed. No behaviour here
//! beyond small helpers; every other module builds on these.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A job with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub name: String,
    pub plugin: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub options: toml::Table,
    pub isolation: Isolation,
}

/// Where a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// In the host's own process (the default): fastest, but a crash or hang in the plugin
    /// is the host's.
    #[default]
    None,
    /// In a worker process of its own.
    Process,
}

/// What a worker may use before the kernel stops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Address space, in bytes (RLIMIT_AS): an allocation beyond it fails and the worker
    /// aborts.
    pub memory: u64,
    /// Threads: a worker found with more is killed.
    pub threads: u64,
}

/// How a plugin's declaration (name, version, helper or not) is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Map it into the host (it stays mapped: abi_stable never unloads).
    InProcess,
    /// Ask a short-lived worker process, which maps it and exits: the host maps nothing.
    Worker,
}

/// How a call into a plugin (a collect, a service's run, making a job) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The plugin returned an error: a target that is down, a bad option.
    Error,
    /// The plugin panicked (caught on its side).
    Panic,
    /// It ran past its deadline (a worker killed for it, or the plugin's own timeout).
    Timeout,
    /// Its worker died or outgrew its limits.
    Died,
}

/// A failed call into a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    /// One line for the user, without the job's name.
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }

    pub fn error(message: impl Into<String>) -> Failure {
        Failure::new(FailureKind::Error, message)
    }

    /// Whether it counts as a crash: crashes back off (and, repeated, park the job); a
    /// plain error does not.
    pub fn is_crash(&self) -> bool {
        self.kind != FailureKind::Error
    }

    /// The message with the job's name in front, as logs and `last_error` show it.
    pub fn for_job(&self, job: &str) -> String {
        format!("job {job}: {}", self.message)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
