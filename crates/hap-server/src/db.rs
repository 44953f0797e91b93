//! The accessory attribute database: accessories (AID), services and characteristics (IID),
//! their metadata, values and handlers, and its `/accessories` JSON (protocol notes §1.9, §2).
//!
//! Defining a service is one expression:
//!
//! ```
//! use hap_server::db::{Characteristic, Format, HapType, Perms, Service, Value};
//! let motion = Service::new(HapType::apple(0x85))
//!     .characteristic(Characteristic::new(HapType::apple(0x22), Format::Bool, Perms::PR | Perms::EV))
//!     .characteristic(
//!         Characteristic::new(HapType::apple(0x75), Format::Bool, Perms::PR | Perms::EV)
//!             .value(Value::Bool(true)),
//!     );
//! assert_eq!(motion.characteristics().len(), 2);
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::BitOr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value as Json, json};

use crate::context::ConnectionContext;
use crate::iid::IidCache;
use crate::status::HapStatus;

/// A HAP service or characteristic type (a UUID).
///
/// Apple-defined types are `0000XXXX-0000-1000-8000-0026BB765291` and are sent in short form
/// (§2.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HapType(pub u128);

/// Low 96 bits shared by every Apple-defined UUID (§2.1).
const APPLE_BASE: u128 = 0x0000_1000_8000_0026_BB76_5291;
const APPLE_MASK: u128 = (1u128 << 96) - 1;

impl HapType {
    /// The Apple-defined type with short id `short` (e.g. `0x3E` AccessoryInformation).
    pub const fn apple(short: u32) -> Self {
        Self(((short as u128) << 96) | APPLE_BASE)
    }

    /// The short id if this is an Apple-defined type.
    pub fn apple_short(self) -> Option<u32> {
        if self.0 & APPLE_MASK == APPLE_BASE {
            u32::try_from(self.0 >> 96).ok()
        } else {
            None
        }
    }

    /// The JSON form: short upper-case hex without leading zeros for Apple types, otherwise
    /// the full upper-case UUID (§2.1).
    pub fn short_string(self) -> String {
        match self.apple_short() {
            Some(s) => format!("{s:X}"),
            None => self.full_string(),
        }
    }

    /// The full upper-case UUID `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`.
    pub fn full_string(self) -> String {
        let h = format!("{:032X}", self.0);
        let part = |a: usize, b: usize| h.get(a..b).unwrap_or_default();
        format!(
            "{}-{}-{}-{}-{}",
            part(0, 8),
            part(8, 12),
            part(12, 16),
            part(16, 20),
            part(20, 32)
        )
    }

    /// Parses the short form (`"3E"`) or a full UUID with dashes.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() <= 8 {
            return u32::from_str_radix(s, 16).ok().map(Self::apple);
        }
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 {
            return None;
        }
        u128::from_str_radix(&hex, 16).ok().map(Self)
    }
}

impl fmt::Debug for HapType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HapType({})", self.short_string())
    }
}

/// Characteristic value formats (§2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `bool`, sent as `1`/`0`.
    Bool,
    /// `uint8`.
    UInt8,
    /// `uint16`.
    UInt16,
    /// `uint32`.
    UInt32,
    /// `uint64`.
    UInt64,
    /// `int` (32-bit signed).
    Int,
    /// `float`.
    Float,
    /// `string` (UTF-8).
    String,
    /// `tlv8`, sent as base64.
    Tlv8,
    /// `data`, sent as base64.
    Data,
}

impl Format {
    /// The JSON `format` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bool => "bool",
            Self::UInt8 => "uint8",
            Self::UInt16 => "uint16",
            Self::UInt32 => "uint32",
            Self::UInt64 => "uint64",
            Self::Int => "int",
            Self::Float => "float",
            Self::String => "string",
            Self::Tlv8 => "tlv8",
            Self::Data => "data",
        }
    }

    /// The integer range a format can hold, for the integer formats.
    fn int_range(self) -> Option<(i128, i128)> {
        Some(match self {
            Self::UInt8 => (0, u8::MAX.into()),
            Self::UInt16 => (0, u16::MAX.into()),
            Self::UInt32 => (0, u32::MAX.into()),
            Self::UInt64 => (0, u64::MAX.into()),
            Self::Int => (i32::MIN.into(), i32::MAX.into()),
            _ => return None,
        })
    }

    fn default_value(self) -> Value {
        match self {
            Self::Bool => Value::Bool(false),
            Self::UInt8 | Self::UInt16 | Self::UInt32 | Self::UInt64 => Value::UInt(0),
            Self::Int => Value::Int(0),
            Self::Float => Value::Float(0.0),
            Self::String => Value::String(String::new()),
            Self::Tlv8 | Self::Data => Value::Bytes(Vec::new()),
        }
    }
}

