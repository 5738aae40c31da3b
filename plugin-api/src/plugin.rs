//! The Rust side a plugin author implements: [`Plugin`], and [`Pull`] or [`Service`] jobs.

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::std_types::{RErr, ROk, RResult, RString};
use serde::de::DeserializeOwned;

use crate::ffi::{CollectorApi, CollectorBox, Failure, FailureKind, JobStyle};
use crate::Host;

/// What a plugin reports when something fails: one line a user can act on.
pub type Error = String;

/// A collector plugin. Implement it on a unit struct and export it with
/// [`export_plugin!`](crate::export_plugin).
pub trait Plugin: 'static {
    /// The name jobs use in `plugin = "..."`; unique among the host's plugins.
    const NAME: &'static str;
    /// One line about what it collects.
    const DESCRIPTION: &'static str;
    /// Whether it is a helper (implements [`Plugin::helper_jobs`]).
    const IS_HELPER: bool = false;

    /// Creates one job. Parse options with [`Job::options`]; a bad option is an `Err`
    /// naming it, and the host reports it without starting the job.
    fn new_job(job: &Job, host: Host) -> Result<Collector, Error>;

    /// For helpers: the jobs wanted now. Called once per helper interval; jobs that appear
    /// start, jobs that vanish stop, unchanged jobs are left alone.
    fn helper_jobs(job: &Job, host: Host) -> Result<Vec<JobDef>, Error> {
        let _ = (job, host);
        Err(format!("{} is not a helper plugin", Self::NAME))
    }
}

/// The job being created: its name, options and schedule.
pub struct Job {
    /// The job's name (`memcached.local`); relative keys land under it.
    pub name: String,
    /// How often the host calls `collect`.
    pub interval: std::time::Duration,
    /// How long one `collect` may take before the host reports a timeout.
    pub timeout: std::time::Duration,
    options: String,
}

impl Job {
    #[doc(hidden)]
    pub fn from_ffi(spec: &crate::ffi::JobSpec) -> Job {
        Job {
            name: spec.name.to_string(),
            interval: std::time::Duration::from_millis(spec.interval_ms),
            timeout: std::time::Duration::from_millis(spec.timeout_ms),
            options: spec.options.to_string(),
        }
    }

    /// The job's `options` table as the plugin's own type. Use
    /// `#[serde(deny_unknown_fields)]` so that a typo is an error, not a silent default.
    pub fn options<T: DeserializeOwned>(&self) -> Result<T, Error> {
        toml::from_str(&self.options).map_err(|e| {
            let msg = e.message().trim().to_string();
            // The host names the job.
            format!("bad options: {msg}")
        })
    }
}

/// A job a helper wants.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDef {
    /// Its name.
    pub name: String,
    /// The plugin that runs it.
    pub plugin: String,
    /// Its options, as a TOML table.
    pub options: toml::Table,
    /// Its interval; None for the host's default.
    pub interval: Option<std::time::Duration>,
}

/// A collector that the host calls once per interval.
pub trait Pull: Send {
    /// Collects once, emitting samples through the [`Host`] it was given. Return an error
    /// for a failed collection; the job keeps running and the host reports it.
    fn collect(&mut self) -> Result<(), Error>;
}

/// A collector that runs by itself (a tail, a listener) until the host asks it to stop.
pub trait Service: Send {
    /// Runs until [`Host::stop_requested`] says so. Returning early ends the job; the host
    /// reports an error return and restarts the job.
    fn run(&mut self) -> Result<(), Error>;
}

/// A new job's collector.
pub enum Collector {
    /// Called once per interval.
    Pull(Box<dyn Pull>),
    /// Runs until stopped.
    Service(Box<dyn Service>),
}

impl Collector {
    /// A pull collector.
    pub fn pull(p: impl Pull + 'static) -> Collector {
        Collector::Pull(Box::new(p))
    }

    /// A service.
    pub fn service(s: impl Service + 'static) -> Collector {
        Collector::Service(Box::new(s))
    }
}

/// Runs `f`, turning a panic into a [`Failure`] of kind `Panic`: a panic must never cross
/// into the host. `what` names the call in the message (`collect panicked: ...`).
#[doc(hidden)]
pub fn guard<T>(what: &str, f: impl FnOnce() -> Result<T, Error>) -> RResult<T, Failure> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => ROk(v),
        Ok(Err(e)) => RErr(Failure::error(e)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            RErr(Failure {
                kind: FailureKind::Panic,
                message: format!("{what} panicked: {msg}").into(),
            })
        }
    }
}

/// A typed result as hosts of 0.1.1 and earlier read it: the message alone.
#[doc(hidden)]
pub fn untyped<T>(result: RResult<T, Failure>) -> RResult<T, RString> {
    result.map_err(|f| f.message)
}

impl CollectorApi for Collector {
    fn style(&self) -> JobStyle {
        match self {
            Collector::Pull(_) => JobStyle::Pull,
            Collector::Service(_) => JobStyle::Service,
        }
    }

    fn collect(&mut self) -> RResult<(), RString> {
        untyped(self.collect_typed())
    }

