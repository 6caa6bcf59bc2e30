//! MurmurHash3 x86_32 (spec §9): the bucketing hash. The engine uses seed 0.

/// Standard MurmurHash3_x86_32 of `data` with `seed`, as an unsigned 32-bit value.
pub fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut chunks = data.chunks_exact(4);
    for block in &mut chunks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut k: u32 = 0;
        for (i, &b) in tail.iter().enumerate() {
            k |= u32::from(b) << (8 * i);
        }
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline]
fn mix_block(h: u32, block: [u8; 4]) -> u32 {
    let k = u32::from_le_bytes(block)
        .wrapping_mul(C1)
        .rotate_left(15)
        .wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// MurmurHash3 x86_32 (seed 0) state after a fixed prefix (a bucket's `salt + "/"`), so the
/// bucketing hash of `prefix + value` hashes only `value` and copies nothing.
#[derive(Debug, Clone)]
pub struct MurmurPrefix {
    /// State after the prefix's whole 4-byte blocks.
    h: u32,
    /// The prefix's trailing bytes (fewer than 4) not yet mixed.
    pending: [u8; 4],
    pending_len: usize,
    /// Prefix length in bytes.
    len: usize,
}

impl MurmurPrefix {
    /// Hashes `prefix` (seed 0) up to its last whole block.
    pub fn new(prefix: &[u8]) -> MurmurPrefix {
        let mut h = 0u32;
        let mut chunks = prefix.chunks_exact(4);
        for block in &mut chunks {
            h = mix_block(h, [block[0], block[1], block[2], block[3]]);
        }
        let rest = chunks.remainder();
        let mut pending = [0u8; 4];
        pending[..rest.len()].copy_from_slice(rest);
        MurmurPrefix {
            h,
            pending,
            pending_len: rest.len(),
            len: prefix.len(),
        }
    }

    /// `murmur3_x86_32(prefix + value, 0)`.
    pub fn hash(&self, value: &[u8]) -> u32 {
        let mut h = self.h;
        let mut block = self.pending;
        let fill = (4 - self.pending_len).min(value.len());
        block[self.pending_len..self.pending_len + fill].copy_from_slice(&value[..fill]);
        let filled = self.pending_len + fill;
        let rest = &value[fill..];
        let tail: &[u8] = if filled == 4 {
            h = mix_block(h, block);
            let mut chunks = rest.chunks_exact(4);
            for b in &mut chunks {
                h = mix_block(h, [b[0], b[1], b[2], b[3]]);
            }
            chunks.remainder()
        } else {
            // The whole input ends inside the prefix's pending block.
            &block[..filled]
        };
        if !tail.is_empty() {
            let mut k: u32 = 0;
            for (i, &b) in tail.iter().enumerate() {
                k |= u32::from(b) << (8 * i);
            }
            h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        }
        finish(h, self.len + value.len())
    }
}

#[inline]
fn finish(mut h: u32, len: usize) -> u32 {
    h ^= len as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_hash_equals_whole_hash() {
        let bytes: Vec<u8> = (0..40u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        for p in 0..=12 {
            for v in 0..=14 {
                let (prefix, value) = (&bytes[..p], &bytes[p..p + v]);
                let whole = murmur3_x86_32(&bytes[..p + v], 0);
                assert_eq!(MurmurPrefix::new(prefix).hash(value), whole, "{p} {v}");
            }
        }
        let salt = MurmurPrefix::new(b"salt/");
        assert_eq!(salt.hash(b"device_id"), 4_064_844_581);
    }

    #[test]
    fn known_values() {
        assert_eq!(murmur3_x86_32(b"brian", 0x7f3a_21ea), 3_948_467_465);
        assert_eq!(murmur3_x86_32(b"brian", 0), 3_833_586_940);
        assert_eq!(murmur3_x86_32(b"salt/device_id", 0), 4_064_844_581);
    }
}
