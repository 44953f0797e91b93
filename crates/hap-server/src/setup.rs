//! Setup code, setup ID, the `X-HM://` setup payload and the `sh` setup hash (protocol notes
//! §1.2, rules from the ADK `HAPAccessorySetup.c`).

use std::fmt;

use base64::Engine as _;
use rand::Rng;
use sha2::Digest as _;
use thiserror::Error;

/// An accessory setup code `XXX-XX-XXX`. `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct SetupCode(String);

/// Why a setup code was rejected.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SetupCodeError {
    /// Not eight digits as `XXX-XX-XXX` (or `XXXXXXXX`).
    #[error("setup code must be eight digits formatted XXX-XX-XXX")]
    Format,
    /// One of the codes the ADK forbids: all digits equal, `123-45-678`, `876-54-321`.
    #[error("setup code is too easy to guess (all digits equal, 123-45-678 or 876-54-321)")]
    Trivial,
}

impl SetupCode {
    /// Parses `XXX-XX-XXX` or eight bare digits.
    ///
    /// # Errors
    /// [`SetupCodeError`] for a malformed or trivial code.
    pub fn parse(s: &str) -> Result<Self, SetupCodeError> {
        let s = s.trim();
        let digits: String = match s.len() {
            8 => s.to_owned(),
            10 if s.get(3..4) == Some("-") && s.get(6..7) == Some("-") => s.replace('-', ""),
            _ => return Err(SetupCodeError::Format),
        };
        if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SetupCodeError::Format);
        }
        let first = digits.as_bytes().first().copied();
        if digits.bytes().all(|b| Some(b) == first) || digits == "12345678" || digits == "87654321"
        {
            return Err(SetupCodeError::Trivial);
        }
        let (a, rest) = digits.split_at(3);
        let (b, c) = rest.split_at(2);
        Ok(Self(format!("{a}-{b}-{c}")))
    }

    /// A random valid code.
    pub fn generate(rng: &mut impl Rng) -> Self {
        loop {
            let n = rng.next_u32() % 100_000_000;
            if let Ok(code) = Self::parse(&format!("{n:08}")) {
                return code;
            }
        }
    }

    /// `XXX-XX-XXX`, the SRP password of pair-setup (§1.5).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn as_number(&self) -> u64 {
        self.0
            .bytes()
            .filter(u8::is_ascii_digit)
            .fold(0, |n, b| n * 10 + u64::from(b - b'0'))
    }
}

impl fmt::Debug for SetupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SetupCode(<redacted>)")
    }
}

/// A 4-character setup ID `[0-9A-Z]` used in the setup URI and hash.
///
/// # Errors
/// `None` from [`parse_setup_id`] when `s` is not four such characters.
pub fn parse_setup_id(s: &str) -> Option<String> {
    (s.len() == 4
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()))
    .then(|| s.to_owned())
}

/// A random setup ID.
pub fn generate_setup_id(rng: &mut impl Rng) -> String {
    const ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    (0..4)
        .map(|_| {
            let i = (rng.next_u32() % 36) as usize;
            char::from(ALPHABET.get(i).copied().unwrap_or(b'0'))
        })
        .collect()
}

/// Bit 28 of the setup payload: supports HAP over IP.
const PAYLOAD_IP: u64 = 1 << 28;
/// Bit 27: already paired.
const PAYLOAD_PAIRED: u64 = 1 << 27;
/// Category occupies bits 38–31.
const PAYLOAD_CATEGORY_SHIFT: u32 = 31;

