//! The last N samples of one key, packed into one byte buffer.
//!
//! A hundred `(time, value)` pairs as separate allocations cost kilobytes per key; packed,
//! a typical numeric sample costs five bytes. Each record is
//! `[time delta: zigzag varint][tag: u8][payload]`, oldest first; the time delta is from the
//! record before it (the oldest record's time is kept aside), so one-second steps cost one byte.

use crate::value::Encoded;

const TAG_INT: u8 = 0;
const TAG_FLOAT: u8 = 1;
const TAG_TEXT: u8 = 2;
const TAG_NUM_TEXT: u8 = 3;

/// Samples of one key, oldest first in `buf[head..]`.
#[derive(Clone, Default)]
pub(crate) struct History {
    buf: Vec<u8>,
    /// Where the oldest live record starts; bytes before it are dead.
    head: u32,
    /// Where the newest record starts.
    newest_at: u32,
    len: u16,
    oldest_time: u64,
    newest_time: u64,
}

impl History {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// Appends a sample, dropping the oldest ones beyond `cap`.
    pub(crate) fn push(&mut self, time: u64, value: Encoded<'_>, cap: usize) {
        let delta = if self.len == 0 {
            self.oldest_time = time;
            0
        } else {
            time.wrapping_sub(self.newest_time) as i64
        };
        self.newest_time = time;
        self.make_room(record_len(value));
        self.newest_at = self.buf.len() as u32;
        put_varint(&mut self.buf, zigzag(delta));
        match value {
            Encoded::Int(i) => {
                self.buf.push(TAG_INT);
                put_varint(&mut self.buf, zigzag(i));
            }
            Encoded::Float(f) => {
                self.buf.push(TAG_FLOAT);
                self.buf.extend_from_slice(&f.to_le_bytes());
            }
            Encoded::NumText(f, text) => {
                self.buf.push(TAG_NUM_TEXT);
                self.buf.extend_from_slice(&f.to_le_bytes());
                put_varint(&mut self.buf, text.len() as u64);
                self.buf.extend_from_slice(text);
            }
            Encoded::Text(text) => {
                self.buf.push(TAG_TEXT);
                put_varint(&mut self.buf, text.len() as u64);
                self.buf.extend_from_slice(text);
            }
        }
        self.len += 1;
        while self.len as usize > cap.max(1) {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        let (_, _, next) = decode(&self.buf, self.head as usize);
        self.head = next as u32;
        self.len -= 1;
        if self.len > 0 {
            let (delta, _) = get_varint(&self.buf, next);
            self.oldest_time = self.oldest_time.wrapping_add(unzigzag(delta) as u64);
        }
    }

    /// Makes room for `need` more bytes without `Vec`'s doubling: first by dropping the
    /// dead bytes before the oldest record, then by growing to what is live plus an eighth
    /// (at least 16 bytes). A key's buffer so stays within an eighth of what it holds, and
    /// the copy that reclaims dead bytes happens once per eighth of the buffer written.
    fn make_room(&mut self, need: usize) {
        if self.buf.capacity() - self.buf.len() >= need {
            return;
        }
        if self.head > 0 {
            let head = self.head as usize;
            self.buf.drain(..head);
            self.newest_at = self.newest_at.saturating_sub(head as u32);
            self.head = 0;
        }
        let live = self.buf.len();
        let want = live + need + (live / 8).max(16);
        if self.buf.capacity() < live + need {
            self.buf.reserve_exact(want - live);
        } else if self.buf.capacity() > 2 * want {
            // A key whose records got smaller gives memory back.
            self.buf.shrink_to(want);
        }
    }

    /// The newest sample, without walking the others.
    pub(crate) fn newest(&self) -> Option<(u64, Encoded<'_>)> {
        if self.len == 0 {
            return None;
        }
        let (_, value, _) = decode(&self.buf, self.newest_at as usize);
        Some((self.newest_time, value))
    }

    /// Every sample, oldest first.
    pub(crate) fn oldest_first(&self) -> impl Iterator<Item = (u64, Encoded<'_>)> + '_ {
        let mut at = self.head as usize;
        let mut time = self.oldest_time;
        let mut first = true;
        (0..self.len).map(move |_| {
            let (delta, value, next) = decode(&self.buf, at);
            if !first {
                time = time.wrapping_add(delta as u64);
            }
            first = false;
            at = next;
            (time, value)
        })
    }

    /// Every sample, newest first (the protocol's order).
    pub(crate) fn newest_first(&self) -> Vec<(u64, Encoded<'_>)> {
        let mut all: Vec<_> = self.oldest_first().collect();
        all.reverse();
        all
    }

    /// Bytes held, for memory accounting.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

/// Bytes `value`'s record takes at most: a time delta (10), a tag (1), then the payload.
fn record_len(value: Encoded<'_>) -> usize {
    11 + match value {
        Encoded::Int(_) => 10,
        Encoded::Float(_) => 8,
        Encoded::NumText(_, t) => 8 + 10 + t.len(),
        Encoded::Text(t) => 10 + t.len(),
    }
}

/// Decodes the record at `at`: (time delta, value, where the next record starts).
fn decode(buf: &[u8], at: usize) -> (i64, Encoded<'_>, usize) {
    let (delta, mut i) = get_varint(buf, at);
    let tag = buf[i];
    i += 1;
    let value = match tag {
        TAG_INT => {
            let (v, next) = get_varint(buf, i);
            i = next;
            Encoded::Int(unzigzag(v))
        }
        TAG_FLOAT => {
            let f = f64::from_le_bytes(buf[i..i + 8].try_into().expect("8 bytes"));
            i += 8;
            Encoded::Float(f)
        }
        TAG_NUM_TEXT => {
            let f = f64::from_le_bytes(buf[i..i + 8].try_into().expect("8 bytes"));
            let (n, start) = get_varint(buf, i + 8);
            i = start + n as usize;
            Encoded::NumText(f, &buf[start..i])
        }
        _ => {
            let (n, start) = get_varint(buf, i);
            i = start + n as usize;
            Encoded::Text(&buf[start..i])
        }
    };
    (unzigzag(delta), value, i)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn get_varint(buf: &[u8], mut at: usize) -> (u64, usize) {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = buf[at];
        at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return (v, at);
        }
        shift += 7;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(h: &History) -> Vec<(u64, String)> {
        h.newest_first()
            .into_iter()
            .map(|(t, v)| {
                let mut out = Vec::new();
                v.write_text(&mut out);
                (t, String::from_utf8(out).unwrap())
            })
            .collect()
    }

    #[test]
    fn keeps_newest_first_and_caps() {
        let mut h = History::default();
        for i in 0..250u64 {
            let text = format!("v{i}");
            h.push(1000 + i, Encoded::classify(text.as_bytes()), 100);
        }
        let all = texts(&h);
        assert_eq!(all.len(), 100);
        assert_eq!(all[0], (1249, "v249".to_string()));
        assert_eq!(all[99], (1150, "v150".to_string()));
        assert_eq!(h.newest().map(|(t, _)| t), Some(1249));
    }

    #[test]
    fn times_may_go_backwards_and_jump() {
        let mut h = History::default();
        let times = [5u64, 3, u64::MAX, 0, 1_700_000_000, 7];
        for (i, t) in times.iter().enumerate() {
            h.push(*t, Encoded::Int(i as i64), 4);
        }
        let got: Vec<u64> = h.newest_first().iter().map(|(t, _)| *t).collect();
        assert_eq!(got, vec![7, 1_700_000_000, 0, u64::MAX]);
    }

    #[test]
    fn mixed_values_round_trip() {
        let mut h = History::default();
        let vals: [&[u8]; 6] = [b"12", b"0.5", b"1.50", b"hello world ", b"\xff\r", b""];
        for (i, v) in vals.iter().enumerate() {
            h.push(i as u64, Encoded::classify(v), 100);
        }
        let got: Vec<Vec<u8>> = h
            .oldest_first()
            .map(|(_, v)| {
                let mut out = Vec::new();
                v.write_text(&mut out);
                out
            })
            .collect();
        assert_eq!(got, vals.iter().map(|v| v.to_vec()).collect::<Vec<_>>());
    }

    #[test]
    fn numeric_history_is_compact() {
        let mut h = History::default();
        for i in 0..10_000u64 {
            h.push(1_700_000_000 + i * 5, Encoded::Int(100_000 + i as i64), 100);
        }
        assert_eq!(h.len(), 100);
        // 100 records of 5 bytes: an eighth of slack and one record's room at most, not
        // the doubling of a `Vec`.
        assert!(h.capacity() <= 600, "capacity {}", h.capacity());
    }
}
