//! The worker's side: `spud-host worker`. Reads the host's messages from fd 3, loads the
//! plugin's copy, runs its one job, and sends back every sample and log line. It exits when
//! told to stop or when the host's end closes.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Write};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use spud_plugin_api::ffi::{CollectorBox, JobSpec, JobStyle};

use super::{receive, send, FromWorker, ToWorker, WORKER_FD};
use crate::loading::library::{open_module, Module};
use crate::loading::plugin_host::{self, Outlet, StopFlag};
use crate::model::Failure;

/// The worker's way back to the host. Samples of a collect go out together with its `done`.
struct Out {
    writer: Mutex<BufWriter<UnixStream>>,
    /// Inside a collect: write, but flush only with `done`.
    batching: AtomicBool,
}

impl Out {
    fn send(&self, message: &FromWorker) {
        let mut w = self.writer.lock();
        // The host gone, there is nobody to tell: the read loop ends on its own.
        let _ = send(&mut *w, message);
        if !self.batching.load(Ordering::Relaxed) {
            let _ = w.flush();
        }
    }

    fn flush(&self) {
        let _ = self.writer.lock().flush();
    }
}

/// Runs the worker; returns its exit code.
pub fn main() -> i32 {
    // SAFETY: the host started this process with its end of a socket pair on this fd.
    let socket = unsafe { UnixStream::from_raw_fd(WORKER_FD) };
    let mut input = match socket.try_clone() {
        Ok(s) => BufReader::new(s),
        Err(e) => {
            eprintln!("spud-host worker: no socket on fd {WORKER_FD}: {e}");
            return 2;
        }
    };
    let out = Arc::new(Out {
        writer: Mutex::new(BufWriter::new(socket)),
        batching: AtomicBool::new(false),
    });
    let mut job: Option<(Module, Arc<Mutex<CollectorBox>>, Arc<WorkerHost>)> = None;
    let mut service: Option<std::thread::JoinHandle<()>> = None;
    loop {
        let message = match receive::<ToWorker>(&mut input) {
            Ok(Some(m)) => m,
            Ok(None) => return 0,
            Err(e) => {
                eprintln!("spud-host worker: unreadable message from the host: {e}");
                return 2;
            }
        };
        match message {
            ToWorker::Probe { library } => {
                out.send(&match open_module(&library) {
                    Ok(module) => FromWorker::Declared(module.declaration()),
                    Err(error) => FromWorker::Refused {
                        failure: Failure::error(error),
                    },
                });
                return 0;
            }
            ToWorker::Start {
                library,
                job: name,
                options,
                interval_ms,
                timeout_ms,
                vars,
            } => {
                let host = Arc::new(WorkerHost {
                    out: Arc::clone(&out),
                    vars: RwLock::new(vars),
                    stop: StopFlag::default(),
                });
                let started = open_module(&library)
                    .map_err(Failure::error)
                    .and_then(|module| {
                        let spec = JobSpec {
                            name: name.as_str().into(),
                            options: options.into(),
                            interval_ms,
                            timeout_ms,
                        };
                        let host_box = plugin_host::handle(&name, Arc::clone(&host));
                        module.new_job(spec, host_box).map(|c| (module, c))
                    });
                match started {
                    Ok((module, collector)) => {
                        let service = collector.style() == JobStyle::Service;
                        job = Some((module, Arc::new(Mutex::new(collector)), host));
                        out.send(&FromWorker::Ready { service });
                    }
                    Err(failure) => {
                        out.send(&FromWorker::Refused { failure });
                        return 0;
                    }
                }
            }
            ToWorker::Collect => {
                let Some((module, collector, _)) = &job else {
                    continue;
                };
                out.batching.store(true, Ordering::Relaxed);
                let result = module.collect(&mut collector.lock());
                out.send(&done(result));
                out.batching.store(false, Ordering::Relaxed);
                out.flush();
            }
            ToWorker::Run => {
                let Some((module, collector, _)) = &job else {
                    continue;
                };
                let (module, collector, out) = (*module, Arc::clone(collector), Arc::clone(&out));
                service = Some(std::thread::spawn(move || {
                    let result = module.run(&mut collector.lock());
                    out.send(&done(result));
                }));
            }
            ToWorker::Vars { vars } => {
                if let Some((_, _, host)) = &job {
                    *host.vars.write() = vars;
                }
            }
            ToWorker::Stop => {
                if let Some((_, _, host)) = &job {
                    host.stop.request();
                }
                // A service gets the host's grace period to return; then the host kills.
                if let Some(service) = service.take() {
                    let _ = service.join();
                }
                out.flush();
                return 0;
            }
        }
    }
}

fn done(result: Result<(), Failure>) -> FromWorker {
    FromWorker::Done {
        failure: result.err(),
    }
}

/// The job's outlet inside the worker: samples and log lines go back to the host.
struct WorkerHost {
    out: Arc<Out>,
    vars: RwLock<HashMap<String, String>>,
    stop: StopFlag,
}

impl Outlet for WorkerHost {
    fn set(&self, key: &str, value: &str, time: Option<u64>) {
        self.out.send(&FromWorker::Set {
            key: key.to_string(),
            value: value.to_string(),
            time,
        });
    }

    fn log(&self, level: u8, message: &str) {
        self.out.send(&FromWorker::Log {
            level,
            message: message.to_string(),
        });
    }

    fn vars(&self) -> &RwLock<HashMap<String, String>> {
        &self.vars
    }

    fn stop(&self) -> &StopFlag {
        &self.stop
    }
}