    fn run(&mut self) -> RResult<(), RString> {
        untyped(self.run_typed())
    }
}

impl Collector {
    fn collect_typed(&mut self) -> RResult<(), Failure> {
        match self {
            Collector::Pull(p) => guard("collect", || p.collect()),
            Collector::Service(_) => RErr(Failure::error("a service has no collect")),
        }
    }

    fn run_typed(&mut self) -> RResult<(), Failure> {
        match self {
            Collector::Service(s) => guard("run", || s.run()),
            Collector::Pull(_) => RErr(Failure::error("a pull collector has no run")),
        }
    }
}

/// The collector inside a box this plugin made (its `new_job` makes them downcastable).
fn unbox(collector: &mut CollectorBox) -> Result<&mut Collector, Failure> {
    collector
        .obj
        .downcast_as_mut::<Collector>()
        .map_err(|_| Failure::error("a collector made by another plugin"))
}

/// `TypedMod::collect`.
#[doc(hidden)]
pub extern "C" fn typed_collect(collector: &mut CollectorBox) -> RResult<(), Failure> {
    match unbox(collector) {
        Ok(c) => c.collect_typed(),
        Err(f) => RErr(f),
    }
}

/// `TypedMod::run`.
#[doc(hidden)]
pub extern "C" fn typed_run(collector: &mut CollectorBox) -> RResult<(), Failure> {
    match unbox(collector) {
        Ok(c) => c.run_typed(),
        Err(f) => RErr(f),
    }
}

/// Exports a [`Plugin`] as the library's root module, every entry point guarded against
/// panics. Use once per plugin crate (a `cdylib`):
///
/// ```ignore
/// spud_plugin_api::export_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        // What abi_stable's `#[export_root_module]` expands to, with paths through this
        // crate so that a plugin depends on spud-plugin-api alone.
        fn __spud_root_module() -> $crate::ffi::PluginModRef {
            use $crate::abi_stable::prefix_type::PrefixTypeTrait;
            $crate::ffi::PluginMod {
                info: __spud_info,
                new_job: __spud_new_job,
                helper_jobs: __spud_helper_jobs,
            }
            .leak_into_prefix()
        }

        #[doc(hidden)]
        #[export_name = "spud_plugin_typed_module"]
        pub extern "C" fn __spud_typed_module() -> $crate::ffi::TypedModRef {
            use $crate::abi_stable::prefix_type::PrefixTypeTrait;
            $crate::ffi::TypedMod {
                new_job: __spud_new_job_typed,
                helper_jobs: __spud_helper_jobs_typed,
                collect: $crate::typed_collect,
                run: $crate::typed_run,
            }
            .leak_into_prefix()
        }

        #[doc(hidden)]
        #[export_name = "spud_plugin_typed_layout"]
        pub extern "C" fn __spud_typed_layout() -> *const $crate::abi_stable::type_layout::TypeLayout {
            <$crate::ffi::TypedModRef as $crate::abi_stable::StableAbi>::LAYOUT
        }

        #[doc(hidden)]
        #[export_name = "spud_plugin_accept_sockets"]
        pub extern "C" fn __spud_accept_sockets(hook: $crate::ffi::SocketsHook) {
            $crate::ffi::accept_sockets(hook)
        }

        #[doc(hidden)]
        #[export_name = "spud_plugin_sockets_layout"]
        pub extern "C" fn __spud_sockets_layout() -> *const $crate::abi_stable::type_layout::TypeLayout {
            <$crate::ffi::SocketsHook as $crate::abi_stable::StableAbi>::LAYOUT
        }

        // The name, where the host reads it without mapping the library. Exported, so that
        // the linker keeps it.
        #[doc(hidden)]
        #[export_name = "spud_plugin_name"]
        #[link_section = ".spud_plugin_name"]
        pub static __SPUD_PLUGIN_NAME: [u8; <$plugin as $crate::Plugin>::NAME.len() + 1] =
            $crate::ffi::declared_name(<$plugin as $crate::Plugin>::NAME);

        #[doc(hidden)]
        #[export_name = "_1as_0lib_1header_0root_bmodule_bloader"]
        pub static __SPUD_LIB_HEADER: $crate::abi_stable::library::LibHeader = {
            extern "C" fn erased() -> $crate::abi_stable::library::RootModuleResult {
                $crate::abi_stable::library::__call_root_module_loader(__spud_root_module)
            }
            // SAFETY: `erased` returns the module of type `PluginModRef`, as the header says.
            unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<$crate::ffi::PluginModRef>(
                    erased,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };

        extern "C" fn __spud_info() -> $crate::ffi::PluginInfo {
            $crate::plugin_info(
                <$plugin as $crate::Plugin>::NAME,
                env!("CARGO_PKG_VERSION"),
                <$plugin as $crate::Plugin>::DESCRIPTION,
                <$plugin as $crate::Plugin>::IS_HELPER,
            )
        }

        extern "C" fn __spud_new_job_typed(
            spec: $crate::ffi::JobSpec,
            host: $crate::ffi::HostBox,
        ) -> $crate::abi_stable::std_types::RResult<$crate::ffi::CollectorBox, $crate::ffi::Failure> {
            $crate::guard("new_job", || {
                let job = $crate::Job::from_ffi(&spec);
                let collector = <$plugin as $crate::Plugin>::new_job(&job, $crate::Host::from_ffi(host))?;
                // Downcastable, so that the typed module's `collect` and `run` reach it.
                Ok($crate::ffi::CollectorApi_TO::from_value(
                    collector,
                    $crate::abi_stable::sabi_trait::TD_CanDowncast,
                ))
            })
        }

        extern "C" fn __spud_helper_jobs_typed(
            spec: $crate::ffi::JobSpec,
            host: $crate::ffi::HostBox,
        ) -> $crate::abi_stable::std_types::RResult<
            $crate::abi_stable::std_types::RVec<$crate::ffi::JobDef>,
            $crate::ffi::Failure,
        > {
            $crate::guard("helper_jobs", || {
                let job = $crate::Job::from_ffi(&spec);
                let jobs = <$plugin as $crate::Plugin>::helper_jobs(&job, $crate::Host::from_ffi(host))?;
                Ok(jobs.into_iter().map($crate::job_def_to_ffi).collect())
            })
        }

        // The untyped entry points, for hosts of 0.1.1 and earlier.
        extern "C" fn __spud_new_job(
            spec: $crate::ffi::JobSpec,
            host: $crate::ffi::HostBox,
        ) -> $crate::abi_stable::std_types::RResult<$crate::ffi::CollectorBox, $crate::abi_stable::std_types::RString> {
            $crate::untyped(__spud_new_job_typed(spec, host))
        }

        extern "C" fn __spud_helper_jobs(
            spec: $crate::ffi::JobSpec,
            host: $crate::ffi::HostBox,
        ) -> $crate::abi_stable::std_types::RResult<
            $crate::abi_stable::std_types::RVec<$crate::ffi::JobDef>,
            $crate::abi_stable::std_types::RString,
        > {
            $crate::untyped(__spud_helper_jobs_typed(spec, host))
        }
    };
}

