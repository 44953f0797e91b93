//! A small model of the `/accessories` JSON (protocol-notes §1.9): find a characteristic by
//! service type and characteristic type.

use serde_json::Value as Json;

/// A characteristic as listed by `/accessories`.
#[derive(Debug, Clone, PartialEq)]
pub struct CharInfo {
    /// Short upper-case type (`"209"`) or the full UUID for custom types.
    pub ty: String,
    /// Instance id.
    pub iid: u64,
    /// `perms` strings (`pr`, `pw`, `ev`, `tw`, `wr`, …).
    pub perms: Vec<String>,
    /// `format` string.
    pub format: String,
    /// `value` when the characteristic is readable.
    pub value: Option<Json>,
}

/// A service as listed by `/accessories`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceInfo {
    /// Short upper-case type.
    pub ty: String,
    /// Instance id.
    pub iid: u64,
    /// Its characteristics.
    pub characteristics: Vec<CharInfo>,
    /// iids of linked services.
    pub linked: Vec<u64>,
}

/// An accessory as listed by `/accessories`.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessoryInfo {
    /// Accessory instance id.
    pub aid: u64,
    /// Its services.
    pub services: Vec<ServiceInfo>,
}

/// The parsed accessory database.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccessoryDb {
    /// All accessories.
    pub accessories: Vec<AccessoryInfo>,
}

/// Normalizes a type to the short form: Apple UUIDs `0000XXXX-0000-1000-8000-0026BB765291` →
/// `XXXX` without leading zeros, upper case (§2.1).
pub fn short_type(s: &str) -> String {
    let up = s.to_ascii_uppercase();
    if let Some(head) = up.strip_suffix("-0000-1000-8000-0026BB765291") {
        let t = head.trim_start_matches('0');
        return if t.is_empty() { "0".into() } else { t.into() };
    }
    let t = up.trim_start_matches('0');
    if t.is_empty() { "0".into() } else { t.into() }
}

fn u64_of(j: &Json, key: &str) -> Result<u64, String> {
    j.get(key)
        .and_then(Json::as_u64)
        .ok_or_else(|| format!("missing or non-integer {key:?}"))
}

fn array_of<'a>(j: &'a Json, key: &str) -> Result<&'a Vec<Json>, String> {
    j.get(key)
        .and_then(Json::as_array)
        .ok_or_else(|| format!("missing array {key:?}"))
}

