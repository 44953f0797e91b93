//! Controller side of pair-setup and pair-verify: produces M1/M3/M5 and checks M2/M4/M6.
//! Used by in-memory tests, the hub simulator and `selftest`.

use core::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hap_tlv::{Method, PairingError, Tlv8, TlvType};
use x25519_dalek::{EphemeralSecret, PublicKey};

use super::crypto::{hkdf_sha512_32, open, seal};
use super::srp::{self, HASH_BYTES, SrpError};
use super::{
    HexKey, PS_ACCESSORY_SIGN_INFO, PS_ACCESSORY_SIGN_SALT, PS_CONTROLLER_SIGN_INFO,
    PS_CONTROLLER_SIGN_SALT, PS_ENCRYPT_INFO, PS_ENCRYPT_SALT, PS_MSG05, PS_MSG06, PV_ENCRYPT_INFO,
    PV_ENCRYPT_SALT, PV_MSG02, PV_MSG03, SharedSecret, parse_pairing_id,
};

/// Why the controller side rejected an accessory reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerError {
    /// The reply is not valid TLV8 or lacks an item.
    #[error("malformed pairing reply: {0}")]
    Tlv(#[from] hap_tlv::Error),
    /// The accessory answered with an Error item.
    #[error("accessory returned pairing error {code:?} in state {state}")]
    Accessory {
        /// The reply's State.
        state: u8,
        /// The reply's Error code.
        code: PairingError,
    },
    /// The reply carries a different State than the step expects.
    #[error("expected state {expected}, got {got}")]
    UnexpectedState {
        /// The state this step expects.
        expected: u8,
        /// The state received.
        got: u8,
    },
    /// A method was called out of order (e.g. M4 before M2).
    #[error("pairing step called out of order")]
    OutOfOrder,
    /// The accessory's SRP public key B is invalid.
    #[error("invalid SRP public key from accessory")]
    BadPublicKey,
    /// The accessory's SRP proof M2 does not match (it does not know the setup code).
    #[error("accessory SRP proof does not match")]
    BadProof,
    /// Encrypted data did not authenticate.
    #[error("encrypted data failed authentication")]
    Decrypt,
    /// The accessory's signature or identity does not check out.
    #[error("accessory signature or identity invalid")]
    BadSignature,
}

/// A controller's long-term identity. `Debug` does not print the key.
#[derive(Clone)]
pub struct ControllerIdentity {
    /// Controller pairing ID (an upper-case UUID string, like iOS).
    pub pairing_id: String,
    /// Long-term Ed25519 secret key.
    pub signing_key: SigningKey,
}

impl ControllerIdentity {
    /// A random UUID-style pairing ID and key pair.
    pub fn generate(rng: &mut impl rand::CryptoRng) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
        let part = |r: core::ops::Range<usize>| hex.get(r).unwrap_or_default().to_owned();
        let pairing_id = [
            part(0..8),
            part(8..12),
            part(12..16),
            part(16..20),
            part(20..32),
        ]
        .join("-");
        Self {
            pairing_id,
            signing_key: SigningKey::generate(rng),
        }
    }

    /// The long-term public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing_key.verifying_key().to_bytes()
    }
}

impl fmt::Debug for ControllerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControllerIdentity")
            .field("pairing_id", &self.pairing_id)
            .field("public_key", &HexKey(&self.public_key()))
            .finish_non_exhaustive()
    }
}

/// The accessory as the controller stores it after pair-setup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessoryPairing {
    /// Accessory pairing ID (device ID).
    pub pairing_id: String,
    /// Accessory long-term public key.
    pub ltpk: [u8; 32],
}

/// Decodes a reply, surfaces an Error item, and checks the State.
fn expect_state(body: &[u8], expected: u8) -> Result<Tlv8, ControllerError> {
    let tlv = Tlv8::decode(body)?;
    let state = tlv.require_u8(TlvType::STATE)?;
    if let Some(code) = tlv.get(TlvType::ERROR) {
        return Err(ControllerError::Accessory {
            state,
            code: PairingError(code.first().copied().unwrap_or(0)),
        });
    }
    if state != expected {
        return Err(ControllerError::UnexpectedState {
            expected,
            got: state,
        });
    }
    Ok(tlv)
}

