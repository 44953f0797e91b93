//! Stable instance ids: a persisted map from a service/characteristic key to its IID, so IIDs
//! survive restarts and database changes (§1.9 "ID rules"; HAP-NodeJS keeps such a cache).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Key → IID, per accessory. Keys are `"{aid}/{service uuid}/{subtype}"` for services and
/// the service key plus `"/{characteristic uuid}"` for characteristics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IidCache {
    iids: BTreeMap<String, u64>,
    /// Next free IID per AID (IIDs start at 1 and are never reused).
    next: BTreeMap<u64, u64>,
    #[serde(skip)]
    dirty: bool,
}

impl IidCache {
    /// The IID for `key` in accessory `aid`, allocating the next free one when `key` is new.
    pub fn iid_for(&mut self, aid: u64, key: &str) -> u64 {
        if let Some(&iid) = self.iids.get(key) {
            return iid;
        }
        let next = self.next.entry(aid).or_insert(1);
        let iid = *next;
        *next = next.saturating_add(1);
        self.iids.insert(key.to_owned(), iid);
        self.dirty = true;
        iid
    }

    /// Whether IIDs were allocated since the last [`IidCache::mark_saved`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Clears the dirty flag after persisting.
    pub fn mark_saved(&mut self) {
        self.dirty = false;
    }

    /// JSON bytes for the store.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses [`IidCache::to_bytes`] output.
    ///
    /// # Errors
    /// The JSON error when the bytes are not a cache.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_per_aid_and_never_reuses() {
        let mut c = IidCache::default();
        assert_eq!(c.iid_for(1, "a"), 1);
        assert_eq!(c.iid_for(1, "b"), 2);
        assert_eq!(c.iid_for(2, "x"), 1);
        assert_eq!(c.iid_for(1, "a"), 1);
        assert!(c.is_dirty());
        c.mark_saved();
        let mut back = IidCache::from_bytes(&c.to_bytes()).unwrap();
        assert!(!back.is_dirty());
        assert_eq!(back.iid_for(1, "b"), 2);
        assert_eq!(back.iid_for(1, "c"), 3);
        assert!(back.is_dirty());
        assert!(IidCache::from_bytes(b"{nope").is_err());
    }
}
