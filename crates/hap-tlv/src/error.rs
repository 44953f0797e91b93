//! The crate's one error type.

use crate::TlvType;

/// Why TLV8 bytes could not be read, or why a decoded item is unusable.
///
/// Every variant names the TLV type it is about, so a log line is enough to find the offending
/// item in a capture. The HAP wire error code (`kTLVError_*`) is a different type:
/// [`PairingError`](crate::PairingError).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An item's header or value runs past the end of the input (HAP spec §14.1: every item is
    /// type, length, then `length` value bytes).
    #[error(
        "TLV item {ty:?} at offset {offset_bytes} is truncated: needs {needed_bytes} bytes, {available_bytes} left"
    )]
    Truncated {
        /// Type byte of the truncated item.
        ty: TlvType,
        /// Offset of the item's (or continuation fragment's) header in the input.
        offset_bytes: usize,
        /// Bytes the header and value need.
        needed_bytes: usize,
        /// Bytes that were left.
        available_bytes: usize,
    },
    /// A continuation fragment of a long value has length 0 (HomeKitADK `HAPTLVReader.c`
    /// rejects it: only the last fragment may be shorter than 255 bytes, and never empty).
    #[error("TLV item {ty:?} at offset {offset_bytes} is an empty continuation fragment")]
    BadFragment {
        /// Type byte of the fragmented item.
        ty: TlvType,
        /// Offset of the empty fragment's header in the input.
        offset_bytes: usize,
    },
    /// A required item is absent.
    #[error("TLV item {ty:?} is missing")]
    MissingType {
        /// The missing type.
        ty: TlvType,
    },
    /// An item's value has a length the field does not allow.
    #[error("TLV item {ty:?} has {len_bytes} bytes, expected {min_bytes}..={max_bytes}")]
    BadLength {
        /// The item's type.
        ty: TlvType,
        /// Its actual value length.
        len_bytes: usize,
        /// Smallest allowed value length.
        min_bytes: usize,
        /// Largest allowed value length.
        max_bytes: usize,
    },
}
