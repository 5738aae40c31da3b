//! The last N samples of one key, bit-packed into one block that also holds the key.
//!
//! A block is a fixed header (the stream's bounds, the count, the state after the newest
//! sample), a label (the key), then records oldest first. Each record is coded against the
//! state the record before it left, the *cursor*: the time as the change of its step (a
//! fixed interval costs one bit), a decimal as the change of its mantissa at its scale,
//! anything else verbatim. The cursor in front of the oldest record is kept, in a few bytes,
//! just before it: dropping the oldest record decodes it and writes the cursor after it in
//! front of the next one, so nothing else moves.
//!
//! Typical samples cost one to three bytes; bytes freed at the front are reused before the
//! block grows (see `relayout` for by how much).

use crate::store::blocks::{Block, Blocks};
use crate::store::value::{Encoded, MAX_SCALE};

/// Samples of one key, with its label (the key) in front of them, in a block of its
/// shard's `Blocks`.
pub(crate) struct History {
    block: Block,
}

/// Where the fixed header ends and the label starts.
const HEADER: usize = 45;

/// The decoding state a record leaves behind.
#[derive(Clone, Copy, Default, Debug, PartialEq)]
struct Cursor {
    time: u64,
    /// The time step to this sample: the next step is predicted to be the same.
    step: i64,
    /// Decimal: the mantissa; Float: its bits; Text: its bytes' position (high 32 bits) and
    /// length (low 32), for the newest sample only.
    last: i64,
    kind: u8,
    /// The scale of the last decimal.
    scale: u8,
    /// The Rice parameters (in quarter bits) of the next time step's change and the next
    /// mantissa's change.
    time_k: u8,
    value_k: u8,
}

const DECIMAL: u8 = 0;
const FLOAT: u8 = 1;
const TEXT: u8 = 2;

/// The header, read and written whole.
#[derive(Clone, Copy)]
struct Header {
    /// Bit index where the stream ends.
    used_bits: usize,
    /// Bit index where the oldest record starts.
    head_bit: usize,
    label_len: usize,
    len: u16,
    /// Bytes of the cursor just before `head_bit`'s byte.
    base_len: usize,
    /// The state after the newest sample.
    tail: Cursor,
}

impl Header {
    // Bit positions take five bytes, the label's length four.
    fn read(block: &[u8]) -> Header {
        let int_at = |i: usize, n: usize| {
            let mut bytes = [0u8; 8];
            bytes[..n].copy_from_slice(&block[i..i + n]);
            u64::from_le_bytes(bytes)
        };
        Header {
            used_bits: int_at(0, 5) as usize,
            head_bit: int_at(5, 5) as usize,
            label_len: int_at(10, 4) as usize,
            len: int_at(14, 2) as u16,
            base_len: usize::from(block[16]),
            tail: Cursor {
                kind: block[17],
                scale: block[18],
                time_k: block[19],
                value_k: block[20],
                time: int_at(21, 8),
                step: int_at(29, 8) as i64,
                last: int_at(37, 8) as i64,
            },
        }
    }

    fn write(&self, block: &mut [u8]) {
        // A text's place is kept in 32 bits (see `Cursor::last`).
        assert!(self.used_bits >> 35 == 0, "a key's history under 4 GiB");
        let mut put = |i: usize, n: usize, v: u64| {
            debug_assert!(n == 8 || v >> (8 * n) == 0);
            block[i..i + n].copy_from_slice(&v.to_le_bytes()[..n]);
        };
        put(0, 5, self.used_bits as u64);
        put(5, 5, self.head_bit as u64);
        put(10, 4, self.label_len as u64);
        put(14, 2, u64::from(self.len));
        put(16, 1, self.base_len as u64);
        let t = &self.tail;
        put(
            17,
            4,
            u64::from_le_bytes([t.kind, t.scale, t.time_k, t.value_k, 0, 0, 0, 0]),
        );
        put(21, 8, t.time);
        put(29, 8, t.step as u64);
        put(37, 8, t.last as u64);
    }

    fn area(&self) -> usize {
        HEADER + self.label_len
    }

    fn used_bytes(&self) -> usize {
        self.used_bits.div_ceil(8)
    }

    fn base_range(&self) -> std::ops::Range<usize> {
        let head = self.head_bit / 8;
        head - self.base_len..head
    }

