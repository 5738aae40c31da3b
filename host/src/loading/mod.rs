//! Loading a plugin: the file's safety and ELF checks, a private copy, abi_stable's checks and
//! the version policy (`library`), what the host knows of a loaded plugin (`loader`), and a
//! directory of them by declared name (`plugins`); the `Host` a plugin sees (`plugin_host`); and the worker process that reads or runs
//! a plugin outside the host (`worker`: spawning, its messages, its side in `serve`).

pub mod elf;
pub mod library;
pub mod loader;
pub mod plugin_host;
pub mod plugins;
pub mod safety;
pub mod worker;
