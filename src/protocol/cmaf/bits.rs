//! A bounded MSB-first bit reader for the parameter sets the packager reads
//! sizes from (H.264/H.265 SPS, AV1 sequence header), plus the removal of
//! H.26x emulation prevention bytes.
//!
//! The input comes from publishers, so every read is checked: running off
//! the end, an exp-Golomb code longer than 32 bits, or a value past what a
//! field may hold gives `None`, which the callers turn into "size unknown".

/// Reads bits most significant first; `None` once the data runs out.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    pub(crate) fn bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(bit == 1)
    }

    /// `n` bits (at most 32) as an unsigned number.
    pub(crate) fn bits(&mut self, n: u32) -> Option<u32> {
        debug_assert!(n <= 32);
        let mut v: u64 = 0;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        u32::try_from(v).ok()
    }

    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.pos.checked_add(n)?;
        if end > self.data.len().checked_mul(8)? {
            return None;
        }
        self.pos = end;
        Some(())
    }

    /// Unsigned exp-Golomb (H.264/H.265 `ue(v)`). Codes of more than 31
    /// leading zeros cannot hold a `u32` and are treated as garbage.
    pub(crate) fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        // 2^zeros - 1 + rest, at most 2^32 - 2 for 31 zeros.
        let base = (1u64 << zeros) - 1;
        u32::try_from(base + u64::from(rest)).ok()
    }

    /// Signed exp-Golomb (`se(v)`).
    pub(crate) fn se(&mut self) -> Option<i32> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        i32::try_from(v).ok()
    }

    /// AV1 `uvlc()`: like `ue(v)`, but 32 or more leading zeros mean the
    /// maximum value rather than an error.
    pub(crate) fn uvlc(&mut self) -> Option<u32> {
        let mut zeros = 0u32;
        while !self.bit()? {
            zeros += 1;
            if zeros >= 32 {
                return Some(u32::MAX);
            }
        }
        let rest = self.bits(zeros)?;
        u32::try_from(((1u64 << zeros) - 1) + u64::from(rest)).ok()
    }
}

/// The RBSP of an H.264/H.265 NAL unit: every `00 00 03` loses its `03`
/// (emulation prevention). Only parameter sets go through this, so the copy
/// is small and made once per sequence header.
pub(crate) fn unescape_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_reads() {
        let mut r = BitReader::new(&[0b1010_0000, 0xFF]);
        assert_eq!(r.bit(), Some(true));
        assert_eq!(r.bits(3), Some(0b010));
        assert_eq!(r.skip(4), Some(()));
        assert_eq!(r.bits(8), Some(0xFF));
        assert_eq!(r.bit(), None);
        assert_eq!(r.skip(1), None);
    }

    #[test]
    fn exp_golomb_codes() {
        // 1 | 010 | 011 | 00100 | 00101 -> ue 0, 1, 2, 3, 4.
        let mut r = BitReader::new(&[0b1010_0110, 0b0100_0010, 0b1000_0000]);
        assert_eq!(r.ue(), Some(0));
        assert_eq!(r.ue(), Some(1));
        assert_eq!(r.ue(), Some(2));
        assert_eq!(r.ue(), Some(3));
        assert_eq!(r.ue(), Some(4));
        // se mapping: 1 -> 1, 2 -> -1, 3 -> 2, 4 -> -2.
        let mut r = BitReader::new(&[0b0100_1100, 0b1000_0101]);
        assert_eq!(r.se(), Some(1));
        assert_eq!(r.se(), Some(-1));
        assert_eq!(r.se(), Some(2));
        assert_eq!(r.se(), Some(-2));
    }

    #[test]
    fn overlong_and_truncated_codes_are_none() {
        // 40 zero bits: no u32 fits, and no terminating one anyway.
        assert_eq!(BitReader::new(&[0; 5]).ue(), None);
        // 31 zeros then a one then 31 bits of payload, all ones: 2^32 - 2.
        let mut max = vec![0u8, 0, 0, 1];
        max.extend_from_slice(&[0xFF; 4]);
        assert_eq!(BitReader::new(&max).ue(), Some(u32::MAX - 1));
        // A prefix with the suffix cut off.
        assert_eq!(BitReader::new(&[0b0000_0001]).ue(), None);
        assert_eq!(BitReader::new(&[0; 5]).uvlc(), Some(u32::MAX));
        assert_eq!(BitReader::new(&[]).uvlc(), None);
    }

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(
            unescape_rbsp(&[0x67, 0, 0, 3, 1, 0, 0, 3, 0, 3]),
            [0x67, 0, 0, 1, 0, 0, 0, 3]
        );
        assert_eq!(unescape_rbsp(&[0, 3, 0, 0]), [0, 3, 0, 0]);
    }
}
