//! TLV8 writer.

use crate::{TlvType, reader::MAX_FRAGMENT_BYTES};

/// Appends TLV8 items to a `Vec<u8>`, in the order written.
///
/// Values over 255 bytes are split into 255-byte fragments of the same type; a value of exactly
/// 255·k bytes gives k items and no trailing empty item (HomeKitADK `HAPTLVWriter.c`,
/// HAP-NodeJS `tlv.ts`). An empty value is one item with length 0.
///
/// Two adjacent items of the same type must be separated (e.g. [`Writer::separator`]) when the
/// first one's length is a non-zero multiple of 255, or a reader joins them.
#[derive(Debug)]
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    /// A writer appending to `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out }
    }

    /// Writes `value` as one item, fragmented if longer than 255 bytes.
    pub fn put(&mut self, ty: TlvType, value: &[u8]) -> &mut Self {
        put_into(self.out, ty, value);
        self
    }

    /// Writes a zero-length item of type `sep` (`FF 00` in pairing lists, `00 00` in camera
    /// configuration lists; protocol-notes §1.3).
    pub fn separator(&mut self, sep: TlvType) -> &mut Self {
        self.put(sep, &[])
    }

    /// Writes `v` little-endian in the fewest bytes (at least one), as the ADK pairing code does.
    pub fn put_uint_min(&mut self, ty: TlvType, v: u64) -> &mut Self {
        let bytes = v.to_le_bytes();
        let width = min_width_bytes(v);
        self.put(ty, bytes.get(..width).unwrap_or(&bytes))
    }

    /// Writes a one-byte value.
    pub fn put_u8(&mut self, ty: TlvType, v: u8) -> &mut Self {
        self.put(ty, &[v])
    }

    /// Writes a fixed 2-byte little-endian value (HKSV configuration fields).
    pub fn put_u16(&mut self, ty: TlvType, v: u16) -> &mut Self {
        self.put(ty, &v.to_le_bytes())
    }

    /// Writes a fixed 4-byte little-endian value (HKSV configuration fields).
    pub fn put_u32(&mut self, ty: TlvType, v: u32) -> &mut Self {
        self.put(ty, &v.to_le_bytes())
    }

    /// Writes a fixed 8-byte little-endian value.
    pub fn put_u64(&mut self, ty: TlvType, v: u64) -> &mut Self {
        self.put(ty, &v.to_le_bytes())
    }
}

/// Bytes needed for `v` little-endian without trailing zero bytes (at least 1).
pub(crate) fn min_width_bytes(v: u64) -> usize {
    let bits = 64 - v.leading_zeros() as usize;
    bits.div_ceil(8).max(1)
}

pub(crate) fn put_into(out: &mut Vec<u8>, ty: TlvType, value: &[u8]) {
    if value.is_empty() {
        out.extend_from_slice(&[ty.0, 0]);
        return;
    }
    out.reserve(value.len() + 2 * value.len().div_ceil(MAX_FRAGMENT_BYTES));
    for chunk in value.chunks(MAX_FRAGMENT_BYTES) {
        // chunks() never yields more than MAX_FRAGMENT_BYTES, so the length fits a u8.
        let len = u8::try_from(chunk.len()).unwrap_or(u8::MAX);
        out.push(ty.0);
        out.push(len);
        out.extend_from_slice(chunk);
    }
}
