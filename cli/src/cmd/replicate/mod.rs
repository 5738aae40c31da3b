//! `spud replicate` (the original replicator): subscribes on one server and stores every
//! matching set into another with its original time. The source is a TCP address, or a
//! command whose stdin and stdout reach it (`--from-cmd 'ssh -p 222 spud@border'`, through
//! `spud cmdshell` at the far end), as the original went through ssh. Either side may go
//! away: the source is subscribed to again with backoff, and samples for the destination
//! wait in a bounded buffer, or with `--spool DIR` on disk, where a restart keeps them (the
//! oldest dropped and counted beyond either bound). The carriage returns
//! a pty adds (`ssh -tt`) are stripped. Its own figures go to the destination every 5 s as
//! `replicate.received`, `.sent`, `.buffered`, `.dropped`, `.lag_s` (now minus the newest
//! sample's time) and `.reconnects`.
//!
//! After a break, what was set on the source meanwhile is copied too (`catch_up`): once
//! subscribed again, each matching key's history newer than the last sample copied is read
//! on a second connection and pushed, so a transport that drops (an sshd restarted) loses
//! nothing the source still holds (its last `--history` samples per key).

mod catch_up;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spud_server::client::endpoint::Endpoint;
use spud_server::client::pusher::Pusher;

#[derive(clap::Args, Debug)]
pub struct ReplicateArgs {
    /// The server to replicate from.
    #[arg(
        long,
        value_name = "HOST:PORT",
        required_unless_present = "from_cmd",
        conflicts_with = "from_cmd"
    )]
    from: Option<String>,
    /// A command whose stdin and stdout reach the source server instead (no shell is used to
    /// run it: the words are split as a shell would, then run directly).
    #[arg(long, value_name = "COMMAND")]
    from_cmd: Option<String>,
    /// The server to replicate into.
    #[arg(long, value_name = "HOST:PORT")]
    to: String,
    /// Which keys to replicate (a pattern).
    #[arg(long = "match", default_value = "*", value_name = "PATTERN")]
    pattern: String,
    /// Samples kept while the destination is away.
    #[arg(long, default_value_t = 100_000, value_name = "SAMPLES")]
    buffer: usize,
    /// Keep samples for the destination in this directory instead: an outage and a restart
    /// meanwhile lose nothing.
    #[arg(long, value_name = "DIR")]
    spool: Option<PathBuf>,
    /// The spool's bound; past it the oldest samples are dropped.
    #[arg(long, default_value_t = 1 << 30, value_name = "BYTES")]
    spool_max: u64,
    /// A file whose first line is the token for the source server (sent through
    /// --from-cmd too).
    #[arg(long, value_name = "FILE")]
    from_token_file: Option<PathBuf>,
    /// A file whose first line is the token for the destination server.
    #[arg(long, value_name = "FILE")]
    to_token_file: Option<PathBuf>,
    /// Speak TLS to the source (--from), trusting certificates this CA signed.
    #[arg(long, value_name = "FILE")]
    from_tls_ca: Option<PathBuf>,
    /// Speak TLS to the destination, trusting certificates this CA signed.
    #[arg(long, value_name = "FILE")]
    to_tls_ca: Option<PathBuf>,
}

#[derive(Default)]
struct Counts {
    received: AtomicU64,
    reconnects: AtomicU64,
    newest_time: AtomicU64,
    caught_up: AtomicU64,
}

/// One sample as copied: key, time, value.
type Sample = (String, u64, String);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The source's two directions, and the child process carrying them, if any.
pub(crate) struct Source {
    pub(crate) reader: Box<dyn BufRead>,
    pub(crate) writer: Box<dyn Write>,
    child: Option<Child>,
}

impl Drop for Source {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) fn open(
    args: &ReplicateArgs,
    identity: Option<(&Path, &Path)>,
) -> Result<Source, String> {
    let token = match &args.from_token_file {
        Some(file) => Some(spud_server::access::auth::read_token_file(file)?),
        None => None,
    };
    if let Some(command) = &args.from_cmd {
        let words =
            shell_words::split(command).map_err(|e| format!("--from-cmd {command:?}: {e}"))?;
        let (program, rest) = words.split_first().ok_or("--from-cmd is empty")?;
        let mut child = Command::new(program)
            .args(rest)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        let mut writer = Box::new(child.stdin.take().expect("piped"));
        let reader = Box::new(BufReader::new(child.stdout.take().expect("piped")));
        if let Some(token) = token {
            // Its answer is read (and skipped) with the subscription's.
            writer
                .write_all(format!("auth {token}\r\n").as_bytes())
                .map_err(|e| format!("cannot send the token: {e}"))?;
        }
        return Ok(Source {
            reader,
            writer,
            child: Some(child),
        });
    }
    let addr = args
        .from
        .as_deref()
        .expect("clap requires --from or --from-cmd");
    let endpoint = Endpoint::new(addr)
        .token_file(args.from_token_file.as_deref())?
        .tls(args.from_tls_ca.as_deref(), identity)?;
    let stream = endpoint.connect().map_err(|e| format!("{addr}: {e}"))?;
    let writer = Box::new(stream.try_clone().map_err(|e| e.to_string())?);
    Ok(Source {
        reader: Box::new(BufReader::new(stream)),
        writer,
        child: None,
    })
}