/// Characteristic permissions (§2.1), a bit set.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Perms(u8);

impl Perms {
    /// `pr`: paired read.
    pub const PR: Self = Self(0x01);
    /// `pw`: paired write.
    pub const PW: Self = Self(0x02);
    /// `ev`: notify.
    pub const EV: Self = Self(0x04);
    /// `aa`: additional authorization.
    pub const AA: Self = Self(0x08);
    /// `tw`: timed write.
    pub const TW: Self = Self(0x10);
    /// `hd`: hidden.
    pub const HD: Self = Self(0x20);
    /// `wr`: write response.
    pub const WR: Self = Self(0x40);

    const NAMES: [(Self, &'static str); 7] = [
        (Self::PR, "pr"),
        (Self::PW, "pw"),
        (Self::EV, "ev"),
        (Self::AA, "aa"),
        (Self::TW, "tw"),
        (Self::HD, "hd"),
        (Self::WR, "wr"),
    ];

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The JSON `perms` array.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(p, _)| self.contains(*p))
            .map(|(_, n)| *n)
            .collect()
    }
}

impl BitOr for Perms {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl fmt::Debug for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Perms({})", self.names().join(","))
    }
}

/// A characteristic value. Which variant is valid depends on the [`Format`].
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// JSON `null` (e.g. ProgrammableSwitchEvent reads).
    Null,
    /// `bool`.
    Bool(bool),
    /// `int`.
    Int(i64),
    /// `uint8` … `uint64`.
    UInt(u64),
    /// `float`.
    Float(f64),
    /// `string`.
    String(String),
    /// `tlv8` / `data` bytes.
    Bytes(Vec<u8>),
}

impl Value {
    /// The JSON representation for `format`: bools as `1`/`0`, bytes as base64 (§1.9).
    pub fn to_json(&self, format: Format) -> Json {
        match self {
            Self::Null => Json::Null,
            Self::Bool(b) => json!(u8::from(*b)),
            Self::Int(i) => json!(i),
            Self::UInt(u) => json!(u),
            Self::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
            Self::String(s) => json!(s),
            Self::Bytes(b) => match format {
                Format::Tlv8 | Format::Data => json!(BASE64.encode(b)),
                _ => Json::Null,
            },
        }
    }
}

/// Reads a characteristic's current value on demand (e.g. from a sensor).
pub type ReadHandler = Arc<dyn Fn(&ConnectionContext) -> Result<Value, HapStatus> + Send + Sync>;

/// Applies a controller's write. `Ok(Some(v))` is the write-response value (`"r": true`,
/// permission `wr`); `Ok(None)` answers with the written value when one is requested.
pub type WriteHandler =
    Arc<dyn Fn(&ConnectionContext, &Value) -> Result<Option<Value>, HapStatus> + Send + Sync>;

/// One characteristic: type, format, permissions, metadata, value and optional handlers.
#[derive(Clone)]
pub struct Characteristic {
    ty: HapType,
    iid: u64,
    format: Format,
    perms: Perms,
    description: Option<String>,
    unit: Option<String>,
    min_value: Option<f64>,
    max_value: Option<f64>,
    min_step: Option<f64>,
    max_len: Option<u32>,
    max_data_len: Option<u32>,
    valid_values: Option<Vec<i64>>,
    valid_values_range: Option<(i64, i64)>,
    value: Value,
    admin_write: bool,
    immediate_events: bool,
    on_read: Option<ReadHandler>,
    on_write: Option<WriteHandler>,
}

impl fmt::Debug for Characteristic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Characteristic")
            .field("ty", &self.ty)
            .field("iid", &self.iid)
            .field("format", &self.format)
            .field("perms", &self.perms)
            .field("value", &self.value)
            .finish_non_exhaustive()
    }
}

/// Types whose events HAP-NodeJS delivers at once instead of batching (§1.11):
/// ContactSensorState, MotionDetected, ProgrammableSwitchEvent, ButtonEvent.
const IMMEDIATE_EVENT_TYPES: [u32; 4] = [0x6A, 0x22, 0x73, 0x126];

/// Default `maxLen` of strings (HAP: 64 characters).
const DEFAULT_MAX_STRING_LEN: u32 = 64;
/// Default `maxDataLen` of `data` values (HAP: 2097152 bytes).
const DEFAULT_MAX_DATA_LEN: u32 = 2_097_152;