    /// Moves everything from the stream's start on by `bytes`.
    fn shift(&mut self, bytes: isize) {
        let by = |at: usize, n: isize| at.checked_add_signed(n).expect("within the block");
        self.head_bit = by(self.head_bit, bytes * 8);
        self.used_bits = by(self.used_bits, bytes * 8);
        if self.tail.kind == TEXT {
            let (at, len) = text_at(self.tail.last);
            self.tail.last = text_last(by(at, bytes), len);
        }
    }
}

fn text_last(at: usize, len: usize) -> i64 {
    ((at as u64) << 32 | len as u64) as i64
}

fn text_at(last: i64) -> (usize, usize) {
    ((last as u64 >> 32) as usize, (last & 0xffff_ffff) as usize)
}

impl History {
    /// An empty history carrying `label` in the same block.
    pub(crate) fn new(blocks: &mut Blocks, label: &[u8]) -> History {
        let mut base = [0u8; MAX_CURSOR];
        let base_len = Cursor::default().save(&mut base);
        let area = HEADER + label.len();
        let block = blocks.alloc(area + base_len);
        let bytes = blocks.bytes_mut(&block);
        bytes[HEADER..area].copy_from_slice(label);
        bytes[area..area + base_len].copy_from_slice(&base[..base_len]);
        let end = (area + base_len) * 8;
        Header {
            used_bits: end,
            head_bit: end,
            label_len: label.len(),
            len: 0,
            base_len,
            tail: Cursor::default(),
        }
        .write(bytes);
        History { block }
    }

    /// Its samples, to read.
    pub(crate) fn samples<'a>(&self, blocks: &'a Blocks) -> Samples<'a> {
        Samples {
            block: blocks.bytes(&self.block),
        }
    }

    /// Its block's place, for its shard to move when it packs.
    pub(crate) fn block_mut(&mut self) -> &mut Block {
        &mut self.block
    }

    /// Appends a sample, dropping the oldest ones beyond `cap`.
    pub(crate) fn push(&mut self, blocks: &mut Blocks, time: u64, value: Encoded<'_>, cap: usize) {
        let cap = cap.max(1);
        let mut h = Header::read(blocks.bytes(&self.block));
        if h.len == 0 {
            // The first sample sets the cursor, so that it and the next ones are coded
            // against themselves, not against zero.
            let first = Cursor::predicting(time, value);
            let mut base = [0u8; MAX_CURSOR];
            let n = first.save(&mut base);
            let head = h.head_bit;
            self.relayout(blocks, &mut h, &base[..n], head, 0, cap);
            h.tail = first;
        }
        // The record is coded aside first, at the same bit offset, so that the block
        // grows by exactly what it takes.
        let mut stack = [0u8; 64];
        let mut heap = Vec::new();
        let scratch: &mut [u8] = match value {
            Encoded::Text(t) if t.len() > 32 => {
                heap.resize(t.len() + 32, 0);
                &mut heap
            }
            _ => &mut stack,
        };
        let offset = h.used_bits % 8;
        let mut w = BitWriter {
            buf: scratch,
            at: offset,
        };
        let mut tail = h.tail;
        encode(&mut w, &mut tail, time, value);
        let (end, len) = (w.at, w.at.div_ceil(8));
        self.make_room(blocks, &mut h, len - usize::from(offset > 0), cap);
        let first = h.used_bits / 8;
        for (to, from) in blocks.bytes_mut(&self.block)[first..first + len]
            .iter_mut()
            .zip(&scratch[..len])
        {
            *to |= from;
        }
        if tail.kind == TEXT {
            let (at, len) = text_at(tail.last);
            tail.last = text_last(first + at, len);
        }
        h.tail = tail;
        h.used_bits += end - offset;
        h.len += 1;
        while usize::from(h.len) > cap {
            self.drop_oldest(blocks, &mut h, cap);
        }
        h.write(blocks.bytes_mut(&self.block));
    }

    fn drop_oldest(&mut self, blocks: &mut Blocks, h: &mut Header, cap: usize) {
        let block = blocks.bytes_mut(&self.block);
        let mut cursor = Cursor::load(&block[h.base_range()]);
        let mut r = BitReader {
            buf: block,
            at: h.head_bit,
        };
        decode(&mut r, &mut cursor);
        let head_bit = r.at;
        h.len -= 1;
        let mut base = [0u8; MAX_CURSOR];
        let n = cursor.save(&mut base);
        let head = head_bit / 8;
        if head >= h.area() + n {
            // The usual case: the cursor goes where the dropped record was.
            block[head - n..head].copy_from_slice(&base[..n]);
            h.head_bit = head_bit;
            h.base_len = n;
        } else {
            self.relayout(blocks, h, &base[..n], head_bit, 0, cap);
        }
    }

    /// Makes room for `need` more bytes at the end: first by moving the live bytes over the
    /// dead ones in front, then by growing.
    fn make_room(&mut self, blocks: &mut Blocks, h: &mut Header, need: usize, cap: usize) {
        if self.block.size() - h.used_bytes() >= need {
            return;
        }
        let mut base = [0u8; MAX_CURSOR];
        base[..h.base_len].copy_from_slice(&blocks.bytes(&self.block)[h.base_range()]);
        let head = h.head_bit;
        self.relayout(blocks, h, &base[..h.base_len], head, need, cap);
    }

    /// Lays the block out again as header, label, `base`, the stream from `from_bit` on and
    /// at least `need` free bytes; in a new place only when the block is too small, or more
    /// than twice the size it needs.
    ///
    /// A full history grows by a 32nd of what it holds. One still filling grows to the
    /// size its samples so far say it will have when full, at most doubling: a block that
    /// moves leaves garbage behind, so it should move only a few times.
    fn relayout(
        &mut self,
        blocks: &mut Blocks,
        h: &mut Header,
        base: &[u8],
        from_bit: usize,
        need: usize,
        cap: usize,
    ) {
        let area = h.area();
        let from = from_bit / 8;
        let used = h.used_bytes();
        let start = area + base.len();
        let end = start + (used - from);
        let mut want = end + need + (end - area) / 32;
        let len = usize::from(h.len);
        if (1..cap).contains(&len) {
            // `need` is the record being added: `len + 1` records then.
            let full = start + (end + need - start) * cap / (len + 1);
            want = want.max(full.min(2 * want));
        }
        let size = self.block.size();
        if size >= end + need && size <= 2 * want {
            let block = blocks.bytes_mut(&self.block);
            block.copy_within(from..used, start);
            block[area..start].copy_from_slice(base);
            block[end..].fill(0);
        } else {
            blocks.reallocate(&mut self.block, want, |old, new| {
                new[..area].copy_from_slice(&old[..area]);
                new[area..start].copy_from_slice(base);
                new[start..end].copy_from_slice(&old[from..used]);
            });
        }
        h.head_bit = from_bit;
        h.base_len = base.len();
        h.shift(start as isize - from as isize);
    }

    /// Bytes held, for memory accounting.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.block.size()
    }
}

