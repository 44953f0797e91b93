//! Accessory side of pair-setup (protocol-notes §1.5).

use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, Signer, VerifyingKey};
use hap_tlv::{Method, PairingError, Tlv8, TlvType};

use super::crypto::{hkdf_sha512_32, open, seal};
use super::srp::{self, SrpError};
use super::{
    AccessoryIdentity, MAX_FAILED_ATTEMPTS, PS_ACCESSORY_SIGN_INFO, PS_ACCESSORY_SIGN_SALT,
    PS_CONTROLLER_SIGN_INFO, PS_CONTROLLER_SIGN_SALT, PS_ENCRYPT_INFO, PS_ENCRYPT_SALT, PS_MSG05,
    PS_MSG06, Pairing, error_reply, parse_pairing_id, state_of,
};

/// What pair-setup needs to know about the accessory for one request.
#[derive(Debug)]
pub struct SetupContext<'a> {
    /// The accessory's long-term identity (signs M6).
    pub identity: &'a AccessoryIdentity,
    /// Setup code `"XXX-XX-XXX"`, used with dashes as the SRP password.
    pub setup_code: &'a str,
    /// Whether any pairing exists; then M1 gets Error Unavailable.
    pub paired: bool,
    /// Persisted count of wrong setup codes; at [`MAX_FAILED_ATTEMPTS`] M1 gets MaxTries.
    pub failed_attempts: u32,
}

/// What the driver must do with a pair-setup request.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum SetupOutcome {
    /// Send this TLV body (HTTP 200, `application/pairing+tlv8`).
    Reply(Vec<u8>),
    /// Wrong setup code: send the body AND count (and persist) one failed attempt.
    WrongCode(Vec<u8>),
    /// M6: persist `pairing` (admin) durably BEFORE sending `reply`.
    Paired {
        /// The M6 body.
        reply: Vec<u8>,
        /// The new admin pairing.
        pairing: Pairing,
    },
}

enum State {
    Idle,
    /// M2 sent to `conn`.
    ExpectM3 {
        conn: u64,
        srp: Box<srp::Server>,
    },
    /// M4 sent to `conn`; `session_key` is K from SRP.
    ExpectM5 {
        conn: u64,
        session_key: [u8; 64],
    },
}

impl State {
    fn owner(&self) -> Option<u64> {
        match self {
            State::Idle => None,
            State::ExpectM3 { conn, .. } | State::ExpectM5 { conn, .. } => Some(*conn),
        }
    }

    /// The State value our next reply would carry.
    fn next_reply_state(&self) -> u8 {
        match self {
            State::Idle => 2,
            State::ExpectM3 { .. } => 4,
            State::ExpectM5 { .. } => 6,
        }
    }
}

/// Accessory-wide pair-setup state machine: one pair-setup at a time, another connection gets
/// Busy (HomeKitADK). `conn` is an opaque connection id chosen by the driver; call
/// [`PairSetup::connection_closed`] so an abandoned pair-setup does not block others.
pub struct PairSetup {
    state: State,
    /// When the owner's last step was answered.
    since: Option<Instant>,
}

/// A pair-setup whose controller has not taken its next step for this long is abandoned: the
/// next controller's M1 resets it instead of getting Busy (HomeKitADK resets after 30 s).
pub const ABANDONED_AFTER: Duration = Duration::from_secs(30);

impl Default for PairSetup {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for PairSetup {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let state = match self.state {
            State::Idle => "Idle",
            State::ExpectM3 { .. } => "ExpectM3",
            State::ExpectM5 { .. } => "ExpectM5",
        };
        f.debug_struct("PairSetup")
            .field("state", &state)
            .field("conn", &self.state.owner())
            .finish()
    }
}

impl PairSetup {
    /// No pair-setup in progress.
    pub fn new() -> Self {
        Self {
            state: State::Idle,
            since: None,
        }
    }

    /// Whether the pair-setup in progress (if any) has waited [`ABANDONED_AFTER`] at `now`.
    pub fn is_abandoned(&self, now: Instant) -> bool {
        self.state.owner().is_some()
            && self
                .since
                .is_some_and(|t| now.saturating_duration_since(t) >= ABANDONED_AFTER)
    }

    /// Whether a pair-setup is in progress (and on which connection).
    pub fn in_progress(&self) -> Option<u64> {
        self.state.owner()
    }