impl Characteristic {
    /// A characteristic with the format's zero value and no metadata.
    pub fn new(ty: HapType, format: Format, perms: Perms) -> Self {
        Self {
            ty,
            iid: 0,
            format,
            perms,
            description: None,
            unit: None,
            min_value: None,
            max_value: None,
            min_step: None,
            max_len: None,
            max_data_len: None,
            valid_values: None,
            valid_values_range: None,
            value: format.default_value(),
            admin_write: false,
            immediate_events: ty
                .apple_short()
                .is_some_and(|s| IMMEDIATE_EVENT_TYPES.contains(&s)),
            on_read: None,
            on_write: None,
        }
    }

    /// Sets the initial value.
    pub fn value(mut self, value: Value) -> Self {
        self.value = value;
        self
    }

    /// Sets `description`.
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.description = Some(d.into());
        self
    }

    /// Sets `unit` (e.g. `percentage`, `arcdegrees`).
    pub fn unit(mut self, u: impl Into<String>) -> Self {
        self.unit = Some(u.into());
        self
    }

    /// Sets `minValue`, `maxValue` and `minStep`.
    pub fn range(mut self, min: f64, max: f64, step: f64) -> Self {
        self.min_value = Some(min);
        self.max_value = Some(max);
        self.min_step = Some(step);
        self
    }

    /// Sets `maxLen` of a string.
    pub fn max_len(mut self, n: u32) -> Self {
        self.max_len = Some(n);
        self
    }

    /// Sets `maxDataLen` of a data value.
    pub fn max_data_len(mut self, n: u32) -> Self {
        self.max_data_len = Some(n);
        self
    }

    /// Sets `valid-values`.
    pub fn valid_values(mut self, v: Vec<i64>) -> Self {
        self.valid_values = Some(v);
        self
    }

    /// Sets `valid-values-range`.
    pub fn valid_values_range(mut self, min: i64, max: i64) -> Self {
        self.valid_values_range = Some((min, max));
        self
    }

    /// Only admin controllers may write (HAP-NodeJS `adminOnlyAccess`; §2.3 lists which).
    pub fn admin_write(mut self) -> Self {
        self.admin_write = true;
        self
    }

    /// Deliver events at once instead of batching them (§1.11). On by default for
    /// MotionDetected, ProgrammableSwitchEvent, ContactSensorState and ButtonEvent.
    pub fn immediate_events(mut self, on: bool) -> Self {
        self.immediate_events = on;
        self
    }

    /// Reads through `f` instead of returning the stored value.
    ///
    /// Handlers run while the server's core is locked: they must not call back into
    /// [`crate::Server`] (spawn a task for that) and should return quickly.
    pub fn on_read(
        mut self,
        f: impl Fn(&ConnectionContext) -> Result<Value, HapStatus> + Send + Sync + 'static,
    ) -> Self {
        self.on_read = Some(Arc::new(f));
        self
    }

    /// Calls `f` for every accepted write; an error rejects the write with that status.
    /// Same locking rule as [`Characteristic::on_read`].
    pub fn on_write(
        mut self,
        f: impl Fn(&ConnectionContext, &Value) -> Result<Option<Value>, HapStatus>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.on_write = Some(Arc::new(f));
        self
    }

    /// Type.
    pub fn ty(&self) -> HapType {
        self.ty
    }
    /// Instance id (0 until the characteristic is added to a [`Database`]).
    pub fn iid(&self) -> u64 {
        self.iid
    }
    /// Format.
    pub fn format(&self) -> Format {
        self.format
    }
    /// Permissions.
    pub fn perms(&self) -> Perms {
        self.perms
    }
    /// Stored value.
    pub fn stored_value(&self) -> &Value {
        &self.value
    }
    /// Whether writes need an admin controller.
    pub fn is_admin_write(&self) -> bool {
        self.admin_write
    }
    /// Whether events are sent without batching.
    pub fn has_immediate_events(&self) -> bool {
        self.immediate_events
    }
    /// The read handler, if any.
    pub fn read_handler(&self) -> Option<&ReadHandler> {
        self.on_read.as_ref()
    }
    /// The write handler, if any.
    pub fn write_handler(&self) -> Option<&WriteHandler> {
        self.on_write.as_ref()
    }

    /// Replaces the stored value; returns whether it changed.
    pub fn set_stored_value(&mut self, value: Value) -> bool {
        let changed = self.value != value;
        self.value = value;
        changed
    }

    /// Converts a JSON value written by a controller into a [`Value`] of this format and
    /// checks it against the metadata.
    ///
    /// # Errors
    /// [`HapStatus::INVALID_VALUE_IN_REQUEST`] for a wrong JSON type, an out-of-range number,
    /// bad base64 or an over-long string/data.
    pub fn coerce(&self, json: &Json) -> Result<Value, HapStatus> {
        let invalid = HapStatus::INVALID_VALUE_IN_REQUEST;
        let value = match self.format {
            Format::Bool => match json {
                Json::Bool(b) => Value::Bool(*b),
                Json::Number(n) => match n.as_u64() {
                    Some(0) => Value::Bool(false),
                    Some(1) => Value::Bool(true),
                    _ => return Err(invalid),
                },
                _ => return Err(invalid),
            },
            f
            @ (Format::UInt8 | Format::UInt16 | Format::UInt32 | Format::UInt64 | Format::Int) => {
                let n: i128 = match json {
                    Json::Bool(b) => i128::from(*b),
                    Json::Number(n) => {
                        if let Some(u) = n.as_u64() {
                            i128::from(u)
                        } else if let Some(i) = n.as_i64() {
                            i128::from(i)
                        } else {
                            return Err(invalid);
                        }
                    }
                    _ => return Err(invalid),
                };
                let (lo, hi) = f.int_range().ok_or(invalid)?;
                if n < lo || n > hi {
                    return Err(invalid);
                }
                #[allow(clippy::cast_precision_loss)] // bounds are small metadata numbers
                let nf = n as f64;
                if self.min_value.is_some_and(|m| nf < m) || self.max_value.is_some_and(|m| nf > m)
                {
                    return Err(invalid);
                }
                let as_i64 = i64::try_from(n).ok();
                if let Some(vv) = &self.valid_values
                    && !as_i64.is_some_and(|v| vv.contains(&v))
                {
                    return Err(invalid);
                }
                if let Some((a, b)) = self.valid_values_range
                    && !as_i64.is_some_and(|v| v >= a && v <= b)
                {
                    return Err(invalid);
                }
                if f == Format::Int {
                    Value::Int(as_i64.ok_or(invalid)?)
                } else {
                    Value::UInt(u64::try_from(n).map_err(|_| invalid)?)
                }
            }
            Format::Float => {
                let f = json.as_f64().ok_or(invalid)?;
                if self.min_value.is_some_and(|m| f < m) || self.max_value.is_some_and(|m| f > m) {
                    return Err(invalid);
                }
                Value::Float(f)
            }
            Format::String => {
                let s = json.as_str().ok_or(invalid)?;
                let max = self.max_len.unwrap_or(DEFAULT_MAX_STRING_LEN);
                if s.chars().count() > max as usize {
                    return Err(invalid);
                }
                Value::String(s.to_owned())
            }
            Format::Tlv8 | Format::Data => {
                let s = json.as_str().ok_or(invalid)?;
                let bytes = BASE64.decode(s).map_err(|_| invalid)?;
                if self.format == Format::Data {
                    let max = self.max_data_len.unwrap_or(DEFAULT_MAX_DATA_LEN);
                    if bytes.len() > max as usize {
                        return Err(invalid);
                    }
                }
                Value::Bytes(bytes)
            }
        };
        Ok(value)
    }

    /// Metadata fields of the JSON object (`format`, `unit`, `minValue`, …), shared by
    /// `/accessories` and `GET /characteristics?meta=1`.
    pub fn write_meta(&self, obj: &mut Map<String, Json>) {
        obj.insert("format".into(), json!(self.format.as_str()));
        let integral = self.format.int_range().is_some();
        let num = |v: f64| -> Json {
            #[allow(clippy::cast_possible_truncation)] // only when v is integral
            if integral && v.fract() == 0.0 && v.abs() < 9.0e15 {
                json!(v as i64)
            } else {
                serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number)
            }
        };
        if let Some(u) = &self.unit {
            obj.insert("unit".into(), json!(u));
        }
        if let Some(v) = self.min_value {
            obj.insert("minValue".into(), num(v));
        }
        if let Some(v) = self.max_value {
            obj.insert("maxValue".into(), num(v));
        }
        if let Some(v) = self.min_step {
            obj.insert("minStep".into(), num(v));
        }
        if let Some(v) = self.max_len {
            obj.insert("maxLen".into(), json!(v));
        }
        if let Some(v) = self.max_data_len {
            obj.insert("maxDataLen".into(), json!(v));
        }
        if let Some(v) = &self.valid_values {
            obj.insert("valid-values".into(), json!(v));
        }
        if let Some((a, b)) = self.valid_values_range {
            obj.insert("valid-values-range".into(), json!([a, b]));
        }
    }

    /// The `/accessories` object; `value` is included when the characteristic is readable.
    fn to_json(&self, value: Option<&Value>) -> Json {
        let mut obj = Map::new();
        obj.insert("type".into(), json!(self.ty.short_string()));
        obj.insert("iid".into(), json!(self.iid));
        obj.insert("perms".into(), json!(self.perms.names()));
        if let Some(v) = value {
            obj.insert("value".into(), v.to_json(self.format));
        }
        if let Some(d) = &self.description {
            obj.insert("description".into(), json!(d));
        }
        self.write_meta(&mut obj);
        Json::Object(obj)
    }
}