enum SetupStep {
    Start,
    SentM1,
    SentM3 {
        m2: [u8; HASH_BYTES],
        k: [u8; HASH_BYTES],
    },
    SentM5 {
        k: [u8; HASH_BYTES],
    },
    Done,
}

/// Controller side of pair-setup: `m1()`, `handle_m2()` → M3, `handle_m4()` → M5,
/// `handle_m6()` → the accessory's pairing.
pub struct SetupClient {
    identity: ControllerIdentity,
    setup_code: String,
    step: SetupStep,
}

impl fmt::Debug for SetupClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetupClient")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl SetupClient {
    /// A pair-setup for `identity` with `setup_code` (`"XXX-XX-XXX"`).
    pub fn new(identity: ControllerIdentity, setup_code: &str) -> Self {
        Self {
            identity,
            setup_code: setup_code.to_owned(),
            step: SetupStep::Start,
        }
    }

    /// M1: State=1, Method=0 (pair-setup).
    pub fn m1(&mut self) -> Vec<u8> {
        self.step = SetupStep::SentM1;
        let mut tlv = Tlv8::new();
        tlv.push_u8(TlvType::STATE, 1)
            .push_u8(TlvType::METHOD, Method::PAIR_SETUP.0);
        tlv.encode()
    }

    /// Checks M2 and returns M3 (A and proof M1).
    ///
    /// # Errors
    /// [`ControllerError`] if M2 is an error, malformed, or carries an invalid B.
    pub fn handle_m2(
        &mut self,
        body: &[u8],
        rng: &mut impl rand::CryptoRng,
    ) -> Result<Vec<u8>, ControllerError> {
        if !matches!(self.step, SetupStep::SentM1) {
            return Err(ControllerError::OutOfOrder);
        }
        let tlv = expect_state(body, 2)?;
        let b_pub = tlv.require(TlvType::PUBLIC_KEY)?;
        let salt = tlv.require(TlvType::SALT)?;
        let mut a = [0u8; 32];
        rng.fill_bytes(&mut a);
        let proof = srp::client_proof(self.setup_code.as_bytes(), salt, b_pub, &a)
            .map_err(|_: SrpError| ControllerError::BadPublicKey)?;
        self.step = SetupStep::SentM3 {
            m2: proof.m2,
            k: proof.k,
        };
        let mut m3 = Tlv8::new();
        m3.push_u8(TlvType::STATE, 3)
            .push(TlvType::PUBLIC_KEY, &proof.a_pub)
            .push(TlvType::PROOF, &proof.m1);
        Ok(m3.encode())
    }

    /// Checks M4 (the accessory's proof) and returns M5 (our identity, encrypted).
    ///
    /// # Errors
    /// [`ControllerError`] on an error reply (e.g. wrong setup code) or a wrong proof.
    pub fn handle_m4(&mut self, body: &[u8]) -> Result<Vec<u8>, ControllerError> {
        let SetupStep::SentM3 { m2, k } = self.step else {
            return Err(ControllerError::OutOfOrder);
        };
        self.step = SetupStep::Done;
        let tlv = expect_state(body, 4)?;
        if !srp::proof_matches(&m2, tlv.require(TlvType::PROOF)?) {
            return Err(ControllerError::BadProof);
        }
        let device_x = hkdf_sha512_32(&k, PS_CONTROLLER_SIGN_SALT, PS_CONTROLLER_SIGN_INFO);
        let ltpk = self.identity.public_key();
        let id = self.identity.pairing_id.as_bytes();
        let mut info = Vec::with_capacity(64 + id.len());
        info.extend_from_slice(&device_x);
        info.extend_from_slice(id);
        info.extend_from_slice(&ltpk);
        let signature = self.identity.signing_key.sign(&info);
        let mut sub = Tlv8::new();
        sub.push(TlvType::IDENTIFIER, id)
            .push(TlvType::PUBLIC_KEY, &ltpk)
            .push(TlvType::SIGNATURE, &signature.to_bytes());
        let key = hkdf_sha512_32(&k, PS_ENCRYPT_SALT, PS_ENCRYPT_INFO);
        let mut m5 = Tlv8::new();
        m5.push_u8(TlvType::STATE, 5)
            .push_vec(TlvType::ENCRYPTED_DATA, seal(&key, PS_MSG05, &sub.encode()));
        self.step = SetupStep::SentM5 { k };
        Ok(m5.encode())
    }

    /// K from SRP, for tests that forge an M5.
    #[cfg(test)]
    pub(crate) fn session_key(&self) -> Option<[u8; HASH_BYTES]> {
        match self.step {
            SetupStep::SentM5 { k } | SetupStep::SentM3 { k, .. } => Some(k),
            _ => None,
        }
    }

    /// Checks M6 and returns the accessory's pairing ID and LTPK.
    ///
    /// # Errors
    /// [`ControllerError`] on an error reply, undecryptable data or a bad signature.
    pub fn handle_m6(&mut self, body: &[u8]) -> Result<AccessoryPairing, ControllerError> {
        let SetupStep::SentM5 { k } = self.step else {
            return Err(ControllerError::OutOfOrder);
        };
        self.step = SetupStep::Done;
        let tlv = expect_state(body, 6)?;
        let key = hkdf_sha512_32(&k, PS_ENCRYPT_SALT, PS_ENCRYPT_INFO);
        let plain = open(&key, PS_MSG06, tlv.require(TlvType::ENCRYPTED_DATA)?)
            .ok_or(ControllerError::Decrypt)?;
        let sub = Tlv8::decode(&plain)?;
        let id = sub.require(TlvType::IDENTIFIER)?;
        let ltpk = sub.require_array::<32>(TlvType::PUBLIC_KEY)?;
        let sig = sub.require_array::<64>(TlvType::SIGNATURE)?;
        let pairing_id = parse_pairing_id(id).ok_or(ControllerError::BadSignature)?;
        let accessory_x = hkdf_sha512_32(&k, PS_ACCESSORY_SIGN_SALT, PS_ACCESSORY_SIGN_INFO);
        let mut info = Vec::with_capacity(64 + id.len());
        info.extend_from_slice(&accessory_x);
        info.extend_from_slice(id);
        info.extend_from_slice(&ltpk);
        VerifyingKey::from_bytes(&ltpk)
            .and_then(|vk| vk.verify_strict(&info, &Signature::from_bytes(&sig)))
            .map_err(|_| ControllerError::BadSignature)?;
        Ok(AccessoryPairing { pairing_id, ltpk })
    }
}

