//! Small crypto helpers shared by pair-setup, pair-verify and the session codec.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha512;

/// Length of the Poly1305 tag after every ciphertext.
pub(crate) const TAG_BYTES: usize = 16;

/// HKDF-SHA-512 (RFC 5869) with a 32-byte output, the only length HAP uses.
pub(crate) fn hkdf_sha512_32(ikm: &[u8], salt: &[u8], info: &[u8]) -> [u8; 32] {
    let mut okm = [0u8; 32];
    // 32 bytes is far below HKDF-SHA-512's 255·64-byte limit, so expand cannot fail.
    let _ = Hkdf::<Sha512>::new(Some(salt), ikm).expand(info, &mut okm);
    okm
}

/// The 12-byte ChaCha20-Poly1305 nonce for an 8-byte HAP nonce: 4 zero bytes, then the 8
/// bytes (`PS-Msg05`, or a u64 LE frame counter). protocol-notes §1.5, §1.7.
pub(crate) fn nonce12(nonce8: [u8; 8]) -> Nonce {
    let mut n = [0u8; 12];
    for (dst, src) in n.iter_mut().skip(4).zip(nonce8) {
        *dst = src;
    }
    Nonce::from(n)
}

/// Encrypts `buf` in place with `aad` and returns the tag.
pub(crate) fn seal_in_place(key: &[u8; 32], nonce8: [u8; 8], aad: &[u8], buf: &mut [u8]) -> Tag {
    let cipher = ChaCha20Poly1305::new(&(*key).into());
    // Only fails for messages over ~256 GiB, far beyond anything we encrypt.
    cipher
        .encrypt_inout_detached(&nonce12(nonce8), aad, buf.into())
        .unwrap_or_default()
}

/// Decrypts `buf` in place; `false` if the tag does not authenticate it.
pub(crate) fn open_in_place(
    key: &[u8; 32],
    nonce8: [u8; 8],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_BYTES],
) -> bool {
    let cipher = ChaCha20Poly1305::new(&(*key).into());
    cipher
        .decrypt_inout_detached(&nonce12(nonce8), aad, buf.into(), &Tag::from(*tag))
        .is_ok()
}

/// Encrypts a pairing sub-TLV: ciphertext ‖ tag, no AAD.
pub(crate) fn seal(key: &[u8; 32], nonce8: &[u8; 8], plaintext: &[u8]) -> Vec<u8> {
    let mut out = plaintext.to_vec();
    let tag = seal_in_place(key, *nonce8, &[], &mut out);
    out.extend_from_slice(&tag);
    out
}

/// Decrypts ciphertext ‖ tag; `None` if too short or not authentic.
pub(crate) fn open(key: &[u8; 32], nonce8: &[u8; 8], sealed: &[u8]) -> Option<Vec<u8>> {
    let split = sealed.len().checked_sub(TAG_BYTES)?;
    let (ct, tag) = sealed.split_at_checked(split)?;
    let tag: &[u8; TAG_BYTES] = tag.try_into().ok()?;
    let mut buf = ct.to_vec();
    open_in_place(key, *nonce8, &[], &mut buf, tag).then_some(buf)
}