    /// Handles one `POST /pair-setup` body from connection `conn` at `now`. Malformed input
    /// is an error reply, never a panic.
    pub fn handle(
        &mut self,
        conn: u64,
        body: &[u8],
        ctx: &SetupContext<'_>,
        now: Instant,
        rng: &mut impl rand::CryptoRng,
    ) -> SetupOutcome {
        if self.state.owner().is_some_and(|o| o != conn) && self.is_abandoned(now) {
            tracing::info!(
                abandoned_by = self.state.owner(),
                conn,
                "pair-setup: the previous attempt was abandoned; starting over"
            );
            self.state = State::Idle;
        }
        let outcome = self.step(conn, body, ctx, rng);
        if self.state.owner() == Some(conn) {
            self.since = Some(now);
        }
        outcome
    }

    fn step(
        &mut self,
        conn: u64,
        body: &[u8],
        ctx: &SetupContext<'_>,
        rng: &mut impl rand::CryptoRng,
    ) -> SetupOutcome {
        let owner = self.state.owner();
        let Ok(tlv) = Tlv8::decode(body) else {
            tracing::debug!(conn, "pair-setup: malformed TLV");
            return self.fail(conn, self.state.next_reply_state(), PairingError::UNKNOWN);
        };
        let state = state_of(&tlv);
        let reply_state = state.map_or(self.state.next_reply_state(), |s| s.saturating_add(1));
        if owner.is_some_and(|o| o != conn) {
            // Another controller is mid-pair-setup (HomeKitADK: Busy).
            return SetupOutcome::Reply(error_reply(reply_state, PairingError::BUSY));
        }
        match (state, std::mem::replace(&mut self.state, State::Idle)) {
            (Some(1), _) => self.m1(conn, &tlv, ctx, rng),
            (Some(3), State::ExpectM3 { srp, .. }) => self.m3(conn, &tlv, &srp),
            (Some(5), State::ExpectM5 { session_key, .. }) => {
                Self::m5(&tlv, ctx.identity, &session_key)
            }
            (state, _) => {
                tracing::debug!(conn, ?state, "pair-setup: unexpected state");
                SetupOutcome::Reply(error_reply(reply_state, PairingError::UNKNOWN))
            }
        }
    }

    /// Forgets a pair-setup owned by `conn`.
    pub fn connection_closed(&mut self, conn: u64) {
        if self.state.owner() == Some(conn) {
            self.state = State::Idle;
        }
    }

    fn fail(&mut self, conn: u64, reply_state: u8, code: PairingError) -> SetupOutcome {
        if self.state.owner() == Some(conn) {
            self.state = State::Idle;
        }
        SetupOutcome::Reply(error_reply(reply_state, code))
    }

    fn m1(
        &mut self,
        conn: u64,
        tlv: &Tlv8,
        ctx: &SetupContext<'_>,
        rng: &mut impl rand::CryptoRng,
    ) -> SetupOutcome {
        // Method 1 (with MFi auth) is accepted as plain pair-setup, like HAP-NodeJS; the Flags
        // item (transient/split) is ignored, so every pairing is a normal one.
        match tlv.require_u8(TlvType::METHOD).map(Method) {
            Ok(Method::PAIR_SETUP | Method::PAIR_SETUP_WITH_AUTH) => {}
            _ => return SetupOutcome::Reply(error_reply(2, PairingError::UNKNOWN)),
        }
        if ctx.paired {
            return SetupOutcome::Reply(error_reply(2, PairingError::UNAVAILABLE));
        }
        if ctx.failed_attempts >= MAX_FAILED_ATTEMPTS {
            return SetupOutcome::Reply(error_reply(2, PairingError::MAX_TRIES));
        }
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        let srp = srp::Server::new(ctx.setup_code.as_bytes(), salt, || {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            b
        });
        let mut reply = Tlv8::new();
        reply
            .push_u8(TlvType::STATE, 2)
            .push(TlvType::PUBLIC_KEY, srp.public_key())
            .push(TlvType::SALT, srp.salt());
        self.state = State::ExpectM3 {
            conn,
            srp: Box::new(srp),
        };
        tracing::debug!(conn, "pair-setup: M2 sent");
        SetupOutcome::Reply(reply.encode())
    }

