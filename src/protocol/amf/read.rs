//! Checked big-endian reads from a shrinking slice: the only place input is indexed.

use super::AmfError;

/// Splits `n` bytes off the front of `input`, or fails without consuming.
pub(crate) fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], AmfError> {
    if n > input.len() {
        return Err(AmfError::Truncated);
    }
    let (head, tail) = input.split_at(n);
    *input = tail;
    Ok(head)
}

fn array<const N: usize>(input: &mut &[u8]) -> Result<[u8; N], AmfError> {
    let mut out = [0u8; N];
    out.copy_from_slice(take(input, N)?);
    Ok(out)
}

pub(crate) fn u8(input: &mut &[u8]) -> Result<u8, AmfError> {
    Ok(array::<1>(input)?[0])
}

pub(crate) fn u16(input: &mut &[u8]) -> Result<u16, AmfError> {
    Ok(u16::from_be_bytes(array(input)?))
}

pub(crate) fn i16(input: &mut &[u8]) -> Result<i16, AmfError> {
    Ok(i16::from_be_bytes(array(input)?))
}

pub(crate) fn u32(input: &mut &[u8]) -> Result<u32, AmfError> {
    Ok(u32::from_be_bytes(array(input)?))
}

pub(crate) fn i32(input: &mut &[u8]) -> Result<i32, AmfError> {
    Ok(i32::from_be_bytes(array(input)?))
}

pub(crate) fn f64(input: &mut &[u8]) -> Result<f64, AmfError> {
    Ok(f64::from_be_bytes(array(input)?))
}

/// Reads `len` bytes as text. Peers do send broken UTF-8 (truncated
/// multi-byte names, Latin-1 titles); replacing bad sequences keeps the
/// session alive instead of failing a whole command.
pub(crate) fn text(input: &mut &[u8], len: usize) -> Result<String, AmfError> {
    let raw = take(input, len)?;
    Ok(String::from_utf8_lossy(raw).into_owned())
}

/// Fails unless `count` elements of at least `min_size` bytes each can still
/// fit in the input: checked before any allocation sized by `count`.
pub(crate) fn ensure_fits(input: &[u8], count: usize, min_size: usize) -> Result<(), AmfError> {
    match count.checked_mul(min_size) {
        Some(need) if need <= input.len() => Ok(()),
        _ => Err(AmfError::Truncated),
    }
}

/// Initial capacity for a container of `count` elements: trusting a
/// peer's count fully could reserve far more than its items are worth.
pub(crate) fn capacity(count: usize) -> usize {
    count.min(256)
}

/// Longest prefix of `s` of at most `max` bytes that ends on a character
/// boundary; used where a length field is too narrow for the string.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