/// One service: a type, an optional subtype (to tell two services of one type apart and to
/// key the IID cache), flags, links and characteristics.
#[derive(Clone, Debug)]
pub struct Service {
    ty: HapType,
    subtype: String,
    iid: u64,
    primary: bool,
    hidden: bool,
    linked: Vec<(HapType, String)>,
    linked_iids: Vec<u64>,
    characteristics: Vec<Characteristic>,
}

impl Service {
    /// A service of type `ty` with the empty subtype.
    pub fn new(ty: HapType) -> Self {
        Self {
            ty,
            subtype: String::new(),
            iid: 0,
            primary: false,
            hidden: false,
            linked: Vec::new(),
            linked_iids: Vec::new(),
            characteristics: Vec::new(),
        }
    }

    /// Sets the subtype (needed when an accessory has two services of one type).
    pub fn subtype(mut self, s: impl Into<String>) -> Self {
        self.subtype = s.into();
        self
    }

    /// Marks the service primary.
    pub fn primary(mut self) -> Self {
        self.primary = true;
        self
    }

    /// Marks the service hidden.
    pub fn hidden(mut self) -> Self {
        self.hidden = true;
        self
    }

    /// Links the service of type `ty` and subtype `subtype` in the same accessory (§2.4).
    pub fn linked(mut self, ty: HapType, subtype: impl Into<String>) -> Self {
        self.linked.push((ty, subtype.into()));
        self
    }

