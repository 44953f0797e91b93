//! SRTP and SRTCP (RFC 3711) with the one profile HomeKit live view selects:
//! `AES_CM_128_HMAC_SHA1_80` (AES-128 in counter mode, HMAC-SHA1 tags cut to 80 bits), key
//! derivation rate 0, no MKI. [`Suite::Null`] is HomeKit's suite "none" (plain RTP/RTCP).
//!
//! A [`Context`] holds one direction's keys for one master key (HomeKit gives one per medium
//! and direction in SetupEndpoints): protect what we send with the accessory's key, unprotect
//! what the controller sends with the controller's key.
//!
//! - Send: the rollover counter (ROC) follows each SSRC's sequence numbers; SRTCP packets get a
//!   31-bit index counted per context.
//! - Receive: the ROC is estimated as RFC 3711 Appendix A says, and a 64-packet replay window
//!   (§3.3.2) rejects repeats, for RTP per SSRC and for SRTCP. State changes only after a tag
//!   checks out, so forged packets cannot move the windows.
//!
//! Known answers: RFC 3711 B.2 (AES-CM keystream) and B.3 (key derivation), and packets that
//! libsrtp 2 produced (via pylibsrtp), in this module's tests.

use std::collections::HashMap;
use std::fmt;

use aes::Aes128;
use aes::cipher::{InnerIvInit, KeyInit, StreamCipher};
use ctr::{CtrCore, flavors};
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::packet;

/// Bytes of an SRTP master key (AES-128).
pub const MASTER_KEY_LEN: usize = 16;
/// Bytes of an SRTP master salt (RFC 3711 §8.2: 112 bits).
pub const MASTER_SALT_LEN: usize = 14;
/// Bytes of the authentication tag of `*_HMAC_SHA1_80`.
pub const AUTH_TAG_LEN: usize = 10;
/// Bytes of the SRTCP `E || SRTCP index` word.
pub const SRTCP_INDEX_LEN: usize = 4;
/// Packets the replay window remembers behind the newest one.
pub const REPLAY_WINDOW: u64 = 64;
/// Most SSRCs a receiving context tracks; an authenticated packet from one more evicts the
/// oldest (a session has one or two).
const MAX_RECEIVE_SSRCS: usize = 16;

type Ctr128 = ctr::Ctr128BE<Aes128>;
type HmacSha1 = Hmac<Sha1>;

/// The SRTP crypto suite (HomeKit's 116/118 `SRTPCryptoSuite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// `AES_CM_128_HMAC_SHA1_80` (RFC 3711 §4.1.1, §4.2.1).
    AesCm128HmacSha1_80,
    /// No encryption and no authentication: packets pass unchanged.
    Null,
}

/// An SRTP master key and master salt. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    key: [u8; MASTER_KEY_LEN],
    salt: [u8; MASTER_SALT_LEN],
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A master key from its 16-byte key and 14-byte salt.
    pub fn new(key: &[u8], salt: &[u8]) -> Result<Self, Error> {
        let key = key.try_into().map_err(|_| Error::KeyLength)?;
        let salt = salt.try_into().map_err(|_| Error::KeyLength)?;
        Ok(Self { key, salt })
    }

    /// The key bytes.
    pub fn key(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.key
    }

    /// The salt bytes.
    pub fn salt(&self) -> &[u8; MASTER_SALT_LEN] {
        &self.salt
    }

    /// `key || salt` (30 bytes), the form SDP `a=crypto` and FFmpeg's `srtp_out_params` take
    /// (base64-encoded).
    pub fn concatenated(&self) -> [u8; MASTER_KEY_LEN + MASTER_SALT_LEN] {
        let mut out = [0u8; MASTER_KEY_LEN + MASTER_SALT_LEN];
        let (k, s) = out.split_at_mut(MASTER_KEY_LEN);
        k.copy_from_slice(&self.key);
        s.copy_from_slice(&self.salt);
        out
    }
}