/// One history's samples, to read.
#[derive(Clone, Copy)]
pub(crate) struct Samples<'a> {
    block: &'a [u8],
}

impl<'a> Samples<'a> {
    /// A history's block as `bytes` returned it, wherever it was copied to.
    pub(crate) fn from_bytes(block: &'a [u8]) -> Samples<'a> {
        Samples { block }
    }

    /// The whole block: a copy of it reads as the history does.
    pub(crate) fn bytes(self) -> &'a [u8] {
        self.block
    }

    /// The label given to `History::new`.
    pub(crate) fn label(self) -> &'a [u8] {
        let len = u32::from_le_bytes(self.block[10..14].try_into().expect("4")) as usize;
        &self.block[HEADER..HEADER + len]
    }

    pub(crate) fn len(self) -> usize {
        usize::from(Header::read(self.block).len)
    }

    /// The newest sample, without walking the others.
    pub(crate) fn newest(self) -> Option<(u64, Encoded<'a>)> {
        let h = Header::read(self.block);
        if h.len == 0 {
            return None;
        }
        let t = h.tail;
        let value = match t.kind {
            DECIMAL => Encoded::Decimal {
                mantissa: t.last,
                scale: t.scale,
            },
            FLOAT => Encoded::Float(f64::from_bits(t.last as u64)),
            _ => {
                let (at, len) = text_at(t.last);
                Encoded::Text(&self.block[at..at + len])
            }
        };
        Some((t.time, value))
    }

    /// Every sample, oldest first.
    pub(crate) fn oldest_first(self) -> impl Iterator<Item = (u64, Encoded<'a>)> {
        let h = Header::read(self.block);
        let mut cursor = Cursor::load(&self.block[h.base_range()]);
        let mut r = BitReader {
            buf: self.block,
            at: h.head_bit,
        };
        (0..h.len).map(move |_| {
            let value = decode(&mut r, &mut cursor);
            (cursor.time, value)
        })
    }

    /// Every sample, newest first (the protocol's order).
    pub(crate) fn newest_first(self) -> Vec<(u64, Encoded<'a>)> {
        let mut all: Vec<_> = self.oldest_first().collect();
        all.reverse();
        all
    }
}

