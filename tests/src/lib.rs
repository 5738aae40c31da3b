//! The harness for SPUD's integration tests and benchmarks: the real binaries, started on
//! port 0 in temporary directories, spoken to over real sockets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub mod alertmanager;
pub mod collectd;
pub mod etsy;
pub mod http;
pub mod minisign;
pub mod nats;
pub mod netdata;
pub mod prometheus;
pub mod rrdcached;
pub mod sshd;
pub mod victoria;
pub mod webdriver;

/// The workspace's top folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// The profile this harness was built in; binaries are built in the same one.
fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// The path of a workspace binary, built (once per process) in this harness's profile.
pub fn binary(name: &str) -> PathBuf {
    build(&["--bin", name], name);
    target_dir().join(profile()).join(name)
}

/// The path of a workspace binary built with optimizations whatever this harness's profile,
/// for the tests whose figures (a restart's time) mean something only there.
pub fn release_binary(name: &str) -> PathBuf {
    build(&["--release", "--bin", name], &format!("{name} (release)"));
    target_dir().join("release").join(name)
}

/// The path of a workspace plugin's `.so` (crate `spud-plugin-NAME`), built once per process.
pub fn plugin(name: &str) -> PathBuf {
    let krate = format!("spud-plugin-{name}");
    build(&["-p", &krate, "--lib"], &krate);
    target_dir()
        .join(profile())
        .join(format!("lib{}.so", krate.replace('-', "_")))
}

/// Copies a plugin file to `to`, writable by its owner only: the host refuses plugin files
/// others could write, and what `cargo` builds follows the umask (group-writable under 002).
pub fn install_plugin(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::copy(from, to).expect("copy plugin");
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o644)).expect("chmod plugin");
}

/// Sets this test process's umask to 022, once, so that files and directories the tests make
/// are not group-writable whatever the caller's umask: the host refuses such plugins.
pub fn strict_umask() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| unsafe {
        libc::umask(0o022);
    });
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn build(args: &[&str], what: &str) {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == what) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace_root())
            .args(["build", "--quiet"])
            .args(args);
        if profile() == "release" && !args.contains(&"--release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "building {what} failed");
        built.push(what.to_string());
    }
}

/// A process that is killed when dropped, with its stderr kept for failure messages.
pub struct Process {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `cmd` and waits until a stderr line contains `ready`; returns that line too.
    pub fn start(cmd: Command, ready: &str, within: Duration) -> (Process, String) {
        Process::start_reading(cmd, ready, within, false)
    }

    /// The same, for programs that say it on stdout.
    pub fn start_stdout(cmd: Command, ready: &str, within: Duration) -> (Process, String) {
        Process::start_reading(cmd, ready, within, true)
    }

