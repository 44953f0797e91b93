//! HDS framing and encryption (protocol notes §4.2, §4.3; verified on the wire, §7).
//!
//! ```text
//! +---------+---------------------+------------------------+-----------+
//! | type u8 | payload length u24  | encrypted payload      | tag (16)  |
//! |  = 0x01 | big-endian          | (length bytes)         | Poly1305  |
//! +---------+---------------------+------------------------+-----------+
//! ```
//!
//! AEAD ChaCha20-Poly1305; AAD = the 4 header bytes; nonce = 4 zero bytes ‖ u64 LE counter, one
//! counter per direction starting at 0. The length counts the payload, not the tag.

use std::fmt;

use bytes::{Bytes, BytesMut};
use chacha20poly1305::{AeadInOut, ChaCha20Poly1305, KeyInit};
use hkdf::Hkdf;
use sha2::Sha512;

use crate::Error;

/// The only defined frame type (§4.3); frames of other types are skipped.
pub const FRAME_TYPE_HDS: u8 = 0x01;
/// Type byte plus 24-bit length.
pub const HEADER_BYTES: usize = 4;
/// Poly1305 tag after the ciphertext.
pub const TAG_BYTES: usize = 16;
/// Largest payload HAP-NodeJS accepts or sends (§4.3), although the length field has 24 bits.
pub const MAX_PAYLOAD_BYTES: usize = 0xF_FFFF;

/// HKDF info for the accessory → controller key (named from the controller's view: it reads).
const READ_KEY_INFO: &[u8] = b"HDS-Read-Encryption-Key";
/// HKDF info for the controller → accessory key.
const WRITE_KEY_INFO: &[u8] = b"HDS-Write-Encryption-Key";

/// Which end of the HDS connection we are; picks the sealing and opening keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The camera (TCP server); seals with the accessory → controller key.
    Accessory,
    /// The home hub (TCP client); seals with the controller → accessory key.
    Controller,
}

/// The two 32-byte HDS keys of one session. `Debug` never prints them.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    accessory_to_controller: [u8; 32],
    controller_to_accessory: [u8; 32],
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKeys { .. }")
    }
}

impl SessionKeys {
    /// Derive both keys (§4.2): HKDF-SHA-512, IKM = the pair-verify shared secret of the HAP
    /// session that wrote SetupDataStreamTransport, salt = controller salt ‖ accessory salt.
    #[must_use]
    pub fn derive(
        shared_secret: &[u8; 32],
        controller_salt: &[u8; 32],
        accessory_salt: &[u8; 32],
    ) -> Self {
        let mut salt = [0u8; 64];
        let (c, a) = salt.split_at_mut(32);
        c.copy_from_slice(controller_salt);
        a.copy_from_slice(accessory_salt);
        let hk = Hkdf::<Sha512>::new(Some(&salt), shared_secret);
        let mut accessory_to_controller = [0u8; 32];
        let mut controller_to_accessory = [0u8; 32];
        // 32 bytes is far below HKDF-SHA-512's 255 * 64-byte limit, so expand cannot fail.
        let _ = hk.expand(READ_KEY_INFO, &mut accessory_to_controller);
        let _ = hk.expand(WRITE_KEY_INFO, &mut controller_to_accessory);
        Self {
            accessory_to_controller,
            controller_to_accessory,
        }
    }

    /// Build from two raw keys (test vectors, simulators).
    #[must_use]
    pub fn from_raw(accessory_to_controller: [u8; 32], controller_to_accessory: [u8; 32]) -> Self {
        Self {
            accessory_to_controller,
            controller_to_accessory,
        }
    }

    /// The accessory → controller key (`HDS-Read-Encryption-Key`). Secret: never log it.
    #[must_use]
    pub fn accessory_to_controller(&self) -> &[u8; 32] {
        &self.accessory_to_controller
    }

    /// The controller → accessory key (`HDS-Write-Encryption-Key`). Secret: never log it.
    #[must_use]
    pub fn controller_to_accessory(&self) -> &[u8; 32] {
        &self.controller_to_accessory
    }

    /// The sealer for frames `role` sends.
    #[must_use]
    pub fn sealer(&self, role: Role) -> FrameSealer {
        FrameSealer::new(match role {
            Role::Accessory => &self.accessory_to_controller,
            Role::Controller => &self.controller_to_accessory,
        })
    }