    /// Adds a characteristic.
    pub fn characteristic(mut self, c: Characteristic) -> Self {
        self.characteristics.push(c);
        self
    }

    /// Type.
    pub fn ty(&self) -> HapType {
        self.ty
    }
    /// Subtype.
    pub fn subtype_str(&self) -> &str {
        &self.subtype
    }
    /// Instance id (0 until added to a [`Database`]).
    pub fn iid(&self) -> u64 {
        self.iid
    }
    /// Characteristics.
    pub fn characteristics(&self) -> &[Characteristic] {
        &self.characteristics
    }

    fn to_json(&self, mut value_of: impl FnMut(&Characteristic) -> Option<Value>) -> Json {
        let mut obj = Map::new();
        obj.insert("type".into(), json!(self.ty.short_string()));
        obj.insert("iid".into(), json!(self.iid));
        let chars: Vec<Json> = self
            .characteristics
            .iter()
            .map(|c| c.to_json(value_of(c).as_ref()))
            .collect();
        obj.insert("characteristics".into(), Json::Array(chars));
        if self.primary {
            obj.insert("primary".into(), json!(true));
        }
        if self.hidden {
            obj.insert("hidden".into(), json!(true));
        }
        if !self.linked_iids.is_empty() {
            obj.insert("linked".into(), json!(self.linked_iids));
        }
        Json::Object(obj)
    }
}

/// One accessory (AID) and its services.
#[derive(Clone, Debug)]
pub struct Accessory {
    aid: u64,
    services: Vec<Service>,
}

/// AccessoryInformation (§2.2): must have IID 1.
pub const ACCESSORY_INFORMATION: HapType = HapType::apple(0x3E);

impl Accessory {
    /// An accessory with id `aid` (1 for the only or bridge accessory, §1.9).
    pub fn new(aid: u64) -> Self {
        Self {
            aid,
            services: Vec::new(),
        }
    }

    /// Adds a service.
    pub fn service(mut self, s: Service) -> Self {
        self.services.push(s);
        self
    }

    /// Accessory id.
    pub fn aid(&self) -> u64 {
        self.aid
    }
    /// Services.
    pub fn services(&self) -> &[Service] {
        &self.services
    }
}

