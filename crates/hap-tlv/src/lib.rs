//! TLV8, the type-length-value encoding of HAP pairing messages and camera configurations
//! (HAP spec §14.1; protocol-notes §1.3, §1.4).
//!
//! ```text
//!  bytes ──Reader──► (type, value) items ──► Tlv8 { get, get_all, split_lists, nested }
//!  Tlv8 / Writer ──► bytes   (values > 255 bytes fragmented, separators kept)
//! ```
//!
//! Pure: no IO, no unsafe, never panics on input. Typed pairing numbers ([`TlvType`],
//! [`Method`], [`PairingError`]) are open newtypes, so unknown values round-trip.
//! The typed HKSV configuration TLVs build on [`Tlv8::nested`] / [`Tlv8::push_nested`].
//!
//! ```
//! use hap_tlv::{Tlv8, TlvType};
//! // A 300-byte public key travels as a 255-byte and a 45-byte fragment.
//! let mut tlv = Tlv8::new();
//! tlv.push(TlvType::PUBLIC_KEY, &[1; 300]).push_u8(TlvType::STATE, 2);
//! let bytes = tlv.encode();
//! assert_eq!(bytes.len(), 2 + 255 + 2 + 45 + 3);
//! assert_eq!(Tlv8::decode(&bytes).unwrap(), tlv);
//! ```
#![forbid(unsafe_code)]

mod error;
pub mod hksv;
mod reader;
pub mod rtp;
mod tlv8;
mod types;
mod writer;

pub use error::Error;
pub use reader::{Item, MAX_FRAGMENT_BYTES, Reader};
pub use tlv8::{OwnedItem, Tlv8, read_uint_le};
pub use types::{Method, PairingError, TlvType};
pub use writer::Writer;

/// Debug helper: short values in hex, longer ones by length only (they may be secrets).
fn fmt_value(f: &mut core::fmt::Formatter<'_>, v: &[u8]) -> core::fmt::Result {
    if v.len() <= 4 {
        f.write_str("[")?;
        for b in v {
            write!(f, "{b:02x}")?;
        }
        f.write_str("]")
    } else {
        write!(f, "<{} bytes>", v.len())
    }
}
