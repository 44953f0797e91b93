//! Typed pairing TLV numbers: open newtypes, so unknown values round-trip and print as hex.
//!
//! Source: HAP spec §5.15 (TLV types, methods, error codes), HomeKitADK `HAPPairing.h`; the same
//! numbers are in HAP-NodeJS `internal-types.ts` (protocol-notes §1.4).

use core::fmt;

/// Writes `Name(0x..)` for a known value and `Type(0x..)` for any other.
fn fmt_named(f: &mut fmt::Formatter<'_>, ty_name: &str, name: Option<&str>, v: u8) -> fmt::Result {
    match name {
        Some(name) => write!(f, "{name}({v:#04x})"),
        None => write!(f, "{ty_name}({v:#04x})"),
    }
}

/// A TLV8 item type byte.
///
/// The associated constants are the pairing-protocol types; the camera/recording TLVs reuse
/// the same numbers with other meanings inside their own nested values, so read the hex there.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TlvType(pub u8);

impl TlvType {
    /// Pairing method, one byte ([`Method`]).
    pub const METHOD: Self = Self(0x00);
    /// Pairing identifier, UTF-8 (controller: a UUID string; accessory: the device ID).
    pub const IDENTIFIER: Self = Self(0x01);
    /// SRP salt, 16 bytes.
    pub const SALT: Self = Self(0x02);
    /// SRP public key A/B (≤ 384 bytes), X25519 public key or Ed25519 LTPK (32 bytes).
    pub const PUBLIC_KEY: Self = Self(0x03);
    /// SRP proof M1/M2, 64 bytes.
    pub const PROOF: Self = Self(0x04);
    /// ChaCha20-Poly1305 ciphertext followed by the 16-byte tag.
    pub const ENCRYPTED_DATA: Self = Self(0x05);
    /// Pairing state: 1 = M1 … 6 = M6.
    pub const STATE: Self = Self(0x06);
    /// Pairing error code ([`PairingError`]); present only on error.
    pub const ERROR: Self = Self(0x07);
    /// Retry delay in seconds (obsolete).
    pub const RETRY_DELAY: Self = Self(0x08);
    /// X.509 certificate (MFi only).
    pub const CERTIFICATE: Self = Self(0x09);
    /// Ed25519 signature, 64 bytes.
    pub const SIGNATURE: Self = Self(0x0A);
    /// Permissions, one byte: 0 regular user, 1 admin.
    pub const PERMISSIONS: Self = Self(0x0B);
    /// Fragment data (obsolete).
    pub const FRAGMENT_DATA: Self = Self(0x0C);
    /// Last fragment (obsolete).
    pub const FRAGMENT_LAST: Self = Self(0x0D);
    /// Pair-resume session ID (BLE).
    pub const SESSION_ID: Self = Self(0x0E);
    /// Pairing type flags, u32 LE: 0x10 transient, 0x0100_0000 split.
    pub const FLAGS: Self = Self(0x13);
    /// Zero-length separator between list entries (List Pairings response).
    pub const SEPARATOR: Self = Self(0xFF);

    /// The pairing-protocol name of this type, if it has one.
    pub fn pairing_name(self) -> Option<&'static str> {
        Some(match self {
            Self::METHOD => "Method",
            Self::IDENTIFIER => "Identifier",
            Self::SALT => "Salt",
            Self::PUBLIC_KEY => "PublicKey",
            Self::PROOF => "Proof",
            Self::ENCRYPTED_DATA => "EncryptedData",
            Self::STATE => "State",
            Self::ERROR => "Error",
            Self::RETRY_DELAY => "RetryDelay",
            Self::CERTIFICATE => "Certificate",
            Self::SIGNATURE => "Signature",
            Self::PERMISSIONS => "Permissions",
            Self::FRAGMENT_DATA => "FragmentData",
            Self::FRAGMENT_LAST => "FragmentLast",
            Self::SESSION_ID => "SessionId",
            Self::FLAGS => "Flags",
            Self::SEPARATOR => "Separator",
            _ => return None,
        })
    }
}

impl fmt::Debug for TlvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_named(f, "TlvType", self.pairing_name(), self.0)
    }
}

impl From<u8> for TlvType {
    fn from(v: u8) -> Self {
        Self(v)
    }
}

impl From<TlvType> for u8 {
    fn from(t: TlvType) -> Self {
        t.0
    }
}

/// Pairing method (value of [`TlvType::METHOD`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method(pub u8);

impl Method {
    /// Pair-setup.
    pub const PAIR_SETUP: Self = Self(0);
    /// Pair-setup with MFi authentication.
    pub const PAIR_SETUP_WITH_AUTH: Self = Self(1);
    /// Pair-verify.
    pub const PAIR_VERIFY: Self = Self(2);
    /// Add pairing (`/pairings`).
    pub const ADD_PAIRING: Self = Self(3);
    /// Remove pairing (`/pairings`).
    pub const REMOVE_PAIRING: Self = Self(4);
    /// List pairings (`/pairings`).
    pub const LIST_PAIRINGS: Self = Self(5);
    /// Pair-resume (BLE).
    pub const PAIR_RESUME: Self = Self(6);

    fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::PAIR_SETUP => "PairSetup",
            Self::PAIR_SETUP_WITH_AUTH => "PairSetupWithAuth",
            Self::PAIR_VERIFY => "PairVerify",
            Self::ADD_PAIRING => "AddPairing",
            Self::REMOVE_PAIRING => "RemovePairing",
            Self::LIST_PAIRINGS => "ListPairings",
            Self::PAIR_RESUME => "PairResume",
            _ => return None,
        })
    }
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_named(f, "Method", self.name(), self.0)
    }
}

/// HAP pairing error code (value of [`TlvType::ERROR`]); the wire code, not a Rust error.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PairingError(pub u8);

impl PairingError {
    /// Generic error, also used for an out-of-sequence state.
    pub const UNKNOWN: Self = Self(1);
    /// Wrong setup code, bad signature or unknown controller.
    pub const AUTHENTICATION: Self = Self(2);
    /// Retry later (obsolete).
    pub const BACKOFF: Self = Self(3);
    /// No room for another pairing.
    pub const MAX_PEERS: Self = Self(4);
    /// Too many failed setup-code attempts.
    pub const MAX_TRIES: Self = Self(5);
    /// Already paired.
    pub const UNAVAILABLE: Self = Self(6);
    /// Another pair-setup is in progress.
    pub const BUSY: Self = Self(7);

    fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::UNKNOWN => "Unknown",
            Self::AUTHENTICATION => "Authentication",
            Self::BACKOFF => "Backoff",
            Self::MAX_PEERS => "MaxPeers",
            Self::MAX_TRIES => "MaxTries",
            Self::UNAVAILABLE => "Unavailable",
            Self::BUSY => "Busy",
            _ => return None,
        })
    }
}

impl fmt::Debug for PairingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_named(f, "PairingError", self.name(), self.0)
    }
}
