//! The controller's saved pairing: its own identity and the accessory it paired with, as JSON,
//! so a hub simulator can reconnect after a bridge restart without pairing again.

use std::path::Path;

use ed25519_dalek::SigningKey;
use hap_server::pairing::controller::{AccessoryPairing, ControllerIdentity};
use serde::{Deserialize, Serialize};

/// A controller identity plus the accessory pairing from pair-setup M6.
/// `Debug` prints no secret (the identity's own `Debug` hides the key).
#[derive(Clone, Debug)]
pub struct PairingKeys {
    /// Our long-term identity (pairing ID + Ed25519 LTSK).
    pub identity: ControllerIdentity,
    /// The accessory pairing ID and LTPK learned in M6.
    pub accessory: AccessoryPairing,
}

#[derive(Serialize, Deserialize)]
struct KeysFile {
    controller_id: String,
    /// Ed25519 secret seed, hex.
    controller_ltsk: String,
    accessory_id: String,
    /// Accessory LTPK, hex.
    accessory_ltpk: String,
}

/// Why saved keys could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    /// Reading or writing the file failed.
    #[error("pairing keys file: {0}")]
    Io(#[from] std::io::Error),
    /// The file is not the JSON we write.
    #[error("pairing keys file is malformed: {0}")]
    Malformed(String),
}

fn hex32(s: &str, what: &str) -> Result<[u8; 32], KeysError> {
    hex::decode(s)
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or_else(|| KeysError::Malformed(format!("{what} is not 32 hex bytes")))
}

impl PairingKeys {
    /// Serializes to JSON (contains the secret key: store with care).
    pub fn to_json(&self) -> String {
        let f = KeysFile {
            controller_id: self.identity.pairing_id.clone(),
            controller_ltsk: hex::encode(self.identity.signing_key.to_bytes()),
            accessory_id: self.accessory.pairing_id.clone(),
            accessory_ltpk: hex::encode(self.accessory.ltpk),
        };
        serde_json::to_string_pretty(&f).unwrap_or_default()
    }

    /// Parses what [`PairingKeys::to_json`] wrote.
    ///
    /// # Errors
    /// [`KeysError::Malformed`] for anything else.
    pub fn from_json(s: &str) -> Result<Self, KeysError> {
        let f: KeysFile =
            serde_json::from_str(s).map_err(|e| KeysError::Malformed(e.to_string()))?;
        let seed = hex32(&f.controller_ltsk, "controller_ltsk")?;
        let ltpk = hex32(&f.accessory_ltpk, "accessory_ltpk")?;
        Ok(Self {
            identity: ControllerIdentity {
                pairing_id: f.controller_id,
                signing_key: SigningKey::from_bytes(&seed),
            },
            accessory: AccessoryPairing {
                pairing_id: f.accessory_id,
                ltpk,
            },
        })
    }

    /// Writes the JSON to `path`.
    ///
    /// # Errors
    /// [`KeysError::Io`].
    pub fn save(&self, path: &Path) -> Result<(), KeysError> {
        std::fs::write(path, self.to_json())?;
        Ok(())
    }

    /// Reads keys saved by [`PairingKeys::save`].
    ///
    /// # Errors
    /// [`KeysError`] when the file is missing or malformed.
    pub fn load(path: &Path) -> Result<Self, KeysError> {
        Self::from_json(&std::fs::read_to_string(path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_keys_and_debug_hides_secret() {
        let identity = ControllerIdentity::generate(&mut rand::rng());
        let keys = PairingKeys {
            identity: identity.clone(),
            accessory: AccessoryPairing {
                pairing_id: "AA:BB:CC:DD:EE:FF".into(),
                ltpk: [7; 32],
            },
        };
        let back = PairingKeys::from_json(&keys.to_json()).expect("parse");
        assert_eq!(back.identity.pairing_id, identity.pairing_id);
        assert_eq!(back.identity.public_key(), identity.public_key());
        assert_eq!(back.accessory, keys.accessory);
        let secret = hex::encode(identity.signing_key.to_bytes());
        assert!(!format!("{keys:?}").contains(&secret));
        assert!(PairingKeys::from_json("{}").is_err());
    }
}
