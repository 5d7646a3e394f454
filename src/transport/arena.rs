//! A receive arena: received datagrams become `Bytes` of exactly their size without one heap
//! allocation each. Each datagram is copied into the tail of a large [`BytesMut`] and split off
//! (`split().freeze()`: a slice of the shared block, no copy, no allocation). A new block is
//! allocated only when the current one is full; once every `Bytes` cut from a block is dropped,
//! `reserve` takes the block back (bytes' in-place reclaim), so a steady load reuses the same block.
//!
//! The cost: a `Bytes` kept long (a transaction's request) keeps its whole block alive; blocks are
//! [`ARENA_BLOCK`] bytes, so that is bounded by the block size, and blocks fill densely.

use bytes::{Bytes, BytesMut};

/// Size of one arena block: about a hundred typical SIP datagrams.
pub const ARENA_BLOCK: usize = 64 * 1024;

/// See the module docs.
#[derive(Debug)]
pub struct Arena {
    block: BytesMut,
    /// Address of the current block's first byte (to tell a reclaimed block from a new one).
    base: usize,
    /// Blocks allocated so far (for tests and statistics).
    allocations: u64,
}

impl Default for Arena {
    fn default() -> Self {
        Arena::new()
    }
}

impl Arena {
    /// An arena with one block allocated.
    pub fn new() -> Arena {
        let block = BytesMut::with_capacity(ARENA_BLOCK);
        let base = block.as_ptr() as usize;
        Arena { block, base, allocations: 1 }
    }

    /// `data` as a `Bytes` of its own length, cut from the arena.
    pub fn copy(&mut self, data: &[u8]) -> Bytes {
        if self.block.capacity() < data.len() {
            // Reclaims the block in place when nothing cut from it is alive; otherwise allocates
            // a new one of at least the block size.
            self.block.reserve(data.len().max(ARENA_BLOCK));
            let base = self.block.as_ptr() as usize;
            if base != self.base {
                self.base = base;
                self.allocations += 1;
            }
        }
        self.block.extend_from_slice(data);
        self.block.split().freeze()
    }

    /// Room left in the current block.
    pub fn remaining(&self) -> usize {
        self.block.capacity()
    }

    /// Blocks allocated so far (a reclaimed block is not counted again).
    pub fn allocations(&self) -> u64 {
        self.allocations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_share_one_block_and_keep_their_bytes() {
        let mut a = Arena::new();
        let kept: Vec<Bytes> = (0..100u8).map(|i| a.copy(&[i; 500])).collect();
        assert_eq!(a.allocations(), 1, "100 x 500 bytes fit one 64 KiB block");
        for (i, b) in kept.iter().enumerate() {
            assert_eq!(b.len(), 500);
            assert!(b.iter().all(|&x| usize::from(x) == i), "datagram {i} kept its bytes");
        }
        // Contiguous: each one starts where the previous ended.
        for w in kept.windows(2) {
            assert_eq!(w[0].as_ptr() as usize + 500, w[1].as_ptr() as usize);
        }
    }

    #[test]
    fn a_full_block_is_reclaimed_when_nothing_cut_from_it_lives() {
        let mut a = Arena::new();
        let first = a.copy(b"x").as_ptr() as usize;
        // Fill well past one block, dropping every datagram at once (a proxy forwards and drops).
        for _ in 0..1000 {
            drop(a.copy(&[7; 1000]));
        }
        assert_eq!(a.allocations(), 1, "the one block was taken back each time it filled");
        let again = a.copy(&[1; 65_000]);
        drop(again);
        assert!(a.allocations() <= 2);
        // With a datagram still alive from the current block, the next full block is a new one.
        let mut b = Arena::new();
        let held = b.copy(&[1; 1000]);
        while b.remaining() >= 1000 {
            drop(b.copy(&[2; 1000]));
        }
        let next = b.copy(&[3; 1000]);
        assert_eq!(b.allocations(), 2);
        assert_eq!(held[..], [1; 1000][..], "the held datagram is untouched");
        assert_eq!(next[..], [3; 1000][..]);
        assert_ne!(first, 0);
    }

    #[test]
    fn a_datagram_as_large_as_udp_allows_fits() {
        let mut a = Arena::new();
        let big = a.copy(&[9; 65_535]);
        let small = a.copy(b"OPTIONS");
        assert_eq!(big.len(), 65_535);
        assert_eq!(&small[..], b"OPTIONS");
    }
}
