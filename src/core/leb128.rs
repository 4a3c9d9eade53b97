//! Unsigned LEB128: seven bits a byte, low bits first, the high bit set on
//! every byte but the last. The length prefix of a member in the string
//! arena (`StringSet`) and in the encoding of strings (`MemberSet::encode`)
//! (`write`/`read`, lengths below 2^32), and the 64-bit values of journal
//! chunks (`write_u64`/`read_u64`).

/// Longest value read: five bytes, 35 bits (any length below 2^32).
const MAX_BYTES: usize = 5;

/// Appends `value`.
pub(crate) fn write(out: &mut Vec<u8>, mut value: usize) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The bytes `write` takes for `value`.
pub(crate) fn encoded_len(value: usize) -> usize {
    let bits = usize::BITS - value.leading_zeros();
    (bits.max(1) as usize).div_ceil(7)
}

/// A value at the start of `bytes` and the bytes it took; `None` if cut
/// off or longer than five bytes.
#[inline]
pub(crate) fn read(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0_usize;
    for (at, &byte) in bytes.iter().enumerate().take(MAX_BYTES) {
        value |= usize::from(byte & 0x7f) << (7 * at);
        if byte & 0x80 == 0 {
            return Some((value, at + 1));
        }
    }
    None
}

/// Appends a 64-bit `value` (journal chunks: ids, indexes, deltas).
pub(crate) fn write_u64(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a LEB128 value at `*at`; `None` if cut off or longer than a u64.
pub(crate) fn read_u64(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0_u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        let bits = u64::from(byte & 0x7f);
        if shift == 63 && bits > 1 {
            return None;
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for len in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            1 << 21,
            u32::MAX as usize,
        ] {
            let mut arena = Vec::new();
            write(&mut arena, len);
            assert_eq!(arena.len(), encoded_len(len), "{len}");
            assert_eq!(read(&arena), Some((len, arena.len())), "{len}");
        }
    }

    #[test]
    fn reads_one_value_and_refuses_cut_off_or_long_ones() {
        assert_eq!(read(b"\x05abc"), Some((5, 1)));
        assert_eq!(read(b"\xac\x02\x00"), Some((300, 2)));
        assert_eq!(read(b""), None);
        assert_eq!(read(b"\x80\x80"), None, "cut off");
        assert_eq!(read(b"\x80\x80\x80\x80\x80\x01"), None, "six bytes");
        assert_eq!(read(b"\xff\xff\xff\xff\x0f"), Some((u32::MAX as usize, 5)));
    }
}
