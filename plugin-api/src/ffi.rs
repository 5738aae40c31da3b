//! The stable ABI between `spud-host` and a plugin. Plugin authors do not touch this
//! module: [`export_plugin!`](crate::export_plugin) builds it from a [`Plugin`](crate::Plugin).
//!
//! Everything here is `#[repr(C)]` and checked by `abi_stable` when the host loads a plugin:
//! a plugin whose types do not match the host's is refused, never called.

// `#[sabi_trait]` expands to impls inside a const block.
#![allow(non_local_definitions)]

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RBox, ROption, RResult, RStr, RString, RVec};
use abi_stable::{declare_root_module_statics, package_version_strings, sabi_trait, StableAbi};

/// The root module a plugin exports. A prefix type: later API versions append fields
/// after the last one here, and older plugins still load.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// The plugin's declared name, version and description.
    pub info: extern "C" fn() -> PluginInfo,
    /// Creates one job.
    pub new_job: extern "C" fn(spec: JobSpec, host: HostBox) -> RResult<CollectorBox, RString>,
    /// For helper plugins: the jobs the helper wants now.
    #[sabi(last_prefix_field)]
    pub helper_jobs: extern "C" fn(spec: JobSpec, host: HostBox) -> RResult<RVec<JobDef>, RString>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "spud_plugin";
    const NAME: &'static str = "spud_plugin";
    // The version of this crate: the host refuses a plugin built against an incompatible one.
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// What a plugin says about itself.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct PluginInfo {
    /// The name jobs use in `plugin = "..."`.
    pub name: RString,
    /// The plugin's own version.
    pub version: RString,
    /// One line about what it collects.
    pub description: RString,
    /// Whether it can act as a helper.
    pub is_helper: bool,
}

/// One job as the host hands it to the plugin.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct JobSpec {
    /// The job's name; relative keys land under it.
    pub name: RString,
    /// The job's `options` table, as TOML text.
    pub options: RString,
    /// How often the host collects, in milliseconds.
    pub interval_ms: u64,
    /// How long one collect may take, in milliseconds.
    pub timeout_ms: u64,
}

/// A job a helper wants.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct JobDef {
    /// Its name.
    pub name: RString,
    /// The plugin that runs it.
    pub plugin: RString,
    /// Its options, as TOML text.
    pub options: RString,
    /// Its interval in milliseconds; 0 for the host's default.
    pub interval_ms: u64,
}

/// What kind of failure a call into a plugin ended in.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The plugin returned an error (a target that is down, a bad option).
    Error,
    /// The plugin panicked; the panic was caught on its side of the boundary.
    Panic,
    /// The plugin gave up waiting on something within the call.
    Timeout,
}

/// A failed call into a plugin: its kind and one line for the user.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Error, panic or timeout.
    pub kind: FailureKind,
    /// What went wrong, without the job's name (the host adds it).
    pub message: RString,
}

impl Failure {
    /// A plain error.
    pub fn error(message: impl Into<RString>) -> Failure {
        Failure {
            kind: FailureKind::Error,
            message: message.into(),
        }
    }
}

/// How a job runs.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStyle {
    /// `collect` once per interval, on the host's schedule.
    Pull,
    /// `run` until the host says stop.
    Service,
}

