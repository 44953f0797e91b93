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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn pair() -> (SessionCipher, SessionCipher) {
        let secret = SharedSecret::from_bytes([0x42; 32]);
        (
            SessionCipher::accessory(&secret),
            SessionCipher::controller(&secret),
        )
    }

    fn message(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn round_trip_split_at_every_byte_boundary() {
        for len in [0, 1, 1023, 1024, 1025, 5000] {
            let plain = message(len);
            let (mut acc, _) = pair();
            let mut wire = Vec::new();
            acc.encrypt(&plain, &mut wire);
            let frames = len.div_ceil(MAX_FRAME_PLAINTEXT_BYTES);
            assert_eq!(wire.len(), len + frames * FRAME_OVERHEAD_BYTES, "len {len}");
            assert_eq!(acc.frames_encrypted(), frames as u64);
            // Every split for the short messages; for 5000 bytes every split in the first
            // frame and a half, around each frame boundary and at the end, and every 13th byte
            // elsewhere (all of them take ~30 s in a debug build).
            let boundary = |i: usize| {
                let in_frame = i % (MAX_FRAME_PLAINTEXT_BYTES + FRAME_OVERHEAD_BYTES);
                !(3..=MAX_FRAME_PLAINTEXT_BYTES + FRAME_OVERHEAD_BYTES - 3).contains(&in_frame)
            };
            let splits = (0..=wire.len()).filter(|&i| {
                len <= 1025 || i < 1600 || i + 50 > wire.len() || boundary(i) || i % 13 == 0
            });
            for split in splits {
                let (_, mut ctl) = pair();
                let mut buf = BytesMut::from(&wire[..split]);
                let mut out = Vec::new();
                let first = ctl.decrypt(&mut buf, &mut out).unwrap();
                buf.extend_from_slice(&wire[split..]);
                let second = ctl.decrypt(&mut buf, &mut out).unwrap();
                assert_eq!(first + second, frames, "len {len} split {split}");
                assert_eq!(out, plain, "len {len} split {split}");
                assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn byte_at_a_time_and_both_directions() {
        let (mut acc, mut ctl) = pair();
        let mut wire = Vec::new();
        ctl.encrypt(&message(3000), &mut wire);
        ctl.encrypt(b"second request", &mut wire);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut frames = 0;
        for b in &wire {
            buf.extend_from_slice(&[*b]);
            frames += acc.decrypt(&mut buf, &mut out).unwrap();
        }
        assert_eq!(frames, 4);
        let mut expected = message(3000);
        expected.extend_from_slice(b"second request");
        assert_eq!(out, expected);
        assert_eq!(acc.frames_decrypted(), 4);

        // Reply direction uses the other key: the accessory cannot read its own frames.
        let mut reply = Vec::new();
        acc.encrypt(b"HTTP/1.1 204 No Content\r\n\r\n", &mut reply);
        let (_, mut fresh_acc_reader) = pair();
        let mut out = Vec::new();
        assert_eq!(
            fresh_acc_reader.decrypt(&mut BytesMut::from(&reply[..]), &mut out),
            Ok(1)
        );
        let (mut same_side, _) = pair();
        assert_eq!(
            same_side.decrypt(&mut BytesMut::from(&reply[..]), &mut Vec::new()),
            Err(FrameError::Authentication { frame_counter: 0 })
        );
    }

    #[test]
    fn tampered_byte_fails_authentication() {
        let (mut acc, _) = pair();
        let mut wire = Vec::new();
        acc.encrypt(&message(100), &mut wire);
        // Every ciphertext and tag byte, and the length's low byte made smaller.
        for pos in 2..wire.len() {
            let mut bad = wire.clone();
            bad[pos] ^= 0x01;
            let (_, mut ctl) = pair();
            let mut out = Vec::new();
            assert_eq!(
                ctl.decrypt(&mut BytesMut::from(&bad[..]), &mut out),
                Err(FrameError::Authentication { frame_counter: 0 }),
                "byte {pos}"
            );
            assert!(out.is_empty());
        }
        let mut bad = wire.clone();
        bad[0] -= 1;
        let (_, mut ctl) = pair();
        assert_eq!(
            ctl.decrypt(&mut BytesMut::from(&bad[..]), &mut Vec::new()),
            Err(FrameError::Authentication { frame_counter: 0 })
        );
    }

    #[test]
    fn replayed_frame_fails() {
        let (mut acc, mut ctl) = pair();
        let mut wire = Vec::new();
        acc.encrypt(b"event", &mut wire);
        let mut buf = BytesMut::from(&wire[..]);
        buf.extend_from_slice(&wire);
        let mut out = Vec::new();
        assert_eq!(
            ctl.decrypt(&mut buf, &mut out),
            Err(FrameError::Authentication { frame_counter: 1 })
        );
        assert_eq!(out, b"event");
    }

    #[test]
    fn length_over_1024_is_rejected_before_the_body_arrives() {
        let (_, mut ctl) = pair();
        let mut buf = BytesMut::from(&[0x01, 0x04][..]);
        assert_eq!(
            ctl.decrypt(&mut buf, &mut Vec::new()),
            Err(FrameError::TooLong {
                len_bytes: 1025,
                frame_counter: 0
            })
        );
        let mut buf = BytesMut::from(&[0xFF, 0xFF, 0, 0][..]);
        assert!(matches!(
            ctl.decrypt(&mut buf, &mut Vec::new()),
            Err(FrameError::TooLong {
                len_bytes: 65535,
                ..
            })
        ));
        // Exactly 1024 with a partial body is just incomplete.
        let mut buf = BytesMut::from(&[0x00, 0x04, 1, 2, 3][..]);
        assert_eq!(ctl.decrypt(&mut buf, &mut Vec::new()), Ok(0));
        assert_eq!(buf.len(), 5);
    }

    #[test]
    fn debug_shows_only_counters() {
        let (acc, _) = pair();
        assert_eq!(
            format!("{acc:?}"),
            "SessionCipher { encrypt_counter: 0, decrypt_counter: 0, .. }"
        );
    }
}