/// Why a packet could not be protected or unprotected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A master key that is not 16 bytes or a salt that is not 14.
    #[error("SRTP master key must be 16 bytes and salt 14 bytes")]
    KeyLength,
    /// Shorter than an RTP/RTCP header (plus tag and index when protected), or a header whose
    /// CSRC list or extension runs past the end.
    #[error("packet too short or malformed header")]
    Malformed,
    /// The authentication tag did not match: a wrong key or a tampered packet.
    #[error("authentication tag mismatch")]
    AuthenticationFailed,
    /// The packet index was already seen or is older than the replay window.
    #[error("replayed packet")]
    Replayed,
    /// An SRTCP packet without the E flag (we only accept encrypted SRTCP).
    #[error("SRTCP packet is not encrypted")]
    NotEncrypted,
    /// 2^31 SRTCP packets were sent with this key (RFC 3711 §9.2: re-key).
    #[error("SRTCP index exhausted")]
    IndexExhausted,
}

/// One direction's session keys (RFC 3711 §4.3), for SRTP or for SRTCP.
#[derive(Clone)]
struct SessionKeys {
    cipher: Aes128,
    salt: [u8; MASTER_SALT_LEN],
    mac: HmacSha1,
}

/// Labels of RFC 3711 §4.3.2.
const LABEL_RTP_ENCRYPTION: u8 = 0x00;
const LABEL_RTP_AUTH: u8 = 0x01;
const LABEL_RTP_SALT: u8 = 0x02;
const LABEL_RTCP_ENCRYPTION: u8 = 0x03;
const LABEL_RTCP_AUTH: u8 = 0x04;
const LABEL_RTCP_SALT: u8 = 0x05;

/// AES-CM keystream applied to `data` under `cipher` with the counter block `iv`.
fn apply_aes_cm(cipher: &Aes128, iv: &[u8; 16], data: &mut [u8]) {
    let core = CtrCore::<Aes128, flavors::Ctr128BE>::inner_iv_init(cipher.clone(), iv.into());
    let mut ctr = Ctr128::from_core(core);
    ctr.apply_keystream(data);
}

/// The key derivation PRF (§4.3.1, §4.3.3) with key derivation rate 0: `x = label || 0 (48
/// bits)` XOR the master salt, keystream from `x · 2^16`.
fn derive(master: &MasterKey, label: u8, out: &mut [u8]) {
    let cipher = Aes128::new(&master.key.into());
    let mut iv = [0u8; 16];
    if let Some(x) = iv.get_mut(..MASTER_SALT_LEN) {
        x.copy_from_slice(&master.salt);
    }
    if let Some(b) = iv.get_mut(7) {
        *b ^= label;
    }
    out.fill(0);
    apply_aes_cm(&cipher, &iv, out);
}

impl SessionKeys {
    fn derive(master: &MasterKey, labels: [u8; 3]) -> Self {
        let [enc, auth, salt_label] = labels;
        let mut key = [0u8; 16];
        derive(master, enc, &mut key);
        let mut auth_key = [0u8; 20];
        derive(master, auth, &mut auth_key);
        let mut salt = [0u8; MASTER_SALT_LEN];
        derive(master, salt_label, &mut salt);
        let mac = <HmacSha1 as KeyInit>::new_from_slice(&auth_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Self {
            cipher: Aes128::new(&key.into()),
            salt,
            mac,
        }
    }

    /// The counter block of §4.1.1: `k_s · 2^16 XOR SSRC · 2^64 XOR index · 2^16`.
    fn iv(&self, ssrc: u32, index: u64) -> [u8; 16] {
        let mut iv = [0u8; 16];
        if let Some(s) = iv.get_mut(..MASTER_SALT_LEN) {
            s.copy_from_slice(&self.salt);
        }
        for (b, x) in iv.iter_mut().skip(4).zip(ssrc.to_be_bytes()) {
            *b ^= x;
        }
        // index is 48 bits: bytes 8..14.
        for (b, x) in iv
            .iter_mut()
            .skip(8)
            .zip(index.to_be_bytes().iter().skip(2))
        {
            *b ^= x;
        }
        iv
    }

    fn tag(&self, parts: &[&[u8]]) -> [u8; AUTH_TAG_LEN] {
        let mut mac = self.mac.clone();
        for p in parts {
            mac.update(p);
        }
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; AUTH_TAG_LEN];
        for (t, f) in tag.iter_mut().zip(full.iter()) {
            *t = *f;
        }
        tag
    }

