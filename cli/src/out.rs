//! Printing to standard output. A reader that went away (`spud get '*' | head -1`) ends
//! `spud` quietly, as it ends `grep`; any other write error is said once.

use std::io::Write;

/// Writes `lines` to standard output, one per line, and flushes. Exits the process on a
/// closed pipe (quietly, status 0) or another write error (status 74, EX_IOERR).
pub fn lines<I>(lines: I)
where
    I: IntoIterator,
    I::Item: std::fmt::Display,
{
    let mut out = std::io::stdout().lock();
    let written = lines
        .into_iter()
        .try_for_each(|line| writeln!(out, "{line}"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("spud: cannot write to standard output: {e}");
        std::process::exit(74);
    }
}