/// Log levels, as the host's `tracing` has them.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// The host, as a plugin's job sees it.
#[sabi_trait]
pub trait HostApi: Send + Sync {
    /// Stores a sample; `absolute` keys are not put under the job's name.
    fn set(&self, key: RStr<'_>, value: RStr<'_>, time: ROption<u64>, absolute: bool);
    /// Adds `delta` to a counter kept by the host.
    fn count(&self, key: RStr<'_>, delta: f64, absolute: bool);
    /// Logs under the job's name.
    fn log(&self, level: Level, message: RStr<'_>);
    /// A value from the config's `[vars]`.
    fn var(&self, name: RStr<'_>) -> ROption<RString>;
    /// Waits up to `ms` milliseconds; true once the host asked the job to stop.
    #[sabi(last_prefix_field)]
    fn stop_requested(&self, ms: u64) -> bool;
}

/// The host handle as it crosses the boundary.
pub type HostBox = HostApi_TO<'static, RBox<()>>;

/// A job, as the host drives it.
#[sabi_trait]
pub trait CollectorApi: Send {
    /// Pull or service.
    fn style(&self) -> JobStyle;
    /// Pull jobs: one collection. Errors (panics included) come back as `RErr`.
    fn collect(&mut self) -> RResult<(), RString>;
    /// Service jobs: runs until `HostApi::stop_requested` says so.
    #[sabi(last_prefix_field)]
    fn run(&mut self) -> RResult<(), RString>;
}

/// The collector as it crosses the boundary.
pub type CollectorBox = CollectorApi_TO<'static, RBox<()>>;

/// Since 0.1.2, beside the root module: the calls into a plugin with typed failures. It is
/// a symbol of its own (`TYPED_SYMBOL`), not fields appended to [`PluginMod`], because
/// abi_stable refuses a library whose root module has fewer fields than the host's: this
/// way the root module keeps its 0.1.0 layout and a plugin built against any 0.1 loads. A
/// host checks this module's layout (`TYPED_LAYOUT_SYMBOL`) before using it; a plugin
/// without it answers through the untyped calls, every failure a plain error.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = TypedModRef)))]
#[sabi(missing_field(panic))]
pub struct TypedMod {
    /// `PluginMod::new_job`, typed. The collector it makes can be downcast by `collect`
    /// and `run` below.
    pub new_job: extern "C" fn(spec: JobSpec, host: HostBox) -> RResult<CollectorBox, Failure>,
    /// `PluginMod::helper_jobs`, typed.
    pub helper_jobs: extern "C" fn(spec: JobSpec, host: HostBox) -> RResult<RVec<JobDef>, Failure>,
    /// One collect of a collector this module's `new_job` made.
    pub collect: extern "C" fn(collector: &mut CollectorBox) -> RResult<(), Failure>,
    /// A service's run, of a collector this module's `new_job` made.
    #[sabi(last_prefix_field)]
    pub run: extern "C" fn(collector: &mut CollectorBox) -> RResult<(), Failure>,
}

/// Since 0.1.5: how a plugin asks the host for a listening socket it keeps for a job across
/// the job's generations (those of a replaced `.so` included): `(tcp, address, job,
/// recv_buffer)` (recv_buffer 0: the system's) → a descriptor the plugin owns, an error, or
/// `RNone` where the host keeps none for this call (an isolated job's worker, a call outside
/// `new_job`). The host hands it to the plugin through the symbol `SOCKETS_SYMBOL` (an
/// `extern "C" fn(SocketsHook)`), after checking its layout (`SOCKETS_LAYOUT_SYMBOL`), for
/// the same reason as [`TypedMod`]: nothing of 0.1.0's layout changes.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct SocketsHook {
    /// The call itself.
    pub held_socket: extern "C" fn(
        tcp: bool,
        address: RStr<'_>,
        job: RStr<'_>,
        recv_buffer: u64,
    ) -> ROption<RResult<i32, RString>>,
}

/// The host's hook, once it handed it to this library.
static SOCKETS: std::sync::OnceLock<SocketsHook> = std::sync::OnceLock::new();

/// Keeps the host's hook (what `export_plugin!`'s `spud_plugin_accept_sockets` calls).
#[doc(hidden)]
pub fn accept_sockets(hook: SocketsHook) {
    let _ = SOCKETS.set(hook);
}

/// The host's hook, if it handed one.
pub(crate) fn sockets_hook() -> Option<&'static SocketsHook> {
    SOCKETS.get()
}

/// The symbol of `extern "C" fn(SocketsHook)`: the plugin keeps the host's hook.
pub const SOCKETS_SYMBOL: &[u8] = b"spud_plugin_accept_sockets\0";
/// The symbol of `extern "C" fn() -> *const TypeLayout`: the layout of [`SocketsHook`] as
/// the plugin was built.
pub const SOCKETS_LAYOUT_SYMBOL: &[u8] = b"spud_plugin_sockets_layout\0";

/// Since 0.1.6: the ELF section holding the plugin's declared name (its `Plugin::NAME`, then
/// a NUL). The host reads it from the file without mapping it, and maps only the plugins
/// that jobs and helpers name; a plugin without the section is mapped to learn its name.
pub const NAME_SECTION: &str = ".spud_plugin_name";

/// `name` and a NUL, as an array of `N` bytes (`N` = its length + 1): the content of
/// [`NAME_SECTION`].
#[doc(hidden)]
pub const fn declared_name<const N: usize>(name: &str) -> [u8; N] {
    let bytes = name.as_bytes();
    assert!(bytes.len() + 1 == N, "N is the name's length plus its NUL");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < bytes.len() {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// The symbol of `extern "C" fn() -> TypedModRef`.
pub const TYPED_SYMBOL: &[u8] = b"spud_plugin_typed_module\0";
/// The symbol of `extern "C" fn() -> *const TypeLayout`: the layout of [`TypedModRef`] as
/// the plugin was built.
pub const TYPED_LAYOUT_SYMBOL: &[u8] = b"spud_plugin_typed_layout\0";
