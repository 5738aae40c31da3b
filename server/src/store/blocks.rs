//! Where a shard's histories live: their blocks end to end in one buffer per shard.
//!
//! A heap allocation per key lost a fifth of the memory to holes: a history grows again
//! and again while it fills, and every growth left its old allocation behind, too small for
//! any later one. Here a block that grows moves to the end of its shard's buffer and its
//! old place counts as garbage; once garbage passes a 32nd of the buffer, the shard
//! packs its live blocks into a new buffer. No per-block allocator header either.
//!
//! The buffer is an anonymous mapping of its own rather than a `Vec`: a buffer let go goes
//! back to the system at once, and pages past the end are never touched, where the
//! allocator would keep large freed buffers as holes in its heap.

use memmap2::{Advice, MmapMut, MmapOptions};

/// One shard's blocks.
pub(crate) struct Blocks {
    /// Its first `len` bytes are blocks and garbage; the rest has never been touched.
    buf: MmapMut,
    len: usize,
    /// Bytes of `buf[..len]` no block owns any more.
    garbage: usize,
}

impl Default for Blocks {
    fn default() -> Blocks {
        Blocks {
            buf: map(PAGE),
            len: 0,
            garbage: 0,
        }
    }
}

const PAGE: usize = 4096;

/// A new mapping of at least `bytes`.
fn map(bytes: usize) -> MmapMut {
    let buf = MmapOptions::new()
        .len(bytes.max(1).next_multiple_of(PAGE))
        .map_anon()
        .expect("memory for a shard's histories");
    // Pages are filled one at a time as blocks are added; a huge page would be resident
    // whole. A kernel without huge pages refuses the advice, which changes nothing.
    let _ = buf.advise(Advice::NoHugePage);
    buf
}

/// One block's place in its shard's `Blocks`. Owned by one history; not `Clone`, so a
/// place is never shared. Eight bytes, as every key has one: blocks start at multiples of
/// eight, so a shard holds up to 32 GiB, a block up to 4 GiB.
pub(crate) struct Block {
    /// Where it starts, in units of `ALIGN` bytes.
    at: u32,
    size: u32,
}

const ALIGN: usize = 8;

/// Garbage below this is left alone, so that a small shard does not pack at every growth.
const PACK_FLOOR: usize = 4096;

impl Block {
    fn new(at: usize, size: usize) -> Block {
        debug_assert!(at.is_multiple_of(ALIGN) && size.is_multiple_of(ALIGN));
        Block {
            at: u32::try_from(at / ALIGN).expect("a shard's histories under 32 GiB"),
            size: u32::try_from(size).expect("a history under 4 GiB"),
        }
    }

    fn range(&self) -> std::ops::Range<usize> {
        let at = self.at as usize * ALIGN;
        at..at + self.size()
    }

    /// Its size: at least what was asked for, rounded up to a multiple of eight.
    pub(crate) fn size(&self) -> usize {
        self.size as usize
    }
}

impl Blocks {
    /// A new block of at least `size` zero bytes.
    pub(crate) fn alloc(&mut self, size: usize) -> Block {
        let size = size.next_multiple_of(ALIGN);
        let at = self.len;
        if at + size > self.buf.len() {
            let mut buf = map((at + size).max(2 * self.buf.len()));
            buf[..at].copy_from_slice(&self.buf[..at]);
            self.buf = buf;
        }
        // Past `len` a mapping has never been written: the new block is zero.
        self.len += size;
        Block::new(at, size)
    }

    pub(crate) fn bytes(&self, block: &Block) -> &[u8] {
        &self.buf[block.range()]
    }

    pub(crate) fn bytes_mut(&mut self, block: &Block) -> &mut [u8] {
        &mut self.buf[block.range()]
    }

    /// Moves `block` to a new place of at least `size` zero bytes, which `fill` fills from
    /// the old.
    pub(crate) fn reallocate(
        &mut self,
        block: &mut Block,
        size: usize,
        fill: impl FnOnce(&[u8], &mut [u8]),
    ) {
        let new = self.alloc(size);
        // The new place is at the end: after the old one.
        let (front, back) = self.buf.split_at_mut(new.range().start);
        fill(&front[block.range()], &mut back[..new.size()]);
        self.garbage += block.size();
        *block = new;
    }

    /// Whether enough garbage has piled up for `pack` to pay.
    pub(crate) fn wants_packing(&self) -> bool {
        self.garbage > PACK_FLOOR && self.garbage > self.len / 32
    }

    /// Copies every live block (all of them, given in any order) into a new buffer, with an
    /// eighth more room for growth (never touched unless used), and drops the old one.
    pub(crate) fn pack<'a>(&mut self, live: impl Iterator<Item = &'a mut Block>) {
        let bytes = self.len - self.garbage;
        let mut buf = map(bytes + bytes / 8);
        let mut len = 0;
        for block in live {
            buf[len..len + block.size()].copy_from_slice(self.bytes(block));
            *block = Block::new(len, block.size());
            len += block.size();
        }
        debug_assert_eq!(len, bytes, "every live block given");
        self.buf = buf;
        self.len = len;
        self.garbage = 0;
    }

    /// Bytes held, garbage included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moved_blocks_keep_their_bytes_and_packing_drops_the_garbage() {
        let mut blocks = Blocks::default();
        let mut all: Vec<Block> = (0..200u8)
            .map(|n| {
                let b = blocks.alloc(64);
                blocks.bytes_mut(&b).fill(n);
                b
            })
            .collect();
        for (n, b) in all.iter_mut().enumerate().step_by(2) {
            blocks.reallocate(b, 128, |old, new| new[..64].copy_from_slice(old));
            assert_eq!(blocks.bytes(b)[..64], [n as u8; 64]);
            assert_eq!(blocks.bytes(b)[64..], [0; 64]);
        }
        assert!(blocks.wants_packing());
        blocks.pack(all.iter_mut());
        assert!(!blocks.wants_packing());
        assert_eq!(blocks.len(), 100 * 64 + 100 * 128);
        for (n, b) in all.iter().enumerate() {
            assert_eq!(blocks.bytes(b)[..64], [n as u8; 64]);
        }
    }
}