/// The 46-bit setup payload as 9 base-36 characters (most significant first, zero-padded).
fn encode_payload(code_number: u64, category: u8, paired: bool) -> String {
    let mut v = (u64::from(category) << PAYLOAD_CATEGORY_SHIFT) | PAYLOAD_IP | code_number;
    if paired {
        v |= PAYLOAD_PAIRED;
    }
    let mut out = [b'0'; 9];
    for slot in out.iter_mut().rev() {
        let d = (v % 36) as u8;
        *slot = if d < 10 { b'0' + d } else { b'A' + d - 10 };
        v /= 36;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `X-HM://` setup URI for QR codes (§1.2): IP transport only, version 0.
pub fn setup_uri(code: &SetupCode, category: u8, setup_id: &str, paired: bool) -> String {
    format!(
        "X-HM://{}{setup_id}",
        encode_payload(code.as_number(), category, paired)
    )
}

/// The `sh` TXT value: base64 of the first 4 bytes of SHA-512(setup ID ‖ device ID) (§1.2).
pub fn setup_hash(setup_id: &str, device_id: &str) -> String {
    let mut h = sha2::Sha512::new();
    h.update(setup_id.as_bytes());
    h.update(device_id.to_ascii_uppercase().as_bytes());
    let digest = h.finalize();
    base64::engine::general_purpose::STANDARD.encode(digest.get(..4).unwrap_or_default())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // tests: a panic is a failed check
mod tests {
    use super::*;

    #[test]
    fn setup_codes_follow_adk_rules() {
        assert_eq!(
            SetupCode::parse("031-45-154").unwrap().as_str(),
            "031-45-154"
        );
        assert_eq!(SetupCode::parse("03145154").unwrap().as_str(), "031-45-154");
        for bad in [
            "",
            "031-45-15",
            "031451544",
            "03-145-154",
            "031-45-15a",
            "0314515a",
        ] {
            assert_eq!(SetupCode::parse(bad), Err(SetupCodeError::Format), "{bad}");
        }
        for trivial in [
            "111-11-111",
            "000-00-000",
            "123-45-678",
            "876-54-321",
            "99999999",
        ] {
            assert_eq!(
                SetupCode::parse(trivial),
                Err(SetupCodeError::Trivial),
                "{trivial}"
            );
        }
        assert_eq!(
            format!("{:?}", SetupCode::parse("031-45-154").unwrap()),
            "SetupCode(<redacted>)"
        );
    }

    #[test]
    fn generated_codes_and_ids_are_valid() {
        let mut rng = rand::rng();
        for _ in 0..200 {
            let c = SetupCode::generate(&mut rng);
            assert_eq!(SetupCode::parse(c.as_str()).as_ref(), Ok(&c));
            let id = generate_setup_id(&mut rng);
            assert_eq!(parse_setup_id(&id), Some(id.clone()));
        }
        assert_eq!(parse_setup_id("abcd"), None);
        assert_eq!(parse_setup_id("ABC"), None);
    }

    #[test]
    fn payload_matches_hap_python_vectors() {
        // ikalchev/HAP-python tests/test_accessory.py `test_xhm_uri` (codes passed as integers
        // there; categories 17 camera, 31 television, 32 target controller).
        assert_eq!(encode_payload(653_321_211, 17, false), "00H708WSB");
        assert_eq!(encode_payload(323_231_212, 31, false), "00UQBOTF0");
        assert_eq!(encode_payload(323_231_212, 32, false), "00VPU8UEK");
    }

    #[test]
    fn setup_uri_decodes_back_to_its_fields() {
        let code = SetupCode::parse("031-45-154").unwrap();
        let uri = setup_uri(&code, 17, "7OSX", false);
        let payload = uri.strip_prefix("X-HM://").unwrap();
        assert_eq!(payload.len(), 13);
        assert!(payload.ends_with("7OSX"));
        let v = u64::from_str_radix(&payload[..9].to_ascii_lowercase(), 36).unwrap();
        assert_eq!(v & ((1 << 27) - 1), 3_145_154);
        assert_eq!((v >> 31) & 0xFF, 17);
        assert_eq!(v & PAYLOAD_IP, PAYLOAD_IP);
        assert_eq!(v & PAYLOAD_PAIRED, 0);
        let paired = setup_uri(&code, 17, "7OSX", true);
        assert_ne!(paired, uri);
    }

    #[test]
    fn setup_hash_is_base64_of_4_bytes() {
        let sh = setup_hash("7OSX", "aa:bb:cc:dd:ee:ff");
        assert_eq!(sh, setup_hash("7OSX", "AA:BB:CC:DD:EE:FF"));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&sh)
            .unwrap();
        let full = sha2::Sha512::digest(b"7OSXAA:BB:CC:DD:EE:FF");
        assert_eq!(raw, full[..4]);
    }
}