impl AccessoryDb {
    /// Parses the `/accessories` body.
    ///
    /// # Errors
    /// A description of the first missing or mistyped field.
    pub fn from_json(j: &Json) -> Result<Self, String> {
        let mut accessories = Vec::new();
        for a in array_of(j, "accessories")? {
            let mut services = Vec::new();
            for s in array_of(a, "services")? {
                let mut characteristics = Vec::new();
                for c in array_of(s, "characteristics")? {
                    characteristics.push(CharInfo {
                        ty: short_type(c.get("type").and_then(Json::as_str).unwrap_or_default()),
                        iid: u64_of(c, "iid")?,
                        perms: c
                            .get("perms")
                            .and_then(Json::as_array)
                            .map(|p| {
                                p.iter()
                                    .filter_map(Json::as_str)
                                    .map(str::to_owned)
                                    .collect()
                            })
                            .unwrap_or_default(),
                        format: c
                            .get("format")
                            .and_then(Json::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        value: c.get("value").cloned(),
                    });
                }
                services.push(ServiceInfo {
                    ty: short_type(s.get("type").and_then(Json::as_str).unwrap_or_default()),
                    iid: u64_of(s, "iid")?,
                    characteristics,
                    linked: s
                        .get("linked")
                        .and_then(Json::as_array)
                        .map(|l| l.iter().filter_map(Json::as_u64).collect())
                        .unwrap_or_default(),
                });
            }
            accessories.push(AccessoryInfo {
                aid: u64_of(a, "aid")?,
                services,
            });
        }
        Ok(Self { accessories })
    }

    /// The first characteristic of type `char_type` in a service of type `service_type`
    /// (short or full UUIDs), as `(aid, characteristic)`.
    pub fn find(&self, service_type: &str, char_type: &str) -> Option<(u64, &CharInfo)> {
        let (st, ct) = (short_type(service_type), short_type(char_type));
        self.accessories.iter().find_map(|a| {
            a.services
                .iter()
                .filter(|s| s.ty == st)
                .flat_map(|s| s.characteristics.iter())
                .find(|c| c.ty == ct)
                .map(|c| (a.aid, c))
        })
    }

    /// `(aid, iid)` of characteristic `char_type` in every service of type `service_type`, in
    /// database order (e.g. each CameraRTPStreamManagement of a camera).
    pub fn ids_in_each(&self, service_type: &str, char_type: &str) -> Vec<(u64, u64)> {
        let (st, ct) = (short_type(service_type), short_type(char_type));
        self.accessories
            .iter()
            .flat_map(|a| {
                a.services
                    .iter()
                    .filter(|s| s.ty == st)
                    .filter_map(|s| s.characteristics.iter().find(|c| c.ty == ct))
                    .map(move |c| (a.aid, c.iid))
            })
            .collect()
    }

    /// `(aid, iid)` of [`AccessoryDb::find`].
    pub fn id_of(&self, service_type: &str, char_type: &str) -> Option<(u64, u64)> {
        self.find(service_type, char_type).map(|(a, c)| (a, c.iid))
    }

    /// The accessory whose AccessoryInformation Name (`23`) is `name` (a camera behind a bridge).
    pub fn aid_named(&self, name: &str) -> Option<u64> {
        self.accessories.iter().find_map(|a| {
            a.services
                .iter()
                .filter(|s| s.ty == "3E")
                .flat_map(|s| s.characteristics.iter())
                .any(|c| c.ty == "23" && c.value.as_ref().and_then(Json::as_str) == Some(name))
                .then_some(a.aid)
        })
    }

    /// Only the accessory `aid` (empty when there is none), so that [`find`](Self::find) looks
    /// at one bridged accessory.
    pub fn only(&self, aid: u64) -> Self {
        Self {
            accessories: self
                .accessories
                .iter()
                .filter(|a| a.aid == aid)
                .cloned()
                .collect(),
        }
    }

    /// The first service of a type, as `(aid, service)`.
    pub fn service(&self, service_type: &str) -> Option<(u64, &ServiceInfo)> {
        let st = short_type(service_type);
        self.accessories
            .iter()
            .find_map(|a| a.services.iter().find(|s| s.ty == st).map(|s| (a.aid, s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_by_short_or_full_type_and_rejects_broken_json() {
        let j = json!({"accessories": [{"aid": 1, "services": [
            {"type": "3E", "iid": 1, "characteristics": [{"type": "14", "iid": 2, "perms": ["pw"], "format": "bool"}]},
            {"type": "00000204-0000-1000-8000-0026BB765291", "iid": 10, "linked": [20], "characteristics": [
                {"type": "B0", "iid": 11, "perms": ["pr","pw","ev"], "format": "uint8", "value": 0},
                {"type": "209", "iid": 12, "perms": ["pr","pw","ev"], "format": "tlv8", "value": ""}]}
        ]}]});
        let db = AccessoryDb::from_json(&j).expect("parse");
        assert_eq!(db.id_of("204", "B0"), Some((1, 11)));
        assert_eq!(
            db.id_of(
                "00000204-0000-1000-8000-0026BB765291",
                "00000209-0000-1000-8000-0026BB765291"
            ),
            Some((1, 12))
        );
        assert_eq!(db.id_of("3E", "B0"), None);
        assert_eq!(
            db.service("204").map(|(_, s)| s.linked.clone()),
            Some(vec![20])
        );
        assert!(AccessoryDb::from_json(&json!({"accessories": [{"services": []}]})).is_err());
    }

    #[test]
    fn picks_a_bridged_accessory_by_name() {
        let acc = |aid: u64, name: &str| {
            json!({"aid": aid, "services": [
                {"type": "3E", "iid": 1, "characteristics": [
                    {"type": "23", "iid": 2, "perms": ["pr"], "format": "string", "value": name}]},
                {"type": "85", "iid": 8, "characteristics": [
                    {"type": "22", "iid": 9, "perms": ["pr","ev"], "format": "bool", "value": false}]}
            ]})
        };
        let j = json!({"accessories": [acc(1, "Bridge"), acc(2, "Porch"), acc(5, "Garage")]});
        let db = AccessoryDb::from_json(&j).expect("parse");
        assert_eq!(db.aid_named("Garage"), Some(5));
        assert_eq!(db.aid_named("Nope"), None);
        assert_eq!(db.only(5).id_of("85", "22"), Some((5, 9)));
        assert_eq!(
            db.id_of("85", "22"),
            Some((1, 9)),
            "unfiltered: the first match"
        );
        assert!(db.only(7).accessories.is_empty());
    }
}