    fn check(&self, parts: &[&[u8]], tag: &[u8]) -> Result<(), Error> {
        let mut mac = self.mac.clone();
        for p in parts {
            mac.update(p);
        }
        // Constant-time comparison of the truncated tag.
        mac.verify_truncated_left(tag)
            .map_err(|_| Error::AuthenticationFailed)
    }
}

/// The replay window of §3.3.2 over 48-bit (SRTP) or 31-bit (SRTCP) indices.
#[derive(Debug, Clone, Copy, Default)]
struct ReplayWindow {
    /// Highest index accepted, if any.
    top: Option<u64>,
    /// Bit `n` set: index `top - n` was accepted.
    seen: u64,
}

impl ReplayWindow {
    fn check(&self, index: u64) -> Result<(), Error> {
        let Some(top) = self.top else { return Ok(()) };
        if index > top {
            return Ok(());
        }
        let behind = top - index;
        if behind >= REPLAY_WINDOW || self.seen & (1 << behind) != 0 {
            return Err(Error::Replayed);
        }
        Ok(())
    }

    fn accept(&mut self, index: u64) {
        match self.top {
            Some(top) if index <= top => self.seen |= 1 << (top - index),
            Some(top) => {
                let ahead = index - top;
                self.seen = if ahead >= REPLAY_WINDOW {
                    1
                } else {
                    (self.seen << ahead) | 1
                };
                self.top = Some(index);
            }
            None => {
                self.top = Some(index);
                self.seen = 1;
            }
        }
    }
}

/// One SSRC's sequence state: the ROC and the highest sequence number `s_l` (Appendix A).
#[derive(Debug, Clone, Copy)]
struct SsrcState {
    roc: u32,
    highest_seq: u16,
    window: ReplayWindow,
    /// Order of creation, for eviction.
    born: u64,
}

impl SsrcState {
    fn new(seq: u16, born: u64) -> Self {
        Self {
            roc: 0,
            highest_seq: seq,
            window: ReplayWindow::default(),
            born,
        }
    }

    /// The ROC guess `v` of Appendix A for `seq`.
    fn guess_roc(&self, seq: u16) -> u32 {
        let s_l = i32::from(self.highest_seq);
        let seq_i = i32::from(seq);
        if s_l < 32768 {
            if seq_i - s_l > 32768 {
                self.roc.wrapping_sub(1)
            } else {
                self.roc
            }
        } else if s_l - 32768 > seq_i {
            self.roc.wrapping_add(1)
        } else {
            self.roc
        }
    }

    fn update(&mut self, roc: u32, seq: u16) {
        if roc == self.roc.wrapping_add(1) {
            self.roc = roc;
            self.highest_seq = seq;
        } else if roc == self.roc && seq > self.highest_seq {
            self.highest_seq = seq;
        }
    }
}

fn packet_index(roc: u32, seq: u16) -> u64 {
    (u64::from(roc) << 16) | u64::from(seq)
}

