//! Pair-setup (M1–M6) and pair-verify (M1–M4), accessory and controller sides.
//!
//! Pure state machines: TLV bodies in, TLV bodies and outcomes out. The driver owns the
//! sockets, the persistence and the connection ids (protocol-notes §1.5, §1.6).
//!
//! ```text
//!  PairSetup (one per accessory)          PairVerify (one per connection)
//!  Idle ─M1→ ExpectM3 ─M3→ ExpectM5 ─M5→ Idle    ExpectM1 ─M1→ ExpectM3 ─M3→ Done
//!        (M2)          (M4)        (M6, Paired)              (M2)          (M4, Verified)
//! ```
//! Any error reply (State = next state, Error = code) returns the machine to its start.

mod controller_side;
pub(crate) mod crypto;
#[cfg(test)]
mod interop;
mod setup;
mod srp;
#[cfg(test)]
mod tests;
mod verify;

use core::fmt;

use ed25519_dalek::SigningKey;
use hap_tlv::{PairingError, Tlv8, TlvType};

/// Controller side of pair-setup and pair-verify (tests, hub simulator, selftest).
pub mod controller {
    pub use super::controller_side::{
        AccessoryPairing, ControllerError, ControllerIdentity, SetupClient, VerifyClient,
    };
}

pub use setup::{ABANDONED_AFTER, PairSetup, SetupContext, SetupOutcome};
pub use verify::{PairVerify, VerifyOutcome};

/// Failed setup-code attempts after which M1 is answered with MaxTries (HAP spec §5.6.1;
/// HomeKitADK counts persistently).
pub const MAX_FAILED_ATTEMPTS: u32 = 100;

/// The accessory's long-term identity. `Debug` does not print the key.
#[derive(Clone)]
pub struct AccessoryIdentity {
    /// Device ID / accessory pairing ID, `"AA:BB:CC:DD:EE:FF"` (the mDNS `id`).
    pub pairing_id: String,
    /// Long-term Ed25519 secret key (LTSK).
    pub signing_key: SigningKey,
}

impl AccessoryIdentity {
    /// A random pairing ID and key pair.
    pub fn generate(rng: &mut impl rand::CryptoRng) -> Self {
        let mut id = [0u8; 6];
        rng.fill_bytes(&mut id);
        let pairing_id = id
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        Self {
            pairing_id,
            signing_key: SigningKey::generate(rng),
        }
    }

    /// The long-term public key (LTPK).
    pub fn public_key(&self) -> [u8; 32] {
        self.signing_key.verifying_key().to_bytes()
    }
}

impl fmt::Debug for AccessoryIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessoryIdentity")
            .field("pairing_id", &self.pairing_id)
            .field("public_key", &HexKey(&self.public_key()))
            .finish_non_exhaustive()
    }
}

/// A paired controller as stored by the accessory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pairing {
    /// Controller pairing ID (usually an upper-case UUID string).
    pub controller_id: String,
    /// Controller long-term Ed25519 public key.
    pub ltpk: [u8; 32],
    /// Admin permission (may add/remove/list pairings).
    pub admin: bool,
}

/// The X25519 shared secret of a pair-verify: the IKM of the session keys (§1.7) and the HDS
/// keys (§4.2). `Debug` prints no contents.
pub struct SharedSecret([u8; 32]);

impl SharedSecret {
    /// The 32 secret bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Wraps 32 secret bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

struct HexKey<'a>(&'a [u8]);

impl fmt::Debug for HexKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// `State = state, Error = code`: every pairing error reply (protocol-notes §1.4).
pub(crate) fn error_reply(state: u8, code: PairingError) -> Vec<u8> {
    let mut tlv = Tlv8::new();
    tlv.push_u8(TlvType::STATE, state)
        .push_u8(TlvType::ERROR, code.0);
    tlv.encode()
}

/// Longest controller pairing ID we accept (iOS sends a 36-byte UUID string; HomeKitADK's
/// limit is 36, we allow some slack for other controllers).
pub(crate) const MAX_PAIRING_ID_BYTES: usize = 64;

/// A pairing identifier from a sub-TLV: non-empty UTF-8 of bounded length.
pub(crate) fn parse_pairing_id(v: &[u8]) -> Option<String> {
    if v.is_empty() || v.len() > MAX_PAIRING_ID_BYTES {
        return None;
    }
    String::from_utf8(v.to_vec()).ok()
}

/// Reads the State item (one byte) if it is there.
pub(crate) fn state_of(tlv: &Tlv8) -> Option<u8> {
    tlv.require_u8(TlvType::STATE).ok()
}

// HKDF salts/infos and nonces, protocol-notes §1.5–§1.7 (ASCII, no terminator).
pub(crate) const PS_ENCRYPT_SALT: &[u8] = b"Pair-Setup-Encrypt-Salt";
pub(crate) const PS_ENCRYPT_INFO: &[u8] = b"Pair-Setup-Encrypt-Info";
pub(crate) const PS_CONTROLLER_SIGN_SALT: &[u8] = b"Pair-Setup-Controller-Sign-Salt";
pub(crate) const PS_CONTROLLER_SIGN_INFO: &[u8] = b"Pair-Setup-Controller-Sign-Info";
pub(crate) const PS_ACCESSORY_SIGN_SALT: &[u8] = b"Pair-Setup-Accessory-Sign-Salt";
pub(crate) const PS_ACCESSORY_SIGN_INFO: &[u8] = b"Pair-Setup-Accessory-Sign-Info";
pub(crate) const PV_ENCRYPT_SALT: &[u8] = b"Pair-Verify-Encrypt-Salt";
pub(crate) const PV_ENCRYPT_INFO: &[u8] = b"Pair-Verify-Encrypt-Info";
pub(crate) const PS_MSG05: &[u8; 8] = b"PS-Msg05";
pub(crate) const PS_MSG06: &[u8; 8] = b"PS-Msg06";
pub(crate) const PV_MSG02: &[u8; 8] = b"PV-Msg02";
pub(crate) const PV_MSG03: &[u8; 8] = b"PV-Msg03";