/// Addresses one characteristic: accessory id and instance id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CharId {
    /// Accessory id.
    pub aid: u64,
    /// Instance id.
    pub iid: u64,
}

/// All accessories served by one HAP server.
#[derive(Clone, Debug, Default)]
pub struct Database {
    accessories: Vec<Accessory>,
}

impl Database {
    /// An empty database.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `accessory`, assigning IIDs from `iids` so they stay stable across restarts.
    /// AccessoryInformation is moved first so a fresh accessory gives it IID 1.
    pub fn add_accessory(&mut self, mut accessory: Accessory, iids: &mut IidCache) {
        let aid = accessory.aid;
        accessory
            .services
            .sort_by_key(|s| s.ty != ACCESSORY_INFORMATION);
        for s in &mut accessory.services {
            let skey = format!("{aid}/{}/{}", s.ty.full_string(), s.subtype);
            s.iid = iids.iid_for(aid, &skey);
            for c in &mut s.characteristics {
                c.iid = iids.iid_for(aid, &format!("{skey}/{}", c.ty.full_string()));
            }
        }
        let lookup: BTreeMap<(HapType, String), u64> = accessory
            .services
            .iter()
            .map(|s| ((s.ty, s.subtype.clone()), s.iid))
            .collect();
        for s in &mut accessory.services {
            s.linked_iids = s
                .linked
                .iter()
                .filter_map(|k| lookup.get(k).copied())
                .collect();
        }
        self.accessories.retain(|a| a.aid != aid);
        self.accessories.push(accessory);
        self.accessories.sort_by_key(|a| a.aid);
    }

    /// Accessories in AID order.
    pub fn accessories(&self) -> &[Accessory] {
        &self.accessories
    }

    /// The characteristic at `id`.
    pub fn get(&self, id: CharId) -> Option<&Characteristic> {
        self.accessories
            .iter()
            .find(|a| a.aid == id.aid)?
            .services
            .iter()
            .flat_map(|s| s.characteristics.iter())
            .find(|c| c.iid == id.iid)
    }

    /// The characteristic at `id`, mutably.
    pub fn get_mut(&mut self, id: CharId) -> Option<&mut Characteristic> {
        self.accessories
            .iter_mut()
            .find(|a| a.aid == id.aid)?
            .services
            .iter_mut()
            .flat_map(|s| s.characteristics.iter_mut())
            .find(|c| c.iid == id.iid)
    }

    /// Finds the characteristic of type `char_ty` in the service `(service_ty, subtype)` of
    /// accessory `aid`.
    pub fn find(
        &self,
        aid: u64,
        service_ty: HapType,
        subtype: &str,
        char_ty: HapType,
    ) -> Option<CharId> {
        let acc = self.accessories.iter().find(|a| a.aid == aid)?;
        let svc = acc
            .services
            .iter()
            .find(|s| s.ty == service_ty && s.subtype == subtype)?;
        let c = svc.characteristics.iter().find(|c| c.ty == char_ty)?;
        Some(CharId { aid, iid: c.iid })
    }

    /// The `/accessories` JSON; `value_of` gives each readable characteristic's value.
    pub fn to_json(&self, mut value_of: impl FnMut(CharId, &Characteristic) -> Value) -> Json {
        let accessories: Vec<Json> = self
            .accessories
            .iter()
            .map(|a| {
                let services: Vec<Json> = a
                    .services
                    .iter()
                    .map(|s| {
                        s.to_json(|c| {
                            c.perms.contains(Perms::PR).then(|| {
                                value_of(
                                    CharId {
                                        aid: a.aid,
                                        iid: c.iid,
                                    },
                                    c,
                                )
                            })
                        })
                    })
                    .collect();
                json!({"aid": a.aid, "services": services})
            })
            .collect();
        json!({ "accessories": accessories })
    }

