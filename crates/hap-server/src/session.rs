//! Encrypted HAP session framing (ChaCha20-Poly1305, 1024-byte frames; protocol-notes §1.7).
//!
//! ```text
//!  frame = len (u16 LE, ≤ 1024; the AAD) ‖ ciphertext (len bytes) ‖ tag (16 bytes)
//!  nonce = 4 zero bytes ‖ u64 LE frame counter, per direction, from 0
//!  keys  = HKDF-SHA-512(IKM = pair-verify shared secret, salt "Control-Salt", 32 bytes)
//!          accessory → controller: "Control-Read-Encryption-Key"
//!          controller → accessory: "Control-Write-Encryption-Key"
//! ```

use bytes::{Buf, BytesMut};

use crate::pairing::SharedSecret;
use crate::pairing::crypto::{TAG_BYTES, hkdf_sha512_32, open_in_place, seal_in_place};

/// Largest plaintext in one frame (HAP spec §6.5.2; HomeKitADK rejects longer frames).
pub const MAX_FRAME_PLAINTEXT_BYTES: usize = 1024;
/// Bytes a frame adds to its plaintext: 2 length bytes and the 16-byte tag.
pub const FRAME_OVERHEAD_BYTES: usize = 2 + TAG_BYTES;

const CONTROL_SALT: &[u8] = b"Control-Salt";
const CONTROL_READ_INFO: &[u8] = b"Control-Read-Encryption-Key";
const CONTROL_WRITE_INFO: &[u8] = b"Control-Write-Encryption-Key";

/// Why incoming session bytes were rejected. Either way: close the connection.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix exceeds [`MAX_FRAME_PLAINTEXT_BYTES`].
    #[error("encrypted frame {frame_counter} announces {len_bytes} bytes, limit is 1024")]
    TooLong {
        /// The announced plaintext length.
        len_bytes: usize,
        /// Counter (nonce) of the offending frame in this direction.
        frame_counter: u64,
    },
    /// The tag does not authenticate the frame (tampered, replayed, reordered or wrong key).
    #[error("encrypted frame {frame_counter} failed authentication")]
    Authentication {
        /// Counter (nonce) of the offending frame in this direction.
        frame_counter: u64,
    },
}

/// The frame codec of one verified connection, both directions. `Debug` prints only counters.
pub struct SessionCipher {
    encrypt_key: [u8; 32],
    decrypt_key: [u8; 32],
    encrypt_counter: u64,
    decrypt_counter: u64,
}

impl core::fmt::Debug for SessionCipher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SessionCipher")
            .field("encrypt_counter", &self.encrypt_counter)
            .field("decrypt_counter", &self.decrypt_counter)
            .finish_non_exhaustive()
    }
}

impl SessionCipher {
    /// Accessory side: decrypts with Control-Write-Encryption-Key, encrypts with
    /// Control-Read-Encryption-Key.
    pub fn accessory(shared: &SharedSecret) -> Self {
        Self::with_keys(
            hkdf_sha512_32(shared.as_bytes(), CONTROL_SALT, CONTROL_READ_INFO),
            hkdf_sha512_32(shared.as_bytes(), CONTROL_SALT, CONTROL_WRITE_INFO),
        )
    }

    /// Controller side (tests, hub simulator): the mirror image of [`SessionCipher::accessory`].
    pub fn controller(shared: &SharedSecret) -> Self {
        Self::with_keys(
            hkdf_sha512_32(shared.as_bytes(), CONTROL_SALT, CONTROL_WRITE_INFO),
            hkdf_sha512_32(shared.as_bytes(), CONTROL_SALT, CONTROL_READ_INFO),
        )
    }

    fn with_keys(encrypt_key: [u8; 32], decrypt_key: [u8; 32]) -> Self {
        Self {
            encrypt_key,
            decrypt_key,
            encrypt_counter: 0,
            decrypt_counter: 0,
        }
    }

    /// Frames sent so far.
    pub fn frames_encrypted(&self) -> u64 {
        self.encrypt_counter
    }

    /// Frames received so far.
    pub fn frames_decrypted(&self) -> u64 {
        self.decrypt_counter
    }

    /// Appends the frames for `plaintext` to `out`: ⌈len/1024⌉ frames (none for an empty
    /// plaintext).
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut Vec<u8>) {
        out.reserve(
            plaintext.len()
                + FRAME_OVERHEAD_BYTES * plaintext.len().div_ceil(MAX_FRAME_PLAINTEXT_BYTES),
        );
        for chunk in plaintext.chunks(MAX_FRAME_PLAINTEXT_BYTES) {
            // chunks() bounds the length by 1024, so it fits a u16.
            let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX).to_le_bytes();
            out.extend_from_slice(&len);
            let start = out.len();
            out.extend_from_slice(chunk);
            let tag = match out.get_mut(start..) {
                Some(buf) => seal_in_place(
                    &self.encrypt_key,
                    self.encrypt_counter.to_le_bytes(),
                    &len,
                    buf,
                ),
                None => continue,
            };
            out.extend_from_slice(&tag);
            // 2^64 frames cannot happen on one connection; wrapping keeps this panic-free.
            self.encrypt_counter = self.encrypt_counter.wrapping_add(1);
        }
    }

    /// Decrypts every complete frame at the front of `buf` (consuming them) and appends the
    /// plaintext to `out`.
    ///
    /// Returns the number of frames consumed (0 if the first frame is incomplete; the partial
    /// bytes stay in `buf`).
    ///
    /// # Errors
    /// [`FrameError`] on a length over 1024 or a failed tag; close the connection (plaintext
    /// of earlier frames in this call may already be in `out`).
    pub fn decrypt(&mut self, buf: &mut BytesMut, out: &mut Vec<u8>) -> Result<usize, FrameError> {
        let mut frames = 0;
        loop {
            let Some(&len_bytes) = buf.first_chunk::<2>() else {
                return Ok(frames);
            };
            let len = usize::from(u16::from_le_bytes(len_bytes));
            if len > MAX_FRAME_PLAINTEXT_BYTES {
                return Err(FrameError::TooLong {
                    len_bytes: len,
                    frame_counter: self.decrypt_counter,
                });
            }
            if buf.len() < FRAME_OVERHEAD_BYTES + len {
                return Ok(frames);
            }
            let auth_error = FrameError::Authentication {
                frame_counter: self.decrypt_counter,
            };
            let start = out.len();
            let (Some(ct), Some(tag)) = (
                buf.get(2..2 + len),
                buf.get(2 + len..FRAME_OVERHEAD_BYTES + len)
                    .and_then(|t| <&[u8; TAG_BYTES]>::try_from(t).ok()),
            ) else {
                return Err(auth_error);
            };
            out.extend_from_slice(ct);
            let ok = out.get_mut(start..).is_some_and(|plain| {
                open_in_place(
                    &self.decrypt_key,
                    self.decrypt_counter.to_le_bytes(),
                    &len_bytes,
                    plain,
                    tag,
                )
            });
            if !ok {
                out.truncate(start);
                return Err(auth_error);
            }
            buf.advance(FRAME_OVERHEAD_BYTES + len);
            self.decrypt_counter = self.decrypt_counter.wrapping_add(1);
            frames += 1;
        }
    }
}