// Value codes: `0` a decimal at the last scale; `1` and three bits, a decimal at that scale
// (0–6); `1 111` then two bits: a decimal with its scale in five bits, a float, a text.
const SCALE_BITS: u32 = 3;
const ESCAPE: u64 = 7;
const ESCAPED_DECIMAL: u64 = 0;
const ESCAPED_FLOAT: u64 = 1;
const ESCAPED_TEXT: u64 = 2;

fn encode(w: &mut BitWriter<'_>, c: &mut Cursor, time: u64, value: Encoded<'_>) {
    let step = time.wrapping_sub(c.time) as i64;
    put_int(w, step.wrapping_sub(c.step), &mut c.time_k);
    c.time = time;
    c.step = step;
    match value {
        Encoded::Decimal { mantissa, scale } => {
            if scale == c.scale {
                w.put(0, 1);
            } else if u64::from(scale) < ESCAPE {
                w.put(1, 1);
                w.put(u64::from(scale), SCALE_BITS);
            } else {
                w.put(1, 1);
                w.put(ESCAPE, SCALE_BITS);
                w.put(ESCAPED_DECIMAL, 2);
                w.put(u64::from(scale), 5);
            }
            let predicted = if c.kind == DECIMAL { c.last } else { 0 };
            put_int(w, mantissa.wrapping_sub(predicted), &mut c.value_k);
            c.kind = DECIMAL;
            c.scale = scale;
            c.last = mantissa;
        }
        Encoded::Float(f) => {
            w.put(1, 1);
            w.put(ESCAPE, SCALE_BITS);
            w.put(ESCAPED_FLOAT, 2);
            w.put(f.to_bits(), 64);
            c.kind = FLOAT;
            c.last = f.to_bits() as i64;
        }
        Encoded::Text(text) => {
            w.put(1, 1);
            w.put(ESCAPE, SCALE_BITS);
            w.put(ESCAPED_TEXT, 2);
            if text.len() < 16 {
                w.put(0, 1);
                w.put(text.len() as u64, 4);
            } else {
                w.put(1, 1);
                w.put(text.len() as u64, 32);
            }
            let at = w.put_bytes(text);
            c.kind = TEXT;
            c.last = text_last(at, text.len());
        }
    }
}

fn decode<'a>(r: &mut BitReader<'a>, c: &mut Cursor) -> Encoded<'a> {
    let dod = get_int(r, &mut c.time_k);
    c.step = c.step.wrapping_add(dod);
    c.time = c.time.wrapping_add(c.step as u64);
    let scale = if r.get(1) == 0 {
        c.scale
    } else {
        match r.get(SCALE_BITS) {
            ESCAPE => match r.get(2) {
                ESCAPED_DECIMAL => r.get(5) as u8,
                ESCAPED_FLOAT => {
                    let bits = r.get(64);
                    c.kind = FLOAT;
                    c.last = bits as i64;
                    return Encoded::Float(f64::from_bits(bits));
                }
                _ => {
                    let len = if r.get(1) == 0 { r.get(4) } else { r.get(32) } as usize;
                    let (at, text) = r.get_bytes(len);
                    c.kind = TEXT;
                    c.last = text_last(at, len);
                    return Encoded::Text(text);
                }
            },
            scale => scale as u8,
        }
    };
    debug_assert!(scale <= MAX_SCALE);
    let predicted = if c.kind == DECIMAL { c.last } else { 0 };
    let mantissa = predicted.wrapping_add(get_int(r, &mut c.value_k));
    c.kind = DECIMAL;
    c.scale = scale;
    c.last = mantissa;
    Encoded::Decimal { mantissa, scale }
}

/// A run of this many ones escapes a Rice code to an explicit width.
const ESCAPE_RUN: u32 = 20;