enum VerifyStep {
    Start(EphemeralSecret),
    SentM1(EphemeralSecret),
    SentM3 { shared: [u8; 32] },
    Done,
}

/// Controller side of pair-verify: `m1()`, `handle_m2()` → M3, `handle_m4()` → the shared
/// secret for [`SessionCipher::controller`](crate::session::SessionCipher::controller).
pub struct VerifyClient {
    identity: ControllerIdentity,
    accessory: AccessoryPairing,
    public_key: [u8; 32],
    step: VerifyStep,
}

impl fmt::Debug for VerifyClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyClient")
            .field("identity", &self.identity)
            .field("accessory", &self.accessory)
            .finish_non_exhaustive()
    }
}

impl VerifyClient {
    /// A pair-verify of `identity` against the accessory paired earlier.
    pub fn new(
        identity: ControllerIdentity,
        accessory: AccessoryPairing,
        rng: &mut impl rand::CryptoRng,
    ) -> Self {
        let secret = EphemeralSecret::random_from_rng(rng);
        Self {
            identity,
            accessory,
            public_key: PublicKey::from(&secret).to_bytes(),
            step: VerifyStep::Start(secret),
        }
    }

    /// M1: State=1, our ephemeral X25519 public key.
    ///
    /// # Errors
    /// [`ControllerError::OutOfOrder`] if called twice.
    pub fn m1(&mut self) -> Result<Vec<u8>, ControllerError> {
        let VerifyStep::Start(secret) = std::mem::replace(&mut self.step, VerifyStep::Done) else {
            return Err(ControllerError::OutOfOrder);
        };
        self.step = VerifyStep::SentM1(secret);
        let mut tlv = Tlv8::new();
        tlv.push_u8(TlvType::STATE, 1)
            .push(TlvType::PUBLIC_KEY, &self.public_key);
        Ok(tlv.encode())
    }

