//! `spud archive --dir DIR` (the original rrd-storage): every numeric set of a matching key
//! goes into one RRD file per key, in the original's layout (`spud_archive`), so stock
//! `rrdtool fetch` and `rrdtool graph` read them and archives the original wrote carry on.
//!
//! At start (and after each reconnect) the server's stored history of every matching key is
//! written first (the back-fill, with a progress bar on a terminal); then the subscription's
//! samples are batched and written every `--flush` (60 s) and at SIGINT/SIGTERM. RRD files
//! take one value per second, in increasing time: the last value of a second wins, and a
//! sample not newer than its file's last update is skipped (a back-fill overlapping what is
//! already archived costs nothing).

use spud_server::client::endpoint::{Connection, Endpoint};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use spud_archive::{Archive, Figures, Place};

#[derive(clap::Args, Debug)]
pub struct ArchiveArgs {
    /// The directory of RRD files (one per key; it must exist).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Which keys to archive (a pattern).
    #[arg(long = "match", default_value = "*", value_name = "PATTERN")]
    pattern: String,
    /// How often batched samples are written.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    flush: Duration,
    /// Do not write the server's stored history first.
    #[arg(long)]
    no_backfill: bool,
    /// Hand the updates to rrdcached at ADDR (`unix:/run/rrdcached.sock`, a socket's path,
    /// or host:port), which batches them into fewer disk writes.
    #[arg(long, value_name = "ADDR")]
    rrdcached: Option<String>,
}

/// What the reading threads tell the writer.
enum Event {
    Sample {
        key: String,
        time: u64,
        value: f64,
    },
    /// A back-fill has delivered everything: write it now.
    BackfillDone {
        keys: usize,
        samples: u64,
        started: Instant,
    },
    Stop,
}

pub fn run(server: &Endpoint, args: ArchiveArgs) -> i32 {
    if !args.dir.is_dir() {
        eprintln!(
            "spud archive: {} does not exist or is not a directory",
            args.dir.display()
        );
        return 2;
    }
    let mut archive = match Archive::open(Place {
        dir: args.dir.clone(),
        rrdcached: args.rrdcached.clone(),
    }) {
        Ok(archive) => archive,
        Err(e) => {
            eprintln!("spud archive: {e}");
            return 69;
        }
    };
    // Bounded: if the files cannot keep up, the reader stops reading, the server cuts the
    // subscription off as slow, and the reconnect's back-fill recovers what it can.
    let (tx, rx) = sync_channel(1 << 16);
    stop_on_signals(tx.clone());
    {
        let (server, pattern, backfill) = (server.clone(), args.pattern.clone(), !args.no_backfill);
        std::thread::spawn(move || read_forever(&server, &pattern, backfill, &tx));
    }
    write_loop(&mut archive, &rx, args.flush);
    0
}

fn stop_on_signals(tx: SyncSender<Event>) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).expect("signals");
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = tx.send(Event::Stop);
        }
    });
}

/// Subscribes (and back-fills) again and again, with backoff, for as long as the process runs.
fn read_forever(server: &Endpoint, pattern: &str, backfill: bool, tx: &SyncSender<Event>) {
    let mut backoff = super::Backoff::new();
    loop {
        let started = Instant::now();
        let why = match subscribe(server, pattern) {
            Ok((reader, _writer)) => {
                eprintln!("spud archive: archiving {pattern} from {server}");
                if backfill {
                    let (server, pattern, tx) = (server.clone(), pattern.to_string(), tx.clone());
                    std::thread::spawn(move || {
                        if let Err(e) = fill_from_history(&server, &pattern, &tx) {
                            eprintln!("spud archive: back-fill stopped: {e}");
                        }
                    });
                }
                stream(reader, tx)
            }
            Err(e) => e.to_string(),
        };
        let wait = backoff.after(started.elapsed());
        eprintln!("spud archive: {server}: {why}; subscribing again in {wait:?}");
        std::thread::sleep(wait);
    }
}

fn subscribe(
    server: &Endpoint,
    pattern: &str,
) -> std::io::Result<(BufReader<Connection>, Connection)> {
    let stream = server.connect()?;
    let mut writer = stream.try_clone()?;
    writer.write_all(format!("sub {pattern}\r\n").as_bytes())?;
    Ok((BufReader::new(stream), writer))
}

