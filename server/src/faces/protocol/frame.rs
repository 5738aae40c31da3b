//! Lines in a byte stream. A line ends at `\n`; one `\r` before it is dropped, as the
//! original's `s/^(.+?)\r?\n//` did (so a lone `\r\n` is the line `\r`). An empty line is
//! skipped: in the original it wedged the connection.

/// The complete lines at the start of a buffer.
pub(crate) struct Lines<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Lines<'a> {
        Lines { buf, pos: 0 }
    }

    /// Bytes taken by the lines returned so far; the rest is an incomplete line.
    pub(crate) fn consumed(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let rest = &self.buf[self.pos..];
            let end = memchr::memchr(b'\n', rest)?;
            self.pos += end + 1;
            let line = &rest[..end];
            match line {
                [] => continue,
                [.., b'\r'] if line.len() > 1 => return Some(&line[..line.len() - 1]),
                _ => return Some(line),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_the_original_and_skips_empty_lines() {
        let buf = b"get a\r\n\nset b c\n\r\n\r\r\nx\r\r\npartial";
        let mut lines = Lines::new(buf);
        let got: Vec<&[u8]> = lines.by_ref().collect();
        assert_eq!(got, [&b"get a"[..], b"set b c", b"\r", b"\r", b"x\r"]);
        assert_eq!(&buf[lines.consumed()..], b"partial");
    }
}