    /// The opener for frames `role` receives.
    #[must_use]
    pub fn opener(&self, role: Role) -> FrameOpener {
        FrameOpener::new(match role {
            Role::Accessory => &self.controller_to_accessory,
            Role::Controller => &self.accessory_to_controller,
        })
    }
}

fn nonce(counter: u64) -> chacha20poly1305::Nonce {
    let mut n = [0u8; 12];
    let (_, tail) = n.split_at_mut(4);
    tail.copy_from_slice(&counter.to_le_bytes());
    chacha20poly1305::Nonce::from(n)
}

fn header(payload_bytes: usize) -> [u8; HEADER_BYTES] {
    // Callers check payload_bytes <= MAX_PAYLOAD_BYTES, so the top byte is zero.
    let len = u32::try_from(payload_bytes).unwrap_or(0).to_be_bytes();
    let [_, l0, l1, l2] = len;
    [FRAME_TYPE_HDS, l0, l1, l2]
}

/// Encrypts outgoing frames of one direction; owns that direction's nonce counter.
pub struct FrameSealer {
    cipher: ChaCha20Poly1305,
    counter: u64,
}

impl fmt::Debug for FrameSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameSealer")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl FrameSealer {
    /// A sealer starting at nonce counter 0.
    #[must_use]
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(&chacha20poly1305::Key::from(*key)),
            counter: 0,
        }
    }

    /// One starting at nonce counter `counter` (test vectors, resuming a direction).
    #[must_use]
    pub fn with_counter(key: &[u8; 32], counter: u64) -> Self {
        Self {
            counter,
            ..Self::new(key)
        }
    }

    /// The counter the next frame will use.
    #[must_use]
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// Append one complete frame carrying `payload` to `out`.
    ///
    /// # Errors
    /// [`Error::PayloadTooLarge`] above [`MAX_PAYLOAD_BYTES`] (nothing is appended, the counter
    /// does not move); [`Error::NonceExhausted`] after 2^64 frames.
    pub fn seal(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        self.seal_parts(&[payload], out)
    }

    /// Like [`seal`](Self::seal) for a payload given in pieces (saves joining them first).
    ///
    /// # Errors
    /// As [`seal`](Self::seal).
    pub fn seal_parts(&mut self, parts: &[&[u8]], out: &mut Vec<u8>) -> Result<(), Error> {
        let payload_bytes: usize = parts.iter().map(|p| p.len()).sum();
        if payload_bytes > MAX_PAYLOAD_BYTES {
            return Err(Error::PayloadTooLarge { payload_bytes });
        }
        self.seal_with(out, payload_bytes, |buf| {
            parts.iter().for_each(|p| buf.extend_from_slice(p));
            Ok(())
        })
    }

    /// Append one frame whose plaintext payload `write` appends to the buffer it is given; the
    /// payload is then encrypted where it lies. `reserve` is the expected payload size, reserved
    /// up front so the payload is not moved again by the buffer growing.
    ///
    /// On any error nothing is appended and the counter does not move.
    pub(crate) fn seal_with(
        &mut self,
        out: &mut Vec<u8>,
        reserve: usize,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let next = self.counter.checked_add(1).ok_or(Error::NonceExhausted)?;
        let frame_start = out.len();
        out.reserve(HEADER_BYTES + reserve + TAG_BYTES);
        out.extend_from_slice(&[0; HEADER_BYTES]);
        let start = out.len();
        let sealed = write(out).and_then(|()| {
            let payload_bytes = out.len() - start;
            if payload_bytes > MAX_PAYLOAD_BYTES {
                return Err(Error::PayloadTooLarge { payload_bytes });
            }
            let hdr = header(payload_bytes);
            if let Some(h) = out.get_mut(frame_start..start) {
                h.copy_from_slice(&hdr);
            }
            let body = out.get_mut(start..).unwrap_or_default();
            self.cipher
                .encrypt_inout_detached(&nonce(self.counter), &hdr, body.into())
                .map_err(|_| Error::PayloadTooLarge { payload_bytes })
        });
        match sealed {
            Ok(tag) => {
                out.extend_from_slice(tag.as_slice());
                self.counter = next;
                Ok(())
            }
            Err(e) => {
                out.truncate(frame_start);
                Err(e)
            }
        }
    }
}