/// An integer as a Rice code whose parameter follows the integers' size: the zigzag
/// form's low `k` bits after the rest in unary (`0` is one bit when `k` is 0). `k` is kept
/// in quarter bits (`quarters`) and moves halfway to each integer's width, so a run of zeros
/// (a fixed interval) soon costs a bit each, and a jump costs a few bits more once.
fn put_int(w: &mut BitWriter<'_>, v: i64, quarters: &mut u8) {
    let z = zigzag(v);
    let k = u32::from(*quarters / 4);
    let q = z >> k;
    if q < u64::from(ESCAPE_RUN) {
        let q = q as u32;
        w.put((1 << q) - 1, q + 1);
        w.put(z, k);
    } else {
        let bits = 64 - z.leading_zeros();
        w.put((1 << ESCAPE_RUN) - 1, ESCAPE_RUN);
        w.put(u64::from(bits - 1), 6);
        w.put(z, bits);
    }
    *quarters = next_quarters(*quarters, z);
}

fn get_int(r: &mut BitReader<'_>, quarters: &mut u8) -> i64 {
    let k = u32::from(*quarters / 4);
    let mut q = 0;
    while q < ESCAPE_RUN && r.get(1) == 1 {
        q += 1;
    }
    let z = if q < ESCAPE_RUN {
        u64::from(q) << k | r.get(k)
    } else {
        let bits = r.get(6) as u32 + 1;
        r.get(bits)
    };
    *quarters = next_quarters(*quarters, z);
    unzigzag(z)
}

/// Halfway from `quarters` to `z`'s width (in quarter bits), at most 58 bits.
fn next_quarters(quarters: u8, z: u64) -> u8 {
    let width = 64 - z.leading_zeros() as u16;
    ((u16::from(quarters) + width * 4) / 2).min(58 * 4) as u8
}

/// Bits appended to a buffer whose bytes from `at` on are zero, least significant first.
struct BitWriter<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl BitWriter<'_> {
    fn put(&mut self, mut value: u64, mut bits: u32) {
        while bits > 0 {
            let offset = (self.at % 8) as u32;
            let take = (8 - offset).min(bits);
            self.buf[self.at / 8] |= ((value & ((1 << take) - 1)) << offset) as u8;
            value = value.checked_shr(take).unwrap_or(0);
            bits -= take;
            self.at += take as usize;
        }
    }

    /// Writes `bytes` from the next whole byte; returns where they start.
    fn put_bytes(&mut self, bytes: &[u8]) -> usize {
        let at = self.at.div_ceil(8);
        self.buf[at..at + bytes.len()].copy_from_slice(bytes);
        self.at = (at + bytes.len()) * 8;
        at
    }
}

struct BitReader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> BitReader<'a> {
    fn get(&mut self, mut bits: u32) -> u64 {
        let mut value = 0u64;
        let mut shift = 0;
        while bits > 0 {
            let offset = (self.at % 8) as u32;
            let take = (8 - offset).min(bits);
            let part = u64::from(self.buf[self.at / 8] >> offset) & ((1 << take) - 1);
            value |= part << shift;
            shift += take;
            bits -= take;
            self.at += take as usize;
        }
        value
    }

    fn get_bytes(&mut self, len: usize) -> (usize, &'a [u8]) {
        let at = self.at.div_ceil(8);
        self.at = (at + len) * 8;
        (at, &self.buf[at..at + len])
    }
}

/// The most bytes a saved cursor takes.
const MAX_CURSOR: usize = 3 * 10 + 3;

impl Cursor {
    /// A cursor that predicts `value` at `time`.
    fn predicting(time: u64, value: Encoded<'_>) -> Cursor {
        let (kind, scale, last) = match value {
            Encoded::Decimal { mantissa, scale } => (DECIMAL, scale, mantissa),
            Encoded::Float(f) => (FLOAT, 0, f.to_bits() as i64),
            Encoded::Text(_) => (TEXT, 0, 0),
        };
        Cursor {
            time,
            kind,
            scale,
            last,
            ..Cursor::default()
        }
    }

    /// Writes the cursor as varints (a text's position is not kept: only the newest
    /// sample's is ever read); returns its length.
    fn save(&self, out: &mut [u8; MAX_CURSOR]) -> usize {
        let last = if self.kind == TEXT { 0 } else { self.last };
        let mut n = 0;
        for v in [self.time, zigzag(self.step), zigzag(last)] {
            n += put_varint(&mut out[n..], v);
        }
        out[n] = self.kind << 5 | self.scale;
        out[n + 1] = self.time_k;
        out[n + 2] = self.value_k;
        n + 3
    }