    /// Hash of the database structure without values: when it changes, `c#` is bumped (§1.2).
    pub fn structure_hash(&self) -> String {
        use sha2::Digest as _;
        let json = self.to_json(|_, _| Value::Null).to_string();
        let digest = sha2::Sha512::digest(json.as_bytes());
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn info_service() -> Service {
        Service::new(ACCESSORY_INFORMATION)
            .characteristic(Characteristic::new(
                HapType::apple(0x14),
                Format::Bool,
                Perms::PW,
            ))
            .characteristic(
                Characteristic::new(HapType::apple(0x23), Format::String, Perms::PR)
                    .value(Value::String("Cam".into())),
            )
    }

    fn db_with(iids: &mut IidCache) -> Database {
        let mut db = Database::new();
        let acc = Accessory::new(1)
            .service(
                Service::new(HapType::apple(0x204))
                    .primary()
                    .linked(HapType::apple(0x85), "")
                    .characteristic(
                        Characteristic::new(
                            HapType::apple(0xB0),
                            Format::UInt8,
                            Perms::PR | Perms::PW | Perms::EV,
                        )
                        .range(0.0, 1.0, 1.0),
                    )
                    .characteristic(
                        Characteristic::new(
                            HapType::apple(0x209),
                            Format::Tlv8,
                            Perms::PR | Perms::PW,
                        )
                        .value(Value::Bytes(vec![1, 2, 3])),
                    ),
            )
            .service(info_service())
            .service(
                Service::new(HapType::apple(0x85)).characteristic(Characteristic::new(
                    HapType::apple(0x22),
                    Format::Bool,
                    Perms::PR | Perms::EV,
                )),
            );
        db.add_accessory(acc, iids);
        db
    }

    #[test]
    fn hap_type_forms() {
        assert_eq!(HapType::apple(0x3E).short_string(), "3E");
        assert_eq!(HapType::apple(0x21A).short_string(), "21A");
        assert_eq!(
            HapType::apple(0x3E).full_string(),
            "0000003E-0000-1000-8000-0026BB765291"
        );
        assert_eq!(
            HapType::parse("0000003E-0000-1000-8000-0026BB765291"),
            Some(HapType::apple(0x3E))
        );
        assert_eq!(HapType::parse("21a"), Some(HapType::apple(0x21A)));
        let custom = HapType::parse("12345678-9ABC-DEF0-1234-56789ABCDEF0").unwrap();
        assert_eq!(custom.apple_short(), None);
        assert_eq!(
            custom.short_string(),
            "12345678-9ABC-DEF0-1234-56789ABCDEF0"
        );
        assert_eq!(HapType::parse("zz"), None);
    }

    #[test]
    fn accessory_information_gets_iid_1_and_links_resolve() {
        let mut iids = IidCache::default();
        let db = db_with(&mut iids);
        let json = db.to_json(|_, c| c.stored_value().clone());
        let services = json["accessories"][0]["services"].as_array().unwrap();
        assert_eq!(services[0]["type"], "3E");
        assert_eq!(services[0]["iid"], 1);
        let motion_iid = services.iter().find(|s| s["type"] == "85").unwrap()["iid"].clone();
        let rec = services.iter().find(|s| s["type"] == "204").unwrap();
        assert_eq!(rec["linked"], json!([motion_iid]));
        assert_eq!(rec["primary"], true);
        // Every iid is unique within the accessory.
        let mut all: Vec<u64> = Vec::new();
        for s in services {
            all.push(s["iid"].as_u64().unwrap());
            for c in s["characteristics"].as_array().unwrap() {
                all.push(c["iid"].as_u64().unwrap());
            }
        }
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn json_shapes_follow_hap() {
        let mut iids = IidCache::default();
        let db = db_with(&mut iids);
        let json = db.to_json(|_, c| c.stored_value().clone());
        let services = json["accessories"][0]["services"].as_array().unwrap();
        let identify = &services[0]["characteristics"][0];
        assert_eq!(identify["perms"], json!(["pw"]));
        assert!(identify.get("value").is_none(), "write-only has no value");
        let rec = services.iter().find(|s| s["type"] == "204").unwrap();
        let active = &rec["characteristics"][0];
        assert_eq!(active["format"], "uint8");
        assert_eq!(active["minValue"], json!(0));
        assert_eq!(active["maxValue"], json!(1));
        assert_eq!(active["perms"], json!(["pr", "pw", "ev"]));
        assert_eq!(rec["characteristics"][1]["value"], "AQID");
        let motion = services.iter().find(|s| s["type"] == "85").unwrap();
        assert_eq!(
            motion["characteristics"][0]["value"],
            json!(0),
            "bool is 0/1"
        );
    }

    #[test]
    fn iids_are_stable_across_restarts_and_additions() {
        let mut iids = IidCache::default();
        let db1 = db_with(&mut iids);
        let saved = iids.to_bytes();
        let mut restored = IidCache::from_bytes(&saved).unwrap();
        let db2 = db_with(&mut restored);
        assert_eq!(
            db1.to_json(|_, _| Value::Null),
            db2.to_json(|_, _| Value::Null)
        );
        assert_eq!(db1.structure_hash(), db2.structure_hash());
        let motion = db1
            .find(1, HapType::apple(0x85), "", HapType::apple(0x22))
            .unwrap();
        // Adding a service keeps every existing iid and changes the structure hash.
        let mut db3 = Database::new();
        let acc = Accessory::new(1)
            .service(
                Service::new(HapType::apple(0xA2)).characteristic(Characteristic::new(
                    HapType::apple(0x37),
                    Format::String,
                    Perms::PR,
                )),
            )
            .service(info_service())
            .service(
                Service::new(HapType::apple(0x85)).characteristic(Characteristic::new(
                    HapType::apple(0x22),
                    Format::Bool,
                    Perms::PR | Perms::EV,
                )),
            );
        db3.add_accessory(acc, &mut restored);
        assert_eq!(
            db3.find(1, HapType::apple(0x85), "", HapType::apple(0x22)),
            Some(motion)
        );
        assert_ne!(db3.structure_hash(), db1.structure_hash());
    }

    #[test]
    fn values_do_not_change_the_structure_hash() {
        let mut iids = IidCache::default();
        let mut db = db_with(&mut iids);
        let h = db.structure_hash();
        let id = db
            .find(1, HapType::apple(0x85), "", HapType::apple(0x22))
            .unwrap();
        assert!(db.get_mut(id).unwrap().set_stored_value(Value::Bool(true)));
        assert_eq!(db.structure_hash(), h);
    }

    #[test]
    fn coerce_checks_format_and_metadata() {
        let invalid = Err(HapStatus::INVALID_VALUE_IN_REQUEST);
        let b = Characteristic::new(HapType::apple(0x22), Format::Bool, Perms::PR);
        assert_eq!(b.coerce(&json!(true)), Ok(Value::Bool(true)));
        assert_eq!(b.coerce(&json!(0)), Ok(Value::Bool(false)));
        assert_eq!(b.coerce(&json!(2)), invalid);
        assert_eq!(b.coerce(&json!("x")), invalid);
        let u = Characteristic::new(HapType::apple(0xB0), Format::UInt8, Perms::PW)
            .range(0.0, 1.0, 1.0);
        assert_eq!(u.coerce(&json!(1)), Ok(Value::UInt(1)));
        assert_eq!(u.coerce(&json!(true)), Ok(Value::UInt(1)));
        assert_eq!(u.coerce(&json!(2)), invalid);
        assert_eq!(u.coerce(&json!(-1)), invalid);
        assert_eq!(u.coerce(&json!(0.5)), invalid);
        let u8f = Characteristic::new(HapType::apple(0x119), Format::UInt8, Perms::PW);
        assert_eq!(u8f.coerce(&json!(256)), invalid);
        let vv = Characteristic::new(HapType::apple(0x1), Format::UInt8, Perms::PW)
            .valid_values(vec![0, 2]);
        assert_eq!(vv.coerce(&json!(1)), invalid);
        assert_eq!(vv.coerce(&json!(2)), Ok(Value::UInt(2)));
        let i = Characteristic::new(HapType::apple(0x1), Format::Int, Perms::PW);
        assert_eq!(i.coerce(&json!(-5)), Ok(Value::Int(-5)));
        assert_eq!(i.coerce(&json!(i64::from(i32::MAX) + 1)), invalid);
        let s = Characteristic::new(HapType::apple(0x23), Format::String, Perms::PW).max_len(3);
        assert_eq!(s.coerce(&json!("abc")), Ok(Value::String("abc".into())));
        assert_eq!(s.coerce(&json!("abcd")), invalid);
        let t = Characteristic::new(HapType::apple(0x209), Format::Tlv8, Perms::PW);
        assert_eq!(t.coerce(&json!("AQID")), Ok(Value::Bytes(vec![1, 2, 3])));
        assert_eq!(t.coerce(&json!("not base64!")), invalid);
        assert_eq!(t.coerce(&json!(5)), invalid);
        let f = Characteristic::new(HapType::apple(0x224), Format::Float, Perms::PW)
            .range(0.0, 360.0, 1.0);
        assert_eq!(f.coerce(&json!(90.5)), Ok(Value::Float(90.5)));
        assert_eq!(f.coerce(&json!(400)), invalid);
    }

    #[test]
    fn immediate_event_defaults() {
        assert!(
            Characteristic::new(HapType::apple(0x22), Format::Bool, Perms::PR)
                .has_immediate_events()
        );
        assert!(
            !Characteristic::new(HapType::apple(0xB0), Format::UInt8, Perms::PR)
                .has_immediate_events()
        );
    }
}