    fn m3(&mut self, conn: u64, tlv: &Tlv8, srp: &srp::Server) -> SetupOutcome {
        let (Ok(a_pub), Ok(proof)) = (
            tlv.require(TlvType::PUBLIC_KEY),
            tlv.require(TlvType::PROOF),
        ) else {
            return SetupOutcome::Reply(error_reply(4, PairingError::UNKNOWN));
        };
        match srp.verify(a_pub, proof) {
            Ok((session_key, m2)) => {
                let mut reply = Tlv8::new();
                reply.push_u8(TlvType::STATE, 4).push(TlvType::PROOF, &m2);
                self.state = State::ExpectM5 { conn, session_key };
                tracing::debug!(conn, "pair-setup: M4 sent");
                SetupOutcome::Reply(reply.encode())
            }
            Err(SrpError::BadProof) => {
                tracing::debug!(conn, "pair-setup: wrong setup code");
                SetupOutcome::WrongCode(error_reply(4, PairingError::AUTHENTICATION))
            }
            Err(SrpError::BadPublicKey) => {
                SetupOutcome::Reply(error_reply(4, PairingError::AUTHENTICATION))
            }
        }
    }

    fn m5(tlv: &Tlv8, identity: &AccessoryIdentity, session_key: &[u8; 64]) -> SetupOutcome {
        let auth_failed = || SetupOutcome::Reply(error_reply(6, PairingError::AUTHENTICATION));
        let Ok(sealed) = tlv.require(TlvType::ENCRYPTED_DATA) else {
            return SetupOutcome::Reply(error_reply(6, PairingError::UNKNOWN));
        };
        let key = hkdf_sha512_32(session_key, PS_ENCRYPT_SALT, PS_ENCRYPT_INFO);
        // HAP-NodeJS answers a decryption failure with State=4; we follow the ADK (State=6).
        let Some(plain) = open(&key, PS_MSG05, sealed) else {
            return auth_failed();
        };
        let Ok(sub) = Tlv8::decode(&plain) else {
            return auth_failed();
        };
        let (Ok(id), Ok(ltpk), Ok(sig)) = (
            sub.require(TlvType::IDENTIFIER),
            sub.require_array::<32>(TlvType::PUBLIC_KEY),
            sub.require_array::<64>(TlvType::SIGNATURE),
        ) else {
            return auth_failed();
        };
        let Some(controller_id) = parse_pairing_id(id) else {
            return auth_failed();
        };
        let device_x = hkdf_sha512_32(
            session_key,
            PS_CONTROLLER_SIGN_SALT,
            PS_CONTROLLER_SIGN_INFO,
        );
        let mut info = Vec::with_capacity(32 + id.len() + 32);
        info.extend_from_slice(&device_x);
        info.extend_from_slice(id);
        info.extend_from_slice(&ltpk);
        let verified = VerifyingKey::from_bytes(&ltpk)
            .and_then(|vk| vk.verify_strict(&info, &Signature::from_bytes(&sig)));
        if verified.is_err() {
            tracing::debug!("pair-setup: bad M5 signature");
            return auth_failed();
        }

        let accessory_x =
            hkdf_sha512_32(session_key, PS_ACCESSORY_SIGN_SALT, PS_ACCESSORY_SIGN_INFO);
        let accessory_ltpk = identity.public_key();
        let mut info = Vec::with_capacity(32 + identity.pairing_id.len() + 32);
        info.extend_from_slice(&accessory_x);
        info.extend_from_slice(identity.pairing_id.as_bytes());
        info.extend_from_slice(&accessory_ltpk);
        let signature = identity.signing_key.sign(&info);
        let mut sub = Tlv8::new();
        sub.push(TlvType::IDENTIFIER, identity.pairing_id.as_bytes())
            .push(TlvType::PUBLIC_KEY, &accessory_ltpk)
            .push(TlvType::SIGNATURE, &signature.to_bytes());
        let mut reply = Tlv8::new();
        reply
            .push_u8(TlvType::STATE, 6)
            .push_vec(TlvType::ENCRYPTED_DATA, seal(&key, PS_MSG06, &sub.encode()));
        tracing::debug!(controller = %controller_id, "pair-setup: paired");
        SetupOutcome::Paired {
            reply: reply.encode(),
            pairing: Pairing {
                controller_id,
                ltpk,
                admin: true,
            },
        }
    }
}
