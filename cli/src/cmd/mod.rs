//! One file per verb.

pub mod archive;
pub mod cmdshell;
pub mod control;
pub mod get;
pub mod replicate;
pub mod set;
pub mod sub;
pub mod wrap;

/// A Unix time as people read it.
pub fn when(time: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(time))
        .to_string()
}