/// SRTP/SRTCP state for one master key: see the module docs.
pub struct Context {
    suite: Suite,
    rtp: Option<SessionKeys>,
    rtcp: Option<SessionKeys>,
    ssrcs: HashMap<u32, SsrcState>,
    ssrcs_born: u64,
    /// Next SRTCP index we send.
    rtcp_send_index: u32,
    /// Replay window of SRTCP indices we received.
    rtcp_window: ReplayWindow,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("suite", &self.suite)
            .field("ssrcs", &self.ssrcs.len())
            .field("rtcp_send_index", &self.rtcp_send_index)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context for `suite`; `master` is ignored for [`Suite::Null`].
    pub fn new(suite: Suite, master: &MasterKey) -> Self {
        let (rtp, rtcp) = match suite {
            Suite::AesCm128HmacSha1_80 => (
                Some(SessionKeys::derive(
                    master,
                    [LABEL_RTP_ENCRYPTION, LABEL_RTP_AUTH, LABEL_RTP_SALT],
                )),
                Some(SessionKeys::derive(
                    master,
                    [LABEL_RTCP_ENCRYPTION, LABEL_RTCP_AUTH, LABEL_RTCP_SALT],
                )),
            ),
            Suite::Null => (None, None),
        };
        Self {
            suite,
            rtp,
            rtcp,
            ssrcs: HashMap::new(),
            ssrcs_born: 0,
            rtcp_send_index: 0,
            rtcp_window: ReplayWindow::default(),
        }
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Bytes [`Context::protect_rtp`] adds to an RTP packet (10, or 0 for the null suite).
    pub fn overhead_rtp(&self) -> usize {
        match self.suite {
            Suite::AesCm128HmacSha1_80 => AUTH_TAG_LEN,
            Suite::Null => 0,
        }
    }

    /// Bytes [`Context::protect_rtcp`] adds to an RTCP packet (14, or 0).
    pub fn overhead_rtcp(&self) -> usize {
        match self.suite {
            Suite::AesCm128HmacSha1_80 => SRTCP_INDEX_LEN + AUTH_TAG_LEN,
            Suite::Null => 0,
        }
    }

    /// Encrypts the payload of the RTP packet in `packet` in place and appends its tag.
    ///
    /// Errors: [`Error::Malformed`] for a packet without a whole RTP header.
    pub fn protect_rtp(&mut self, packet: &mut Vec<u8>) -> Result<(), Error> {
        let Some(keys) = &self.rtp else {
            return Ok(());
        };
        let (seq, ssrc, header_len) = rtp_fields(packet)?;
        let born = self.ssrcs_born;
        let state = self.ssrcs.entry(ssrc).or_insert_with(|| {
            // The first packet starts at ROC 0 (§3.3.1).
            SsrcState::new(seq, born)
        });
        let roc = state.guess_roc(seq);
        state.update(roc, seq);
        self.ssrcs_born = self.ssrcs_born.wrapping_add(1);
        let iv = keys.iv(ssrc, packet_index(roc, seq));
        if let Some(payload) = packet.get_mut(header_len..) {
            apply_aes_cm(&keys.cipher, &iv, payload);
        }
        let tag = keys.tag(&[packet, &roc.to_be_bytes()]);
        packet.extend_from_slice(&tag);
        Ok(())
    }

    /// Checks and decrypts the SRTP packet in `datagram` in place; returns the length of the
    /// plain RTP packet at its start. On error nothing changes (the window, the ROC, the bytes
    /// are left as they were, except that a failed packet's bytes are not decrypted).
    pub fn unprotect_rtp(&mut self, datagram: &mut [u8]) -> Result<usize, Error> {
        let Some(keys) = &self.rtp else {
            rtp_fields(datagram)?;
            return Ok(datagram.len());
        };
        let body_len = datagram
            .len()
            .checked_sub(AUTH_TAG_LEN)
            .ok_or(Error::Malformed)?;
        let (body, tag) = datagram.split_at_mut(body_len);
        let (seq, ssrc, header_len) = rtp_fields(body)?;
        let born = self.ssrcs_born;
        let known = self.ssrcs.get(&ssrc).copied();
        let state = known.unwrap_or_else(|| SsrcState::new(seq, born));
        let roc = state.guess_roc(seq);
        let index = packet_index(roc, seq);
        state.window.check(index)?;
        keys.check(&[body, &roc.to_be_bytes()], tag)?;
        let iv = keys.iv(ssrc, index);
        if let Some(payload) = body.get_mut(header_len..) {
            apply_aes_cm(&keys.cipher, &iv, payload);
        }
        let mut state = state;
        state.update(roc, seq);
        state.window.accept(index);
        if known.is_none() {
            if self.ssrcs.len() >= MAX_RECEIVE_SSRCS {
                self.evict_oldest_ssrc();
            }
            self.ssrcs_born = self.ssrcs_born.wrapping_add(1);
        }
        self.ssrcs.insert(ssrc, state);
        Ok(body_len)
    }

    fn evict_oldest_ssrc(&mut self) {
        if let Some(oldest) = self
            .ssrcs
            .iter()
            .min_by_key(|(_, s)| s.born)
            .map(|(k, _)| *k)
        {
            self.ssrcs.remove(&oldest);
        }
    }

    /// Encrypts the RTCP (compound) packet in `packet` after its first 8 bytes, appends
    /// `E || SRTCP index` and the tag (§3.4).
    pub fn protect_rtcp(&mut self, packet: &mut Vec<u8>) -> Result<(), Error> {
        let Some(keys) = &self.rtcp else {
            return Ok(());
        };
        let ssrc = rtcp_sender_ssrc(packet)?;
        let index = self.rtcp_send_index;
        if index > 0x7fff_ffff {
            return Err(Error::IndexExhausted);
        }
        let iv = keys.iv(ssrc, u64::from(index));
        if let Some(payload) = packet.get_mut(8..) {
            apply_aes_cm(&keys.cipher, &iv, payload);
        }
        packet.extend_from_slice(&(index | 0x8000_0000).to_be_bytes());
        let tag = keys.tag(&[packet]);
        packet.extend_from_slice(&tag);
        self.rtcp_send_index = index + 1;
        Ok(())
    }

    /// Checks and decrypts the SRTCP packet in `datagram` in place; returns the length of the
    /// plain RTCP packet at its start. Unencrypted SRTCP (E = 0) is refused.
    pub fn unprotect_rtcp(&mut self, datagram: &mut [u8]) -> Result<usize, Error> {
        let Some(keys) = &self.rtcp else {
            rtcp_sender_ssrc(datagram)?;
            return Ok(datagram.len());
        };
        let body_len = datagram
            .len()
            .checked_sub(SRTCP_INDEX_LEN + AUTH_TAG_LEN)
            .ok_or(Error::Malformed)?;
        let (authenticated, tag) = datagram.split_at_mut(body_len + SRTCP_INDEX_LEN);
        let ssrc = rtcp_sender_ssrc(authenticated)?;
        let e_index = authenticated
            .get(body_len..)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or(Error::Malformed)?;
        let index = u64::from(e_index & 0x7fff_ffff);
        self.rtcp_window.check(index)?;
        keys.check(&[authenticated], tag)?;
        if e_index & 0x8000_0000 == 0 {
            return Err(Error::NotEncrypted);
        }
        let iv = keys.iv(ssrc, index);
        if let Some(payload) = authenticated.get_mut(8..body_len) {
            apply_aes_cm(&keys.cipher, &iv, payload);
        }
        self.rtcp_window.accept(index);
        Ok(body_len)
    }
}

/// Sequence number, SSRC and header length of an RTP packet.
fn rtp_fields(packet: &[u8]) -> Result<(u16, u32, usize), Error> {
    let p = packet::RtpPacket::parse(packet).map_err(|_| Error::Malformed)?;
    Ok((p.header.sequence_number, p.header.ssrc, p.header_len))
}

/// The SSRC of an RTCP packet's sender (bytes 4..8), checking there are 8 bytes.
fn rtcp_sender_ssrc(packet: &[u8]) -> Result<u32, Error> {
    packet
        .get(4..8)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .ok_or(Error::Malformed)
}

/// Derives the SRTP session keys of `master` for label `label` (RFC 3711 §4.3), `out.len()`
/// bytes. Public for known-answer tests.
pub fn derive_session_key(master: &MasterKey, label: u8, out: &mut [u8]) {
    derive(master, label, out);
}

/// AES-128 counter-mode keystream (RFC 3711 §4.1.1) for `key` from the counter block `iv`,
/// written into `out`. Public for known-answer tests.
pub fn aes_cm_keystream(key: &[u8; 16], iv: &[u8; 16], out: &mut [u8]) {
    let cipher = Aes128::new(key.into());
    out.fill(0);
    apply_aes_cm(&cipher, iv, out);
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    /// RFC 3711 B.2: AES-CM keystream.
    #[test]
    fn rfc3711_b2_keystream() {
        let key: [u8; 16] = h("2B7E151628AED2A6ABF7158809CF4F3C").try_into().unwrap();
        let iv: [u8; 16] = h("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000").try_into().unwrap();
        let mut out = vec![0u8; 48];
        aes_cm_keystream(&key, &iv, &mut out);
        assert_eq!(
            out,
            h("E03EAD0935C95E80E166B16DD92B4EB4\
               D23513162B02D0F72A43A2FE4A5F97AB\
               41E95B3BB0A2E8DD477901E4FCA894C0")
        );
        // Blocks FEFF..FF01.
        let iv: [u8; 16] = h("F0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFF").try_into().unwrap();
        aes_cm_keystream(&key, &iv, &mut out);
        assert_eq!(
            out,
            h("EC8CDF7398607CB0F2D21675EA9EA1E4\
               362B7C3C6773516318A077D7FC5073AE\
               6A2CC3787889374FBEB4C81B17BA6C44")
        );
    }

    /// RFC 3711 B.3: key derivation.
    #[test]
    fn rfc3711_b3_key_derivation() {
        let master = MasterKey::new(
            &h("E1F97A0D3E018BE0D64FA32C06DE4139"),
            &h("0EC675AD498AFEEBB6960B3AABE6"),
        )
        .unwrap();
        let mut key = [0u8; 16];
        derive_session_key(&master, LABEL_RTP_ENCRYPTION, &mut key);
        assert_eq!(key.to_vec(), h("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut salt = [0u8; 14];
        derive_session_key(&master, LABEL_RTP_SALT, &mut salt);
        assert_eq!(salt.to_vec(), h("30CBBC08863D8C85D49DB34A9AE1"));
        let mut auth = [0u8; 20];
        derive_session_key(&master, LABEL_RTP_AUTH, &mut auth);
        assert_eq!(auth.to_vec(), h("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"));
    }

    #[test]
    fn key_lengths_are_checked_and_debug_hides_secrets() {
        assert_eq!(
            MasterKey::new(&[0; 15], &[0; 14]).unwrap_err(),
            Error::KeyLength
        );
        assert_eq!(
            MasterKey::new(&[0; 16], &[0; 13]).unwrap_err(),
            Error::KeyLength
        );
        let m = MasterKey::new(&[0xab; 16], &[0xcd; 14]).unwrap();
        assert!(!format!("{m:?}").contains("ab"));
        assert_eq!(&m.concatenated()[..16], &[0xab; 16]);
    }

    #[test]
    fn replay_window_accepts_late_and_rejects_repeats() {
        let mut w = ReplayWindow::default();
        w.accept(100);
        assert_eq!(w.check(100), Err(Error::Replayed));
        assert!(w.check(99).is_ok());
        w.accept(99);
        assert_eq!(w.check(99), Err(Error::Replayed));
        assert!(w.check(101).is_ok());
        w.accept(200);
        assert_eq!(w.check(100), Err(Error::Replayed), "behind the window");
        assert!(w.check(137).is_ok());
        w.accept(137);
        assert_eq!(w.check(137), Err(Error::Replayed));
    }

    #[test]
    fn roc_guess_follows_appendix_a() {
        let s = SsrcState::new(65_500, 0);
        assert_eq!(s.guess_roc(10), 1, "wrapped forward");
        assert_eq!(s.guess_roc(65_400), 0);
        let mut s = SsrcState::new(10, 0);
        s.roc = 5;
        assert_eq!(s.guess_roc(65_530), 4, "late packet from before the wrap");
        assert_eq!(s.guess_roc(20), 5);
    }
}
