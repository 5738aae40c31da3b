//! Newline-delimited input over TCP (Graphite plaintext, StatsD over TCP): an accept loop
//! with a bound on connections, and a line splitter with a bound on line length, both
//! looking at the job's stop flag between reads.

use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::kit::access::Allow;
use crate::kit::intake::Intake;
use crate::kit::listen::POLL;
use crate::Host;

/// Bounds on one TCP line listener.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Connections served at once; more are closed at once (counted as dropped).
    pub connections: usize,
    /// The longest line taken, in bytes; a longer one is bad input, skipped to its end.
    pub line: usize,
}

/// Accepts connections on `listener` until the job is asked to stop, serving each from a
/// source `allow` permits on a thread of its own (others are closed at once, refused): every complete line goes to `take` (without its line ending, a `\r`
/// before the `\n` removed), which says how many items it took from it (added to the
/// intake's `received` once per read, not per line). Returns when the job stops and every
/// connection has ended.
pub fn serve(
    listener: &TcpListener,
    host: &Host,
    intake: &Intake,
    bounds: Bounds,
    allow: &Allow,
    take: &(impl Fn(&[u8]) -> u64 + Sync),
) {
    let open = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        while !host.stop_requested(Duration::ZERO) {
            let stream = match listener.accept() {
                Ok((_, peer)) if !allow.admits(peer, intake) => continue,
                Ok((stream, _)) => stream,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue
                }
                Err(e) => {
                    intake.bad("accept failed", e);
                    std::thread::sleep(POLL);
                    continue;
                }
            };
            if open.load(Ordering::Relaxed) >= bounds.connections {
                intake.dropped(
                    1,
                    "connection refused",
                    format_args!(
                        "{} connections are open already (the bound)",
                        bounds.connections
                    ),
                );
                continue;
            }
            open.fetch_add(1, Ordering::Relaxed);
            let open = Arc::clone(&open);
            scope.spawn(move || {
                read_lines(stream, host, intake, bounds.line, take);
                open.fetch_sub(1, Ordering::Relaxed);
            });
        }
    });
}

fn read_lines(
    mut stream: TcpStream,
    host: &Host,
    intake: &Intake,
    max: usize,
    take: &dyn Fn(&[u8]) -> u64,
) {
    if stream.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let mut splitter = Splitter::new(max);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let mut taken = 0;
                splitter.push(&buf[..n], |line| match line {
                    Ok(line) => taken += take(line),
                    Err(TooLong(len)) => intake.bad(
                        "line too long",
                        format_args!(
                            "a line of {len} bytes or more (the bound is {max}) was skipped"
                        ),
                    ),
                });
                intake.received(taken);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if host.stop_requested(Duration::ZERO) {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    // A last line without its newline still counts: the sender has finished it.
    splitter.finish(|line| {
        if let Ok(line) = line {
            intake.received(take(line));
        }
    });
}

/// A line longer than the bound; how many bytes of it were seen.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLong(pub usize);

/// Splits a byte stream into lines, keeping at most `max` bytes of an unfinished one.
pub struct Splitter {
    max: usize,
    partial: Vec<u8>,
    /// Bytes of an over-long line skipped so far (its end not yet seen).
    skipping: Option<usize>,
}

impl Splitter {
    /// A splitter for lines of up to `max` bytes.
    pub fn new(max: usize) -> Splitter {
        Splitter {
            max,
            partial: Vec::new(),
            skipping: None,
        }
    }

    /// Feeds `bytes`; calls `line` for every line they complete.
    pub fn push(&mut self, mut bytes: &[u8], mut line: impl FnMut(Result<&[u8], TooLong>)) {
        while let Some(end) = memchr::memchr(b'\n', bytes) {
            let piece = &bytes[..end];
            bytes = &bytes[end + 1..];
            if let Some(seen) = self.skipping.take() {
                line(Err(TooLong(seen + piece.len())));
            } else if self.partial.is_empty() {
                if piece.len() > self.max {
                    line(Err(TooLong(piece.len())));
                } else {
                    line(Ok(trim_cr(piece)));
                }
            } else {
                self.partial.extend_from_slice(piece);
                if self.partial.len() > self.max {
                    line(Err(TooLong(self.partial.len())));
                } else {
                    line(Ok(trim_cr(&self.partial)));
                }
                self.partial.clear();
            }
        }
        if let Some(seen) = &mut self.skipping {
            *seen += bytes.len();
        } else if self.partial.len() + bytes.len() > self.max {
            self.skipping = Some(self.partial.len() + bytes.len());
            self.partial = Vec::new();
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }

    /// The unfinished line at the end of the stream, if any.
    pub fn finish(&mut self, mut line: impl FnMut(Result<&[u8], TooLong>)) {
        if let Some(seen) = self.skipping.take() {
            line(Err(TooLong(seen)));
        } else if !self.partial.is_empty() {
            line(Ok(trim_cr(&self.partial)));
            self.partial.clear();
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<Result<String, TooLong>> {
        let mut s = Splitter::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            s.push(chunk, |l| {
                out.push(l.map(|b| String::from_utf8_lossy(b).into_owned()))
            });
        }
        s.finish(|l| out.push(l.map(|b| String::from_utf8_lossy(b).into_owned())));
        out
    }

    #[test]
    fn lines_across_reads() {
        assert_eq!(
            split(100, &[b"a 1\nb ", b"2\r\nc", b" 3"]),
            vec![Ok("a 1".into()), Ok("b 2".into()), Ok("c 3".into())]
        );
    }

    #[test]
    fn an_over_long_line_is_skipped_to_its_end_and_bounded_in_memory() {
        let long = vec![b'x'; 50];
        let out = split(10, &[b"ok\n", &long, &long, b"\nafter\n"]);
        assert_eq!(
            out,
            vec![Ok("ok".into()), Err(TooLong(100)), Ok("after".into())]
        );
    }
}