    /// Checks M2 (the accessory's identity and signature) and returns M3.
    ///
    /// # Errors
    /// [`ControllerError`] on an error reply, undecryptable data, a foreign identity or a bad
    /// signature.
    pub fn handle_m2(&mut self, body: &[u8]) -> Result<Vec<u8>, ControllerError> {
        let VerifyStep::SentM1(secret) = std::mem::replace(&mut self.step, VerifyStep::Done) else {
            return Err(ControllerError::OutOfOrder);
        };
        let tlv = expect_state(body, 2)?;
        let accessory_pk = tlv.require_array::<32>(TlvType::PUBLIC_KEY)?;
        let shared = secret.diffie_hellman(&PublicKey::from(accessory_pk));
        if !shared.was_contributory() {
            return Err(ControllerError::BadSignature);
        }
        let shared = shared.to_bytes();
        let key = hkdf_sha512_32(&shared, PV_ENCRYPT_SALT, PV_ENCRYPT_INFO);
        let plain = open(&key, PV_MSG02, tlv.require(TlvType::ENCRYPTED_DATA)?)
            .ok_or(ControllerError::Decrypt)?;
        let sub = Tlv8::decode(&plain)?;
        let id = sub.require(TlvType::IDENTIFIER)?;
        let sig = sub.require_array::<64>(TlvType::SIGNATURE)?;
        if id != self.accessory.pairing_id.as_bytes() {
            return Err(ControllerError::BadSignature);
        }
        let mut info = Vec::with_capacity(64 + id.len());
        info.extend_from_slice(&accessory_pk);
        info.extend_from_slice(id);
        info.extend_from_slice(&self.public_key);
        VerifyingKey::from_bytes(&self.accessory.ltpk)
            .and_then(|vk| vk.verify_strict(&info, &Signature::from_bytes(&sig)))
            .map_err(|_| ControllerError::BadSignature)?;

        let our_id = self.identity.pairing_id.as_bytes();
        let mut info = Vec::with_capacity(64 + our_id.len());
        info.extend_from_slice(&self.public_key);
        info.extend_from_slice(our_id);
        info.extend_from_slice(&accessory_pk);
        let signature = self.identity.signing_key.sign(&info);
        let mut sub = Tlv8::new();
        sub.push(TlvType::IDENTIFIER, our_id)
            .push(TlvType::SIGNATURE, &signature.to_bytes());
        let mut m3 = Tlv8::new();
        m3.push_u8(TlvType::STATE, 3)
            .push_vec(TlvType::ENCRYPTED_DATA, seal(&key, PV_MSG03, &sub.encode()));
        self.step = VerifyStep::SentM3 { shared };
        Ok(m3.encode())
    }

    /// Checks M4 and returns the shared secret.
    ///
    /// # Errors
    /// [`ControllerError`] on an error reply (e.g. the accessory does not know us).
    pub fn handle_m4(&mut self, body: &[u8]) -> Result<SharedSecret, ControllerError> {
        let VerifyStep::SentM3 { shared } = std::mem::replace(&mut self.step, VerifyStep::Done)
        else {
            return Err(ControllerError::OutOfOrder);
        };
        expect_state(body, 4)?;
        Ok(SharedSecret::from_bytes(shared))
    }
}