    fn load(bytes: &[u8]) -> Cursor {
        let (time, at) = get_varint(bytes, 0);
        let (step, at) = get_varint(bytes, at);
        let (last, at) = get_varint(bytes, at);
        Cursor {
            time,
            step: unzigzag(step),
            last: unzigzag(last),
            kind: bytes[at] >> 5,
            scale: bytes[at] & 0x1f,
            time_k: bytes[at + 1],
            value_k: bytes[at + 2],
        }
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut [u8], mut v: u64) -> usize {
    let mut n = 0;
    while v >= 0x80 {
        out[n] = v as u8 | 0x80;
        v >>= 7;
        n += 1;
    }
    out[n] = v as u8;
    n + 1
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
    use proptest::prelude::*;

    /// A history with blocks of its own.
    struct Solo {
        blocks: Blocks,
        history: History,
    }

    impl Solo {
        fn new(label: &[u8]) -> Solo {
            let mut blocks = Blocks::default();
            let history = History::new(&mut blocks, label);
            Solo { blocks, history }
        }

        fn push(&mut self, time: u64, value: Encoded<'_>, cap: usize) {
            self.history.push(&mut self.blocks, time, value, cap);
        }

        fn samples(&self) -> Samples<'_> {
            self.history.samples(&self.blocks)
        }

        fn capacity(&self) -> usize {
            self.history.capacity()
        }
    }

    fn text(v: Encoded<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        v.write_text(&mut out);
        out
    }

    fn texts(h: &Solo) -> Vec<(u64, String)> {
        h.samples()
            .newest_first()
            .into_iter()
            .map(|(t, v)| (t, String::from_utf8(text(v)).unwrap()))
            .collect()
    }

    #[test]
    fn keeps_newest_first_and_caps() {
        let mut h = Solo::new(b"some.key");
        for i in 0..250u64 {
            let text = format!("v{i}");
            h.push(1000 + i, Encoded::classify(text.as_bytes()), 100);
        }
        let all = texts(&h);
        assert_eq!(all.len(), 100);
        assert_eq!(all[0], (1249, "v249".to_string()));
        assert_eq!(all[99], (1150, "v150".to_string()));
        assert_eq!(h.samples().newest().map(|(t, _)| t), Some(1249));
        assert_eq!(h.samples().label(), b"some.key");
    }

    #[test]
    fn times_may_go_backwards_and_jump() {
        let mut h = Solo::new(b"k");
        let times = [5u64, 3, u64::MAX, 0, 1_700_000_000, 7];
        for (i, t) in times.iter().enumerate() {
            h.push(*t, Encoded::classify(i.to_string().as_bytes()), 4);
        }
        let got: Vec<u64> = h.samples().newest_first().iter().map(|(t, _)| *t).collect();
        assert_eq!(got, vec![7, 1_700_000_000, 0, u64::MAX]);
    }

    #[test]
    fn mixed_values_round_trip() {
        let mut h = Solo::new(b"");
        let vals: [&[u8]; 9] = [
            b"12",
            b"0.5",
            b"1.50",
            b"hello world ",
            b"\xff\r",
            b"",
            b"0.30000000000000004",
            b"-9223372036854775808",
            b"9223372036854775807",
        ];
        for (i, v) in vals.iter().enumerate() {
            h.push(i as u64, Encoded::classify(v), 100);
        }
        let got: Vec<Vec<u8>> = h.samples().oldest_first().map(|(_, v)| text(v)).collect();
        assert_eq!(got, vals.iter().map(|v| v.to_vec()).collect::<Vec<_>>());
    }

    #[test]
    fn long_texts_round_trip() {
        let mut h = Solo::new(b"k");
        let long: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for i in 0..5u64 {
            h.push(i, Encoded::Text(&long[i as usize..]), 3);
            h.push(i, Encoded::classify(b"1.5"), 3);
        }
        let got: Vec<Vec<u8>> = h.samples().oldest_first().map(|(_, v)| text(v)).collect();
        assert_eq!(
            got,
            vec![b"1.5".to_vec(), long[4..].to_vec(), b"1.5".to_vec()]
        );
        // Two such texts were live a moment before; what is freed is given back once the
        // block is over twice what it holds.
        assert!(h.capacity() < 220_000, "capacity {}", h.capacity());
    }

