//! Running jobs: one job (`job`), the scheduler that runs them on time, the host a plugin
//! sees through its outlet (`job_host`), the listening sockets kept for receiving jobs
//! (`sockets`), and an isolated job's supervision of its worker.

pub mod isolation;
pub mod job;
pub mod job_host;
pub mod scheduler;
pub mod sockets;