    fn start_reading(
        mut cmd: Command,
        ready: &str,
        within: Duration,
        stdout: bool,
    ) -> (Process, String) {
        cmd.stdin(Stdio::null());
        if stdout {
            cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        } else {
            cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stderr: Box<dyn Read + Send> = if stdout {
            Box::new(child.stdout.take().expect("piped"))
        } else {
            Box::new(child.stderr.take().expect("piped"))
        };
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let ready = ready.to_string();
        let keep = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains(&ready) {
                    let _ = tx.send(line.clone());
                }
                keep.lock().unwrap().push(line);
            }
        });
        let mut process = Process { child, log };
        match rx.recv_timeout(within) {
            Ok(line) => (process, line),
            Err(_) => {
                let _ = process.child.kill();
                panic!(
                    "{cmd:?} did not become ready within {within:?}; it said:\n{}",
                    process.log()
                );
            }
        }
    }

    /// Starts `cmd` and waits until `addr` accepts connections (for programs that do
    /// not say when they are ready). That probe counts as one client.
    pub fn start_listening(
        mut cmd: Command,
        addr: SocketAddr,
        within: Duration,
    ) -> Result<Process, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
        let mut process = Process {
            child,
            log: Default::default(),
        };
        let deadline = Instant::now() + within;
        while TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline || matches!(process.child.try_wait(), Ok(Some(_))) {
                return Err(format!("{cmd:?} did not start listening on {addr}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(process)
    }

    /// Everything it wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until its log holds `text` (a thread reads its stderr, so a line it wrote just
    /// before an answer may lag behind it); panics with the log after `within`.
    pub fn wait_log(&self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if log.contains(text) {
                return log;
            }
            assert!(Instant::now() < deadline, "no {text:?} in the log:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`libc`-free: through `kill`).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status();
    }

    /// Waits for it to exit; None if it is still running after `within`.
    pub fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `spud-server`.
pub struct SpudServer {
    /// The process.
    pub process: Process,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where it serves HTTP (None with `--no-http`).
    pub http: Option<SocketAddr>,
}

/// The address in a log line `... HTTP on http://ADDR/`.
fn http_addr(log: &str) -> Option<SocketAddr> {
    log.lines()
        .find_map(|l| l.split("HTTP on http://").nth(1))
        .and_then(|rest| rest.trim_end_matches('/').parse().ok())
}

impl SpudServer {
    /// Starts `spud-server` on a free loopback port with extra arguments.
    pub fn start(args: &[&str]) -> SpudServer {
        SpudServer::start_binary(&binary("spud-server"), args)
    }

    /// Waits until a client is subscribed to `pattern` (as `sub` converts it: `rep\\..*`).
    pub fn wait_subscribed(&self, pattern: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self
            .connect()
            .ask("listall", "OK done\r\n")
            .contains(pattern)
        {
            assert!(Instant::now() < deadline, "nobody subscribed to {pattern}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `start`, with these variables in its environment.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> SpudServer {
        SpudServer::start_binary_env(&binary("spud-server"), args, env)
    }

    /// `start`, of another build of `spud-server` (a benchmark's earlier release).
    pub fn start_binary(binary: &Path, args: &[&str]) -> SpudServer {
        SpudServer::start_binary_env(binary, args, &[])
    }

    fn start_binary_env(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> SpudServer {
        let mut cmd = Command::new(binary);
        cmd.envs(env.iter().copied());
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if !args.contains(&"--http") && !args.contains(&"--no-http") {
            cmd.args(["--http", "127.0.0.1:0"]);
        }
        cmd.args(args);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let (process, line) = Process::start(cmd, "listening on ", Duration::from_secs(60));
        let addr = line
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        let http = http_addr(&process.log());
        SpudServer {
            process,
            addr,
            http,
        }
    }

    /// A new client connection.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }
}

/// A running `spud-host` in a temporary directory of its own: `gatherer.toml` and a
/// `plugins/` folder holding copies of the named plugins.
pub struct SpudHost {
    /// The process.
    pub process: Process,
    /// Where its embedded server listens (None with a remote server).
    pub addr: Option<SocketAddr>,
    /// Where its embedded server serves HTTP.
    pub http: Option<SocketAddr>,
    /// The directory holding the config and plugins.
    pub dir: tempfile::TempDir,
}

impl SpudHost {
    /// Writes `config` (its `[server]` section is added unless it has one) and starts the host.
    pub fn start(plugins: &[&str], config: &str) -> SpudHost {
        let dir = SpudHost::prepare(plugins, config);
        SpudHost::start_in(dir)
    }

    /// A temporary directory with the plugins and config, not yet started.
    pub fn prepare(plugins: &[&str], config: &str) -> tempfile::TempDir {
        strict_umask();
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("plugins")).unwrap();
        for name in plugins {
            install_plugin(
                &plugin(name),
                &dir.path().join("plugins").join(format!("{name}.so")),
            );
        }
        let config = if config.contains("[server]") {
            config.to_string()
        } else {
            format!("[server]\nlisten = \"127.0.0.1:0\"\n\n{config}")
        };
        // Tests run side by side: no fixed HTTP port either.
        let config = config.replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"",
        );
        std::fs::write(dir.path().join("gatherer.toml"), config).unwrap();
        dir
    }

    /// Starts the host on a prepared directory.
    pub fn start_in(dir: tempfile::TempDir) -> SpudHost {
        SpudHost::start_binary_in(&binary("spud-host"), dir)
    }

    /// `start_in`, of a given build of `spud-host`.
    pub fn start_binary_in(binary: &Path, dir: tempfile::TempDir) -> SpudHost {
        SpudHost::start_binary_in_env(binary, dir, &[])
    }

    /// `start_in`, with these variables in its environment.
    pub fn start_in_env(dir: tempfile::TempDir, env: &[(&str, &str)]) -> SpudHost {
        SpudHost::start_binary_in_env(&binary("spud-host"), dir, env)
    }

    fn start_binary_in_env(
        binary: &Path,
        dir: tempfile::TempDir,
        env: &[(&str, &str)],
    ) -> SpudHost {
        let mut cmd = Command::new(binary);
        cmd.envs(env.iter().copied());
        cmd.arg("--conf").arg(dir.path().join("gatherer.toml"));
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let (process, line) = Process::start(cmd, "running ", Duration::from_secs(60));
        let _ = line;
        let log = process.log();
        let addr = log
            .lines()
            .find(|l| l.contains("stat server listening on "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|a| a.parse().ok());
        let http = http_addr(&log);
        SpudHost {
            process,
            addr,
            http,
            dir,
        }
    }

    /// A client of its embedded server.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr.expect("an embedded server"))
    }

    /// Waits until `key`'s newest value satisfies `ok`, and returns it.
    pub fn wait_for(&self, key: &str, within: Duration, ok: impl Fn(&str) -> bool) -> String {
        let mut c = self.connect();
        let deadline = Instant::now() + within;
        loop {
            let reply = c.history(key).join("\n");
            if let Some(first) = reply.lines().next().filter(|l| l.starts_with("OK 1 ")) {
                let value = first.splitn(4, ' ').nth(3).unwrap_or("").to_string();
                if ok(&value) {
                    return value;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{key} never became what was expected; last reply {reply:?}\nhost log:\n{}",
                self.process.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `spud-host` with the default config (`conf/gatherer.toml`, what `scripts/run` starts)
/// and its plugins, on ports of its own, with alert rules beside it; its archive writes a
/// key's samples every second rather than every minute.
pub struct DefaultHost {
    pub process: Process,
    pub addr: SocketAddr,
    pub http: SocketAddr,
    pub statsd: SocketAddr,
    pub graphite: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl DefaultHost {
    pub fn start(rules: &str) -> DefaultHost {
        let default = std::fs::read_to_string(workspace_root().join("conf/gatherer.toml")).unwrap();
        let (statsd, graphite) = (free_port(), free_port());
        let config = default
            .replace(
                "127.0.0.1:9107\"",
                "127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nrules = \"alerts.toml\"",
            )
            .replace("127.0.0.1:8125", &statsd.to_string())
            .replace("127.0.0.1:2003", &graphite.to_string())
            .replace(
                "dir = \"../data/archive\"",
                "dir = \"../data/archive\"\nflush = \"1s\"",
            );
        assert!(
            config.contains("flush = \"1s\""),
            "the default config archives"
        );
        strict_umask();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("conf")).unwrap();
        std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
        for name in ["test", "procstat", "statsd", "graphite"] {
            install_plugin(
                &plugin(name),
                &dir.path().join(format!("plugins/{name}.so")),
            );
        }
        std::fs::write(dir.path().join("conf/gatherer.toml"), config).unwrap();
        std::fs::write(dir.path().join("conf/alerts.toml"), rules).unwrap();
        let mut cmd = Command::new(binary("spud-host"));
        cmd.current_dir(dir.path())
            .args(["--conf", "conf/gatherer.toml"])
            .env("RUST_LOG", "info");
        let (process, _) = Process::start(cmd, "running ", Duration::from_secs(60));
        let log = process.log();
        let find = |what: &str| -> SocketAddr {
            log.lines()
                .find_map(|l| l.split(what).nth(1))
                .map(|a| a.trim_end_matches('/').parse().unwrap())
                .unwrap_or_else(|| panic!("no {what:?} in\n{log}"))
        };
        DefaultHost {
            addr: find("stat server listening on "),
            http: find("HTTP on http://"),
            process,
            statsd,
            graphite,
            dir,
        }
    }
}

/// The original 2004 Perl server, extracted from the seed and run unmodified.
pub struct OriginalServer {
    /// The process.
    pub process: Process,
    /// Where it listens.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl OriginalServer {
    /// Starts it, or says why it cannot run here.
    pub fn start() -> Result<OriginalServer, String> {
        let source = original_source("src/spud/bin/server")?;
        let probe = Command::new("perl")
            .args(["-MDanga::Socket", "-e", "1"])
            .stderr(Stdio::null())
            .status();
        if !matches!(probe, Ok(s) if s.success()) {
            return Err(
                "perl with Danga::Socket is missing (scripts/setup-test-deps installs it)".into(),
            );
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let script = dir.path().join("server");
        std::fs::write(&script, source).map_err(|e| e.to_string())?;
        let addr = free_port();
        let mut cmd = Command::new("perl");
        cmd.arg(&script).args(["-p", &addr.port().to_string()]);
        let process = Process::start_listening(cmd, addr, Duration::from_secs(20))?;
        // That probe connection counted as a client; the original cannot forget it.
        Ok(OriginalServer {
            process,
            addr,
            _dir: dir,
        })
    }
}

/// Records that `test` could not run here and why: said on stderr, and kept in
/// `target/test-skips.txt`, which the test command counts as skipped (not passed) and lists
/// by name. Only for what this machine cannot offer at all (the seeds beside the checkout,
/// user namespaces); a component the setup script installs is never a reason to skip.
pub fn skip(test: &str, reason: &str) {
    use std::io::Write as _;
    eprintln!("SKIPPED {test}: {reason}");
    let path = workspace_root().join("target/test-skips.txt");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("target/test-skips.txt");
    writeln!(file, "{test}: {reason}").expect("a line in target/test-skips.txt");
}

/// Runs `script` in Debian's python3 (where python3-influxdb is installed, not another
/// python3 on PATH), asserting it succeeds; its stdout.
pub fn python_influxdb(script: &str) -> String {
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3-influxdb client failed (scripts/setup-test-deps installs it):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The machine's 1-minute load average, from `/proc/loadavg`: what collectors reading the
/// load are compared with.
pub fn loadavg1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .expect("/proc/loadavg")
        .split(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a load average")
}

/// A loopback address with a port that was free a moment ago (for TCP and UDP), for programs
/// whose port is a flag and cannot be 0. It is picked below Linux's ephemeral range
/// (32768 and up): a port the kernel hands out for `:0` or to an outgoing connection of a
/// test running beside this one would otherwise take it between here and the bind.
pub fn free_port() -> SocketAddr {
    use std::hash::{BuildHasher, RandomState};
    let seed = RandomState::new();
    for attempt in 0u32..1000 {
        let port = 20_000 + (seed.hash_one(attempt) % 12_000) as u16;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let tcp = std::net::TcpListener::bind(addr);
        let udp = std::net::UdpSocket::bind(addr);
        if tcp.is_ok() && udp.is_ok() {
            return addr;
        }
    }
    panic!("no free port between 20000 and 32000");
}

/// One file of the original system, extracted from seed `000_*` beside the checkout
/// (`../shared/seeds`, or `$SPUD_SEEDS`). It is never copied into the project.
pub fn original_source(path_in_seed: &str) -> Result<String, String> {
    let dir = std::env::var_os("SPUD_SEEDS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/seeds"));
    let seed = std::fs::read_dir(&dir)
        .map_err(|_| format!("the seeds are not beside the checkout ({})", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("000_"))
        })
        .ok_or_else(|| format!("no seed 000_* in {}", dir.display()))?;
    let text = std::fs::read_to_string(&seed).map_err(|e| e.to_string())?;
    let header = format!("+++ b/{path_in_seed}");
    let start = text
        .find(&header)
        .ok_or_else(|| format!("{path_in_seed} is not in {}", seed.display()))?;
    let mut out = String::new();
    for line in text[start..].lines().skip(1) {
        if line.starts_with("diff -r") {
            break;
        }
        if line.starts_with("@@") {
            continue;
        }
        if let Some(l) = line.strip_prefix('+') {
            out.push_str(l);
            out.push('\n');
        }
    }
    Ok(out)
}

/// A raw protocol connection.
pub struct Client {
    stream: TcpStream,
    /// Bytes read but not yet taken.
    pending: Vec<u8>,
}

impl Client {
    /// Connects, or panics.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).ok();
        Client {
            stream,
            pending: Vec::new(),
        }
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).expect("send");
    }

    /// Reads until the bytes read end with `end`, and returns them all.
    pub fn read_until_suffix(&mut self, end: &[u8], within: Duration) -> Vec<u8> {
        self.read_until(within, |buf| buf.ends_with(end))
    }

    /// Reads until `done(bytes so far)`, and returns them all.
    pub fn read_until(&mut self, within: Duration, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + within;
        let mut chunk = [0u8; 65536];
        while !done(&self.pending) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out; got so far: {:?}",
                String::from_utf8_lossy(&self.pending)
            );
            self.stream.set_read_timeout(Some(left)).ok();
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!(
                    "connection closed; got: {:?}",
                    String::from_utf8_lossy(&self.pending)
                ),
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        std::mem::take(&mut self.pending)
    }

    /// Reads everything until the server closes the connection.
    pub fn read_to_close(&mut self, within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        let mut chunk = [0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the server did not close the connection");
            self.stream.set_read_timeout(Some(left)).ok();
            match self.stream.read(&mut chunk) {
                Ok(0) => return std::mem::take(&mut self.pending),
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return std::mem::take(&mut self.pending),
            }
        }
    }

    /// Whatever arrives within `wait` (for checking that nothing does).
    pub fn read_for(&mut self, wait: Duration) -> Vec<u8> {
        let deadline = Instant::now() + wait;
        let mut chunk = [0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return std::mem::take(&mut self.pending);
            }
            self.stream.set_read_timeout(Some(left)).ok();
            match self.stream.read(&mut chunk) {
                Ok(0) => return std::mem::take(&mut self.pending),
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
    }

    /// Sends one line and reads a reply that ends with `end` (e.g. `OK done\r\n`).
    pub fn ask(&mut self, line: &str, end: &str) -> String {
        self.send(format!("{line}\r\n"));
        String::from_utf8(self.read_until_suffix(end.as_bytes(), Duration::from_secs(20)))
            .expect("utf-8 reply")
    }

    /// `get` of a multi-line answer: every line before `OK done`.
    pub fn get(&mut self, arg: &str) -> Vec<String> {
        let reply = self.ask(&format!("get {arg}"), "OK done\r\n");
        reply
            .trim_end_matches("OK done\r\n")
            .split_terminator("\r\n")
            .map(str::to_string)
            .collect()
    }

    /// `get KEY`: its history lines (`OK n time value`), or the error line.
    pub fn history(&mut self, key: &str) -> Vec<String> {
        self.send(format!("get {key}\r\n"));
        let reply = self.read_until(Duration::from_secs(20), |b| {
            b.ends_with(b"OK done\r\n") || (b.starts_with(b"ERR") && b.ends_with(b"\r\n"))
        });
        String::from_utf8_lossy(&reply)
            .trim_end_matches("OK done\r\n")
            .split_terminator("\r\n")
            .map(str::to_string)
            .collect()
    }

    /// The underlying stream.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

/// Builds the chaos plugin against a copy of this checkout's `plugin-api/` at `version`,
/// with `edit` applied to the copy's `src/ffi.rs`: a plugin built against another API.
/// Fixtures share `target/plugin-version-fixtures`, so only the first build is slow.
/// Returns the `.so`.
pub fn plugin_against_api(tag: &str, version: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let root = workspace_root();
    let api_src = root.join("plugin-api/src");
    let api_files = source_files(&api_src)
        .into_iter()
        .map(|path| {
            let name = path
                .strip_prefix(&api_src)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let text = if name == "ffi.rs" { edit(text) } else { text };
            (name, text)
        })
        .collect();
    let manifest = std::fs::read_to_string(root.join("plugin-api/Cargo.toml")).unwrap();
    let chaos = std::fs::read_to_string(root.join("tests/plugins/chaos/src/lib.rs")).unwrap();
    build_fixture(tag, version, api_files, &manifest, &chaos)
}

/// Builds the chaos plugin as it was at `commit`, against `plugin-api/` as it was then: a
/// plugin a third party built against an older release. Needs the repository's history
/// (a clone, not a bare export); without it, it fails saying so.
pub fn plugin_from_commit(tag: &str, commit: &str) -> PathBuf {
    let root = workspace_root();
    let git = |args: &[&str]| -> String {
        let out = Command::new("git")
            .current_dir(&root)
            .args(args)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?} failed (this test needs the repository's history): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let show = |path: &str| git(&["show", &format!("{commit}:{path}")]);
    let api_files = git(&["ls-tree", "--name-only", commit, "plugin-api/src/"])
        .lines()
        .map(|path| {
            let name = path.rsplit('/').next().unwrap().to_string();
            (name, show(path))
        })
        .collect();
    let manifest = show("plugin-api/Cargo.toml");
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("a version in plugin-api/Cargo.toml")
        .to_string();
    let chaos = show("tests/plugins/chaos/src/lib.rs");
    build_fixture(tag, &version, api_files, &manifest, &chaos)
}

/// Builds a fixture workspace: `plugin-api` (the given files, `version`, the manifest's
/// dependencies) and the chaos plugin's source against it. Returns the `.so`.
/// Every file under `dir`, subfolders included.
fn source_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(source_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn build_fixture(
    tag: &str,
    version: &str,
    api_files: Vec<(String, String)>,
    api_manifest: &str,
    chaos: &str,
) -> PathBuf {
    let root = workspace_root();
    let base = root.join("target/plugin-version-fixtures");
    let src = base.join("src").join(tag);
    let api = src.join("plugin-api");
    let plugin = src.join("plugin");
    std::fs::create_dir_all(api.join("src")).unwrap();
    std::fs::create_dir_all(plugin.join("src")).unwrap();
    // A file the API no longer has (a module that became a folder) must not linger.
    let wanted: Vec<PathBuf> = api_files
        .iter()
        .map(|(name, _)| api.join("src").join(name))
        .collect();
    for stale in source_files(&api.join("src"))
        .into_iter()
        .filter(|f| !wanted.contains(f))
    {
        std::fs::remove_file(stale).unwrap();
    }
    for (name, text) in api_files {
        let path = api.join("src").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        write_if_changed(&path, &text);
    }
    // Its dependencies only: the dev-dependencies name workspace crates.
    let deps = &api_manifest[api_manifest.find("[dependencies]").unwrap()..];
    let deps = &deps[..deps.find("\n[dev-dependencies]").unwrap_or(deps.len())];
    write_if_changed(
        &api.join("Cargo.toml"),
        &format!("[package]\nname = \"spud-plugin-api\"\nversion = \"{version}\"\nedition = \"2021\"\n\n{deps}"),
    );
    write_if_changed(
        &plugin.join("Cargo.toml"),
        &format!(
            "[package]\nname = \"chaos-{tag}\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nspud-plugin-api = {{ path = \"../plugin-api\" }}\n"
        ),
    );
    write_if_changed(&plugin.join("src/lib.rs"), chaos);
    write_if_changed(
        &src.join("Cargo.toml"),
        "[workspace]\nresolver = \"2\"\nmembers = [\"plugin-api\", \"plugin\"]\n",
    );
    if !src.join("Cargo.lock").exists() {
        std::fs::copy(root.join("Cargo.lock"), src.join("Cargo.lock")).unwrap();
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&src)
        .env("CARGO_TARGET_DIR", base.join("target"))
        .args(["build", "--quiet", "--lib", "-p", &format!("chaos-{tag}")])
        .status()
        .unwrap();
    assert!(status.success(), "building the {tag} fixture failed");
    base.join("target/debug")
        .join(format!("libchaos_{}.so", tag.replace('-', "_")))
}

fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).unwrap();
    }
}

pub fn api_version() -> String {
    let manifest = std::fs::read_to_string(workspace_root().join("plugin-api/Cargo.toml")).unwrap();
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("plugin-api has its own version line")
        .to_string()
}

/// A throwaway PKI made with Debian's `openssl`: a CA, a server certificate for 127.0.0.1
/// and localhost, a client certificate signed by the same CA, and a second, unrelated CA.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        strict_umask();
        let dir = tempfile::tempdir().expect("temp dir");
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl (scripts/setup-test-deps installs it)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ca = |name: &str| {
            run(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
        };
        ca("ca");
        ca("rogue-ca");
        let leaf = |name: &str, ext: &str| {
            run(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ]);
            std::fs::write(dir.path().join(format!("{name}.ext")), ext).unwrap();
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ]);
        };
        leaf(
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        );
        leaf("client", "extendedKeyUsage=clientAuth\n");
        for key in ["ca", "rogue-ca", "server", "client"] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                dir.path().join(format!("{key}.key")),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
        }
        Pki { dir }
    }

    /// A file of the PKI by name: `ca.pem`, `server.key`, `client.pem`, `rogue-ca.pem`…
    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}