/// Forwards the subscription's numeric samples until the connection ends; returns why.
fn stream(mut reader: BufReader<Connection>, tx: &SyncSender<Event>) -> String {
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return "the server closed the connection".into(),
            Err(e) => return e.to_string(),
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if let Some(err) = text.strip_prefix("ERR ") {
            return format!("the server says: {err}");
        }
        let Some(rest) = text.strip_prefix("SET ") else {
            continue; // the answer to `sub`
        };
        let mut parts = rest.splitn(3, ' ');
        if let (Some(time), Some(key), Some(value)) = (parts.next(), parts.next(), parts.next()) {
            if let Some(event) = sample(key, time, value) {
                if tx.send(event).is_err() {
                    return "stopping".into();
                }
            }
        }
    }
}

/// A sample worth archiving: a whole-second time and a finite number.
fn sample(key: &str, time: &str, value: &str) -> Option<Event> {
    let time = time.parse().ok()?;
    let value: f64 = value.trim().parse().ok()?;
    value.is_finite().then(|| Event::Sample {
        key: key.to_string(),
        time,
        value,
    })
}

/// Reads the stored history of every matching key (`get PATTERN`, then one pipelined
/// `get KEY` each) into the writer.
fn fill_from_history(
    server: &Endpoint,
    pattern: &str,
    tx: &SyncSender<Event>,
) -> std::io::Result<()> {
    let started = Instant::now();
    let stream = server.connect()?;
    let mut writer = std::io::BufWriter::new(stream.try_clone()?);
    let mut reader = BufReader::new(stream);
    // `PATTERN*` matches the same keys (patterns are unanchored) and is never taken for one
    // key's name, whose history `get` would answer instead.
    writer.write_all(format!("get {pattern}*\r\n").as_bytes())?;
    writer.flush()?;
    let mut keys = Vec::new();
    read_reply(&mut reader, |line| {
        if let Some(key) = line.split(' ').next() {
            keys.push(key.to_string());
        }
    })?;
    // `get 0` would mean "no argument".
    keys.retain(|k| k != "0");

    let bar = progress(
        keys.len() as u64,
        "back-fill {bar:30} {pos}/{len} keys, {eta} left",
    );
    let mut samples = 0u64;
    for chunk in keys.chunks(256) {
        for key in chunk {
            writer.write_all(format!("get {key}\r\n").as_bytes())?;
        }
        writer.flush()?;
        for key in chunk {
            read_reply(&mut reader, |line| {
                let mut parts = line.splitn(3, ' ');
                let (_, Some(time), Some(value)) = (parts.next(), parts.next(), parts.next())
                else {
                    return;
                };
                if let Some(event) = sample(key, time, value) {
                    samples += 1;
                    let _ = tx.send(event);
                }
            })?;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let _ = tx.send(Event::BackfillDone {
        keys: keys.len(),
        samples,
        started,
    });
    Ok(())
}

/// Reads one multi-line reply, handing each `OK` line's text (without `OK `) to `each`.
fn read_reply(reader: &mut impl BufRead, mut each: impl FnMut(&str)) -> std::io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        match text.strip_prefix("OK ") {
            Some("done") => return Ok(()),
            Some(rest) => each(rest),
            None => return Ok(()), // an ERR line ends the reply (a key that went away)
        }
    }
}

fn progress(len: u64, template: &str) -> ProgressBar {
    // indicatif draws nothing when stderr is not a terminal.
    let bar = ProgressBar::new(len);
    bar.set_style(ProgressStyle::with_template(template).expect("template"));
    bar
}

fn write_loop(archive: &mut Archive, rx: &Receiver<Event>, every: Duration) {
    let mut next = Instant::now() + every;
    loop {
        match rx.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok(Event::Sample { key, time, value }) => archive.add(key, time, value),
            Ok(Event::BackfillDone {
                keys,
                samples,
                started,
            }) => {
                let figures = flush(archive, true);
                eprintln!(
                    "spud archive: back-filled {samples} stored samples of {keys} keys in {:.1?}: {figures}",
                    started.elapsed()
                );
            }
            Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => {
                let figures = flush(archive, false);
                eprintln!("spud archive: stopping; last batch: {figures}");
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                let figures = flush(archive, false);
                if figures.written > 0 {
                    eprintln!("spud archive: {figures}");
                }
                next = Instant::now() + every;
            }
        }
    }
}

/// Writes every pending sample; `show` draws a progress bar (a back-fill's batch).
fn flush(archive: &mut Archive, show: bool) -> Figures {
    let bar = if show {
        progress(
            archive.pending_keys() as u64,
            "writing {bar:30} {pos}/{len} files, {eta} left",
        )
    } else {
        ProgressBar::hidden()
    };
    let figures = archive.flush(|key, result| {
        bar.inc(1);
        if let Err(e) = result {
            eprintln!("spud archive: {key}: {e}");
        }
    });
    bar.finish_and_clear();
    figures
}