/// One complete frame cut from the byte stream, still encrypted.
#[derive(Debug)]
pub struct RawFrame {
    header: [u8; HEADER_BYTES],
    /// Ciphertext followed by the 16-byte tag.
    body: BytesMut,
}

impl RawFrame {
    /// Declared payload length.
    #[must_use]
    pub fn payload_bytes(&self) -> usize {
        self.body.len().saturating_sub(TAG_BYTES)
    }
}

/// Cut the next frame of type 1 from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a complete frame ("need more", never an
/// error). Frames of other types are removed and skipped without using a nonce (§4.3).
///
/// # Errors
/// [`Error::FrameTooLarge`] when a header announces more than [`MAX_PAYLOAD_BYTES`];
/// `frame_counter` only labels that error.
pub fn take_frame(buf: &mut BytesMut, frame_counter: u64) -> Result<Option<RawFrame>, Error> {
    take_frame_within(buf, frame_counter, MAX_PAYLOAD_BYTES)
}

/// [`take_frame`] with a smaller bound: a header announcing more than `max_payload_bytes` is
/// [`Error::FrameTooLarge`] at once, before any of that payload is buffered.
///
/// # Errors
/// See [`take_frame`].
pub fn take_frame_within(
    buf: &mut BytesMut,
    frame_counter: u64,
    max_payload_bytes: usize,
) -> Result<Option<RawFrame>, Error> {
    let max_payload_bytes = max_payload_bytes.min(MAX_PAYLOAD_BYTES);
    loop {
        let Some(&[kind, l0, l1, l2]) = buf.first_chunk::<HEADER_BYTES>() else {
            return Ok(None);
        };
        let payload_bytes = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
        if payload_bytes > max_payload_bytes {
            return Err(Error::FrameTooLarge {
                payload_bytes,
                frame_counter,
            });
        }
        let total = HEADER_BYTES + payload_bytes + TAG_BYTES;
        if buf.len() < total {
            return Ok(None);
        }
        let mut frame = buf.split_to(total);
        if kind != FRAME_TYPE_HDS {
            tracing::trace!(kind, payload_bytes, "skipping HDS frame of unknown type");
            continue;
        }
        let body = frame.split_off(HEADER_BYTES);
        return Ok(Some(RawFrame {
            header: [kind, l0, l1, l2],
            body,
        }));
    }
}

/// Decrypts incoming frames of one direction; owns that direction's nonce counter.
pub struct FrameOpener {
    cipher: ChaCha20Poly1305,
    counter: u64,
}

impl fmt::Debug for FrameOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameOpener")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl FrameOpener {
    /// An opener starting at nonce counter 0.
    #[must_use]
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(&chacha20poly1305::Key::from(*key)),
            counter: 0,
        }
    }

    /// One starting at nonce counter `counter` (test vectors, resuming a direction).
    #[must_use]
    pub fn with_counter(key: &[u8; 32], counter: u64) -> Self {
        Self {
            counter,
            ..Self::new(key)
        }
    }

    /// The counter the next frame must use.
    #[must_use]
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// Authenticate and decrypt `frame` in place; the counter advances only on success.
    ///
    /// # Errors
    /// [`Error::Authentication`] (the frame is dropped, the counter stays).
    pub fn open(&mut self, frame: RawFrame) -> Result<Bytes, Error> {
        let RawFrame { header, mut body } = frame;
        let frame_counter = self.counter;
        let auth = Error::Authentication { frame_counter };
        let next = self.counter.checked_add(1).ok_or(Error::NonceExhausted)?;
        let split = body.len().checked_sub(TAG_BYTES).ok_or(auth.clone())?;
        let tag_bytes = body.split_off(split);
        let tag = chacha20poly1305::Tag::try_from(&tag_bytes[..]).map_err(|_| auth.clone())?;
        self.cipher
            .decrypt_inout_detached(&nonce(self.counter), &header, (&mut body[..]).into(), &tag)
            .map_err(|_| auth)?;
        self.counter = next;
        Ok(body.freeze())
    }

    /// Try to open `frame` without consuming it (connection identification, §4.4): on success
    /// returns the plaintext and advances the counter; on failure `frame` is untouched.
    ///
    /// # Errors
    /// [`Error::Authentication`].
    pub fn try_open(&mut self, frame: &RawFrame) -> Result<Bytes, Error> {
        self.open(RawFrame {
            header: frame.header,
            body: frame.body.clone(),
        })
    }
}