    /// A fixed interval and a counter growing by a constant: a byte or so a sample.
    #[test]
    fn steady_samples_cost_bits() {
        let mut h = Solo::new(b"k");
        for i in 0..10_000u64 {
            let v = (100_000 + 37 * i).to_string();
            h.push(1_700_000_000 + i * 5, Encoded::classify(v.as_bytes()), 100);
        }
        assert_eq!(h.samples().len(), 100);
        // Ten bits a sample: the step's change (one bit), the same scale (one), the
        // mantissa's change (eight); the cursor in front; room for one more record.
        assert!(
            h.capacity() <= HEADER + 1 + 100 * 10 / 8 + MAX_CURSOR + 24,
            "capacity {}",
            h.capacity()
        );
    }

    /// 2-decimal gauges walking at random: under three bytes a sample.
    #[test]
    fn gauges_cost_bytes() {
        let mut rng = 7u64;
        let mut gauge = 50_000i64;
        let mut h = Solo::new(b"k");
        for i in 0..1000u64 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            gauge += (rng >> 33) as i64 % 1000 - 500;
            let v = format!("{}.{:02}", gauge / 100, (gauge % 100).abs());
            h.push(1_700_000_000 + i * 10, Encoded::classify(v.as_bytes()), 100);
        }
        assert!(
            h.capacity() <= HEADER + 1 + 300,
            "capacity {}",
            h.capacity()
        );
    }

    /// Numbers in every textual form, words and bytes.
    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            any::<i64>().prop_map(|i| i.to_string().into_bytes()),
            (-100_000i64..100_000, 0u32..8).prop_map(|(m, s)| {
                let v = m as f64 / 10f64.powi(s as i32);
                format!("{v:.prec$}", prec = s as usize).into_bytes()
            }),
            any::<f64>().prop_map(|f| f.to_string().into_bytes()),
            any::<f64>().prop_map(|f| format!("{f:e}").into_bytes()),
            "[-+]?[0-9]{0,25}(\\.[0-9]{0,25})?([eE][-+]?[0-9]{1,3})?".prop_map(String::into_bytes),
            prop::sample::select(vec!["up", "down", "-0", "007", "", "NaN"])
                .prop_map(|s| s.as_bytes().to_vec()),
            prop::collection::vec(any::<u8>(), 0..40),
        ]
    }

    /// Equal, decreasing, near and far times.
    fn times() -> impl Strategy<Value = Vec<u64>> {
        prop::collection::vec(
            prop_oneof![
                Just(0i64),
                Just(10),
                -3i64..3,
                any::<i64>(),
                -1_000_000i64..1_000_000
            ],
            1..300,
        )
        .prop_map(|steps| {
            let mut t = 1_700_000_000u64;
            steps
                .into_iter()
                .map(|s| {
                    t = t.wrapping_add(s as u64);
                    t
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn any_samples_round_trip_exactly(
            times in times(),
            values in prop::collection::vec(value(), 300),
            cap in 1usize..130,
        ) {
            let mut h = Solo::new(b"a.key");
            let mut want: Vec<(u64, Vec<u8>)> = Vec::new();
            for (t, v) in times.iter().zip(&values) {
                let e = Encoded::classify(v);
                prop_assert_eq!(text(e), v.clone());
                h.push(*t, e, cap);
                want.push((*t, v.clone()));
                let keep = want.len().saturating_sub(cap);
                let got: Vec<(u64, Vec<u8>)> =
                    h.samples().oldest_first().map(|(t, v)| (t, text(v))).collect();
                prop_assert_eq!(&got[..], &want[keep..]);
                let (t, v) = h.samples().newest().unwrap();
                prop_assert_eq!((t, text(v)), want.last().cloned().unwrap());
                let numbers: Vec<Option<f64>> = h.samples().oldest_first().map(|(_, v)| v.number()).collect();
                for (n, (_, v)) in numbers.iter().zip(&want[keep..]) {
                    let parsed = crate::store::value::parse_number(v);
                    prop_assert_eq!(n.map(f64::to_bits), parsed.map(f64::to_bits));
                }
            }
            prop_assert_eq!(h.samples().label(), b"a.key");
        }
    }
}