/// The plugin's description, built without any chance of a panic crossing the boundary.
#[doc(hidden)]
pub fn plugin_info(
    name: &str,
    version: &str,
    description: &str,
    is_helper: bool,
) -> crate::ffi::PluginInfo {
    let build = || crate::ffi::PluginInfo {
        name: name.into(),
        version: version.into(),
        description: description.into(),
        is_helper,
    };
    catch_unwind(AssertUnwindSafe(build)).unwrap_or_else(|_| crate::ffi::PluginInfo {
        name: RString::new(),
        version: RString::new(),
        description: RString::new(),
        is_helper: false,
    })
}

#[doc(hidden)]
pub fn job_def_to_ffi(def: JobDef) -> crate::ffi::JobDef {
    crate::ffi::JobDef {
        name: def.name.into(),
        plugin: def.plugin.into(),
        options: toml::to_string(&def.options).unwrap_or_default().into(),
        interval_ms: def.interval.map_or(0, |d| d.as_millis() as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exported_symbols_have_the_names_hosts_look_for() {
        let macro_text = include_str!("plugin.rs");
        let name = abi_stable::library::ROOT_MODULE_LOADER_NAME;
        assert!(
            macro_text.contains(&format!("#[export_name = \"{name}\"]")),
            "{name}"
        );
        for symbol in [
            crate::ffi::TYPED_SYMBOL,
            crate::ffi::TYPED_LAYOUT_SYMBOL,
            crate::ffi::SOCKETS_SYMBOL,
            crate::ffi::SOCKETS_LAYOUT_SYMBOL,
        ] {
            let name = std::str::from_utf8(&symbol[..symbol.len() - 1]).unwrap();
            assert!(
                macro_text.contains(&format!("#[export_name = \"{name}\"]")),
                "{name}"
            );
        }
    }

    #[test]
    fn panics_become_typed_failures() {
        let r: RResult<(), Failure> = guard("collect", || panic!("boom {}", 1));
        let panic = Failure {
            kind: FailureKind::Panic,
            message: "collect panicked: boom 1".into(),
        };
        assert_eq!(r, RErr(panic));
        let r: RResult<(), Failure> = guard("collect", || Err("down".into()));
        assert_eq!(r, RErr(Failure::error("down")));
        // Hosts of 0.1.1 read the message alone, as before.
        let r = untyped::<()>(guard("collect", || panic!("boom")));
        assert_eq!(r, RErr(RString::from("collect panicked: boom")));
    }

    #[test]
    fn options_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Opts {
            address: String,
        }
        let job = Job {
            name: "memcached.local".into(),
            interval: Default::default(),
            timeout: Default::default(),
            options: "adress = \"x\"\n".into(),
        };
        let err = job.options::<Opts>().unwrap_err();
        assert!(
            err.starts_with("bad options: unknown field `adress`"),
            "{err}"
        );
        assert!(err.contains("address"), "{err}");
    }
}