/// One line from the source, without its line end (a pty in the way turns every line
/// ending into \r\r\n); None when it is gone, with why.
pub(crate) fn read_line(reader: &mut dyn BufRead, line: &mut Vec<u8>) -> Result<String, String> {
    line.clear();
    match reader.read_until(b'\n', line) {
        Ok(0) => return Err("the source closed the connection".into()),
        Err(e) => return Err(format!("reading from the source: {e}")),
        Ok(_) => {}
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(String::from_utf8_lossy(line).into_owned())
}

/// Subscribes, catches up on what `seen` says was missed (after a break), and copies until
/// the source goes away. Returns why it stopped.
fn copy(
    source: &mut Source,
    args: &ReplicateArgs,
    identity: Option<(&Path, &Path)>,
    seen: &mut catch_up::Seen,
    pusher: &Pusher,
    counts: &Counts,
) -> String {
    let pattern = &args.pattern;
    if let Err(e) = source
        .writer
        .write_all(format!("sub {pattern}\r\n").as_bytes())
        .and_then(|()| source.writer.flush())
    {
        return format!("cannot subscribe: {e}");
    }
    let mut line = Vec::new();
    let mut pushed_by_catch_up: HashSet<Sample> = HashSet::new();
    let mut subscribed = false;
    loop {
        let text = match read_line(&mut *source.reader, &mut line) {
            Ok(text) => text,
            Err(why) => return why,
        };
        if let Some(err) = text.strip_prefix("ERR ") {
            return format!("the source says: {err}");
        }
        let Some(rest) = text.strip_prefix("SET ") else {
            // The answer to `sub` (not `auth`'s): from now on nothing set is missed, so
            // what was set during the break is read now, on a second connection.
            if !subscribed && text.starts_with("OK ") && !catch_up::is_auth_answer(&text) {
                subscribed = true;
                if seen.after_break() {
                    match catch_up::run(args, identity, seen, pusher) {
                        Ok(pushed) => {
                            counts
                                .caught_up
                                .fetch_add(pushed.len() as u64, Ordering::Relaxed);
                            pushed_by_catch_up = pushed;
                        }
                        Err(e) => return format!("catching up: {e}"),
                    }
                }
            }
            continue; // or a pty's echo of what we sent
        };
        let mut parts = rest.splitn(3, ' ');
        let (Some(time), Some(key), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Ok(time) = time.parse::<u64>() else {
            continue;
        };
        // A set between the subscription and the catch-up's read arrives both ways.
        if !pushed_by_catch_up.is_empty()
            && pushed_by_catch_up.remove(&(key.to_string(), time, value.to_string()))
        {
            continue;
        }
        pusher.push(key, value, time);
        seen.copied(key, time, value);
        counts.received.fetch_add(1, Ordering::Relaxed);
        counts.newest_time.fetch_max(time, Ordering::Relaxed);
    }
}

pub fn run(args: ReplicateArgs, identity: Option<(&Path, &Path)>) -> i32 {
    let to = match Endpoint::new(args.to.clone())
        .token_file(args.to_token_file.as_deref())
        .and_then(|e| e.tls(args.to_tls_ca.as_deref(), identity))
    {
        Ok(to) => to,
        Err(e) => {
            eprintln!("spud replicate: {e}");
            return 2;
        }
    };
    let backlog = match &args.spool {
        Some(dir) => match spud_spool::Backlog::spool(dir, args.spool_max) {
            Ok(backlog) => backlog,
            Err(e) => {
                eprintln!("spud replicate: {e}");
                return 2;
            }
        },
        None => spud_spool::Backlog::memory(args.buffer.max(1)),
    };
    let pusher = Pusher::start(to, backlog);
    let counts = Arc::new(Counts::default());
    {
        let (pusher, counts) = (Arc::clone(&pusher), Arc::clone(&counts));
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(5));
            let t = now();
            let newest = counts.newest_time.load(Ordering::Relaxed);
            pusher.push(
                "replicate.received",
                &counts.received.load(Ordering::Relaxed).to_string(),
                t,
            );
            pusher.push("replicate.sent", &pusher.sent().to_string(), t);
            pusher.push("replicate.buffered", &pusher.buffered().to_string(), t);
            pusher.push("replicate.dropped", &pusher.dropped().to_string(), t);
            pusher.push(
                "replicate.reconnects",
                &counts.reconnects.load(Ordering::Relaxed).to_string(),
                t,
            );
            pusher.push(
                "replicate.caught_up",
                &counts.caught_up.load(Ordering::Relaxed).to_string(),
                t,
            );
            if newest > 0 {
                pusher.push("replicate.lag_s", &t.saturating_sub(newest).to_string(), t);
            }
        });
    }
    let from = args
        .from
        .clone()
        .or(args.from_cmd.clone())
        .unwrap_or_default();
    let mut backoff = super::Backoff::new();
    let mut seen = catch_up::Seen::default();
    loop {
        let started = std::time::Instant::now();
        let why = match open(&args, identity) {
            Ok(mut source) => {
                eprintln!(
                    "spud replicate: copying {} from {from} to {}",
                    args.pattern, args.to
                );
                copy(&mut source, &args, identity, &mut seen, &pusher, &counts)
            }
            Err(e) => e,
        };
        let wait = backoff.after(started.elapsed());
        eprintln!("spud replicate: {why}; subscribing again in {wait:?}");
        counts.reconnects.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(wait);
    }
}
