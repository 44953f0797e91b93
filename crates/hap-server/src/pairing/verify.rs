//! Accessory side of pair-verify (protocol-notes §1.6).

use ed25519_dalek::{Signature, Signer, VerifyingKey};
use hap_tlv::{PairingError, Tlv8, TlvType};
use x25519_dalek::{EphemeralSecret, PublicKey};

use super::crypto::{hkdf_sha512_32, open, seal};
use super::{
    AccessoryIdentity, PV_ENCRYPT_INFO, PV_ENCRYPT_SALT, PV_MSG02, PV_MSG03, Pairing, SharedSecret,
    error_reply, parse_pairing_id, state_of,
};

/// What the driver must do with a pair-verify request.
#[derive(Debug)]
#[must_use]
pub enum VerifyOutcome {
    /// Send this TLV body (HTTP 200, `application/pairing+tlv8`), still in plaintext.
    Reply(Vec<u8>),
    /// M4 success: send `reply` in PLAINTEXT, then switch the connection to
    /// [`SessionCipher::accessory`](crate::session::SessionCipher::accessory)`(&shared_secret)`.
    Verified {
        /// The M4 body.
        reply: Vec<u8>,
        /// The controller that verified (as returned by the lookup).
        controller: Pairing,
        /// The X25519 shared secret; keep it for the HDS keys.
        shared_secret: SharedSecret,
    },
}

enum State {
    ExpectM1,
    /// M2 sent.
    ExpectM3 {
        shared: [u8; 32],
        session_key: [u8; 32],
        controller_pk: [u8; 32],
        accessory_pk: [u8; 32],
    },
}

/// Per-connection pair-verify state machine. A new M1 restarts it.
pub struct PairVerify {
    state: State,
}

impl Default for PairVerify {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for PairVerify {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let state = match self.state {
            State::ExpectM1 => "ExpectM1",
            State::ExpectM3 { .. } => "ExpectM3",
        };
        f.debug_struct("PairVerify").field("state", &state).finish()
    }
}

impl PairVerify {
    /// Waiting for M1.
    pub fn new() -> Self {
        Self {
            state: State::ExpectM1,
        }
    }

    /// Handles one `POST /pair-verify` body. `lookup` finds a stored pairing by controller
    /// pairing ID. Malformed input is an error reply, never a panic.
    pub fn handle(
        &mut self,
        body: &[u8],
        identity: &AccessoryIdentity,
        lookup: &dyn Fn(&str) -> Option<Pairing>,
        rng: &mut impl rand::CryptoRng,
    ) -> VerifyOutcome {
        let state = std::mem::replace(&mut self.state, State::ExpectM1);
        let Ok(tlv) = Tlv8::decode(body) else {
            let next = if matches!(state, State::ExpectM1) {
                2
            } else {
                4
            };
            return VerifyOutcome::Reply(error_reply(next, PairingError::UNKNOWN));
        };
        match (state_of(&tlv), state) {
            (Some(1), _) => self.m1(&tlv, identity, rng),
            (
                Some(3),
                State::ExpectM3 {
                    shared,
                    session_key,
                    controller_pk,
                    accessory_pk,
                },
            ) => Self::m3(
                &tlv,
                lookup,
                shared,
                &session_key,
                &controller_pk,
                &accessory_pk,
            ),
            (s, _) => {
                let next = s.map_or(2, |s| s.saturating_add(1));
                VerifyOutcome::Reply(error_reply(next, PairingError::UNKNOWN))
            }
        }
    }

    fn m1(
        &mut self,
        tlv: &Tlv8,
        identity: &AccessoryIdentity,
        rng: &mut impl rand::CryptoRng,
    ) -> VerifyOutcome {
        let Ok(controller_pk) = tlv.require_array::<32>(TlvType::PUBLIC_KEY) else {
            return VerifyOutcome::Reply(error_reply(2, PairingError::UNKNOWN));
        };
        let secret = EphemeralSecret::random_from_rng(rng);
        let accessory_pk = PublicKey::from(&secret).to_bytes();
        let shared = secret.diffie_hellman(&PublicKey::from(controller_pk));
        if !shared.was_contributory() {
            // A low-order point would make the "secret" predictable.
            return VerifyOutcome::Reply(error_reply(2, PairingError::AUTHENTICATION));
        }
        let shared = shared.to_bytes();
        let session_key = hkdf_sha512_32(&shared, PV_ENCRYPT_SALT, PV_ENCRYPT_INFO);

        let id = identity.pairing_id.as_bytes();
        let mut info = Vec::with_capacity(64 + id.len());
        info.extend_from_slice(&accessory_pk);
        info.extend_from_slice(id);
        info.extend_from_slice(&controller_pk);
        let signature = identity.signing_key.sign(&info);
        let mut sub = Tlv8::new();
        sub.push(TlvType::IDENTIFIER, id)
            .push(TlvType::SIGNATURE, &signature.to_bytes());
        let mut reply = Tlv8::new();
        reply
            .push_u8(TlvType::STATE, 2)
            .push(TlvType::PUBLIC_KEY, &accessory_pk)
            .push_vec(
                TlvType::ENCRYPTED_DATA,
                seal(&session_key, PV_MSG02, &sub.encode()),
            );
        self.state = State::ExpectM3 {
            shared,
            session_key,
            controller_pk,
            accessory_pk,
        };
        VerifyOutcome::Reply(reply.encode())
    }

    fn m3(
        tlv: &Tlv8,
        lookup: &dyn Fn(&str) -> Option<Pairing>,
        shared: [u8; 32],
        session_key: &[u8; 32],
        controller_pk: &[u8; 32],
        accessory_pk: &[u8; 32],
    ) -> VerifyOutcome {
        let auth_failed = || VerifyOutcome::Reply(error_reply(4, PairingError::AUTHENTICATION));
        let Ok(sealed) = tlv.require(TlvType::ENCRYPTED_DATA) else {
            return VerifyOutcome::Reply(error_reply(4, PairingError::UNKNOWN));
        };
        let Some(plain) = open(session_key, PV_MSG03, sealed) else {
            return auth_failed();
        };
        let Ok(sub) = Tlv8::decode(&plain) else {
            return auth_failed();
        };
        let (Ok(id), Ok(sig)) = (
            sub.require(TlvType::IDENTIFIER),
            sub.require_array::<64>(TlvType::SIGNATURE),
        ) else {
            return auth_failed();
        };
        let Some(controller) = parse_pairing_id(id).and_then(|id| lookup(&id)) else {
            tracing::debug!("pair-verify: unknown controller");
            return auth_failed();
        };
        let mut info = Vec::with_capacity(64 + id.len());
        info.extend_from_slice(controller_pk);
        info.extend_from_slice(id);
        info.extend_from_slice(accessory_pk);
        let verified = VerifyingKey::from_bytes(&controller.ltpk)
            .and_then(|vk| vk.verify_strict(&info, &Signature::from_bytes(&sig)));
        if verified.is_err() {
            tracing::debug!(controller = %controller.controller_id, "pair-verify: bad signature");
            return auth_failed();
        }
        let mut reply = Tlv8::new();
        reply.push_u8(TlvType::STATE, 4);
        tracing::debug!(controller = %controller.controller_id, "pair-verify: verified");
        VerifyOutcome::Verified {
            reply: reply.encode(),
            controller,
            shared_secret: SharedSecret::from_bytes(shared),
        }
    }
}
