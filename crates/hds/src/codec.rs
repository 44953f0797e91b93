//! The HDS value encoding, an Apple "OPACK"-style tagged format (protocol notes §4.6, §7).
//!
//! Tag byte first; multi-byte numbers little-endian. The decoder accepts every tag of the table,
//! including the full inline integer range 0x08–0x2F (0–39), strings and data with every length
//! width, terminated containers (0xDF, 0xEF, 0x9F data, 0x6F string), and back-references
//! 0xA0–0xCF into the table of previously decoded *multi-byte scalars* (strings, data, sized
//! integers, floats, dates, UUIDs — the rule HAP-NodeJS's writer and pyatv's reader share, note 2).
//!
//! The encoder is deliberately conservative so that every peer reads it:
//! * it never emits back-references;
//! * integers use −1 (0x07) / inline 0–38 / int8 / int16 / int32 / int64 — 39 is written as
//!   int8 `30 27` because HAP-NodeJS's reader rejects the inline tag 0x2F;
//! * data always uses the 0x91–0x94 length forms, because HAP-NodeJS's reader decodes the
//!   inline forms 0x70–0x90 to `undefined`;
//! * non-integers are float64; arrays and dictionaries are counted up to 14 entries, else
//!   terminated.
//!
//! Decoding is bounded: nesting depth is limited to [`MAX_DEPTH`], every declared length is
//! checked against the remaining input before anything is allocated, container capacity is
//! never taken from the peer, and back-referenced strings count against a copy budget, so a
//! hostile payload cannot make us allocate much more than its own size.

use bytes::{BufMut, Bytes};

use crate::Error;
use crate::error::malformed;

/// Deepest container nesting the decoder accepts (HDS messages nest 4 deep).
pub const MAX_DEPTH: usize = 32;
/// Bytes that back-referenced strings may copy beyond the input size.
const REFERENCE_COPY_BUDGET_BYTES: usize = 64 * 1024;

mod tag {
    pub(super) const TRUE: u8 = 0x01;
    pub(super) const FALSE: u8 = 0x02;
    pub(super) const TERMINATOR: u8 = 0x03;
    pub(super) const NULL: u8 = 0x04;
    pub(super) const UUID: u8 = 0x05;
    pub(super) const DATE: u8 = 0x06;
    pub(super) const MINUS_ONE: u8 = 0x07;
    pub(super) const INT_INLINE_0: u8 = 0x08;
    pub(super) const INT_INLINE_39: u8 = 0x2F;
    pub(super) const INT8: u8 = 0x30;
    pub(super) const INT16: u8 = 0x31;
    pub(super) const INT32: u8 = 0x32;
    pub(super) const INT64: u8 = 0x33;
    pub(super) const FLOAT32: u8 = 0x35;
    pub(super) const FLOAT64: u8 = 0x36;
    pub(super) const STR_INLINE_0: u8 = 0x40;
    pub(super) const STR_INLINE_32: u8 = 0x60;
    pub(super) const STR_LEN8: u8 = 0x61;
    pub(super) const STR_LEN64: u8 = 0x64;
    pub(super) const STR_NUL_TERMINATED: u8 = 0x6F;
    pub(super) const DATA_INLINE_0: u8 = 0x70;
    pub(super) const DATA_INLINE_32: u8 = 0x90;
    pub(super) const DATA_LEN8: u8 = 0x91;
    pub(super) const DATA_LEN64: u8 = 0x94;
    pub(super) const DATA_TERMINATED: u8 = 0x9F;
    pub(super) const REF_0: u8 = 0xA0;
    pub(super) const REF_47: u8 = 0xCF;
    pub(super) const ARRAY_0: u8 = 0xD0;
    pub(super) const ARRAY_TERMINATED: u8 = 0xDF;
    pub(super) const DICT_0: u8 = 0xE0;
    pub(super) const DICT_TERMINATED: u8 = 0xEF;
}

/// Largest count a counted array or dictionary tag can carry.
const MAX_COUNTED: usize = 14;

/// A decoded (or to-be-encoded) HDS value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// 0x04.
    Null,
    /// 0x01 / 0x02.
    Bool(bool),
    /// −1, inline 0–39, int8/16/32/64 (all widths decode to this).
    Int(i64),
    /// float32 (widened) or float64.
    Float(f64),
    /// UTF-8 string.
    String(String),
    /// Opaque bytes; on decode a zero-copy slice of the payload.
    Data(Bytes),
    /// Ordered list.
    Array(Vec<Value>),
    /// Dictionary in wire order; keys are strings in practice but any value is allowed.
    Dict(Vec<(Value, Value)>),
    /// 16-byte UUID in canonical (big-endian) byte order.
    Uuid([u8; 16]),
    /// Seconds since 2001-01-01 00:00:00 UTC (float64, as HAP-NodeJS reads and writes it).
    Date(f64),
}

impl Value {
    /// Look a string key up in a dictionary (first match); `None` for other variants.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Value::String(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The integer, if this is one.
    #[must_use]
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The string, if this is one.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    #[must_use]
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The data, if this is data.
    #[must_use]
    pub fn as_data(&self) -> Option<&Bytes> {
        match self {
            Value::Data(d) => Some(d),
            _ => None,
        }
    }

    /// Build a dictionary from string keys (message bodies).
    #[must_use]
    pub fn dict<const N: usize>(entries: [(&str, Value); N]) -> Value {
        Value::Dict(
            entries
                .into_iter()
                .map(|(k, v)| (Value::String(k.to_owned()), v))
                .collect(),
        )
    }

    /// Encode into `out` with the conservative rules of the module docs.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut e = Encoder::new(out);
        e.value(self);
    }

    /// Encode into a fresh vector.
    #[must_use]
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Low-level writer used by [`Value::encode`] and by the message encoders that must pick wire
/// widths themselves (HAP-NodeJS writes header `id`/`status` as int64, §4.7).
#[derive(Debug)]
pub struct Encoder<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Encoder<'a> {
    /// Append to `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out }
    }

    /// Any value.
    pub fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.out.push(tag::NULL),
            Value::Bool(b) => self.bool(*b),
            Value::Int(i) => self.int(*i),
            Value::Float(f) => {
                self.out.push(tag::FLOAT64);
                self.out.put_f64_le(*f);
            }
            Value::String(s) => self.string(s),
            Value::Data(d) => self.data(d),
            Value::Array(items) => {
                self.array_start(items.len());
                for item in items {
                    self.value(item);
                }
                self.container_end(items.len());
            }
            Value::Dict(entries) => {
                self.dict_start(entries.len());
                for (k, v) in entries {
                    self.value(k);
                    self.value(v);
                }
                self.container_end(entries.len());
            }
            Value::Uuid(u) => {
                self.out.push(tag::UUID);
                self.out.extend_from_slice(u);
            }
            Value::Date(d) => {
                self.out.push(tag::DATE);
                self.out.put_f64_le(*d);
            }
        }
    }

    /// 0x01 / 0x02.
    pub fn bool(&mut self, b: bool) {
        self.out.push(if b { tag::TRUE } else { tag::FALSE });
    }

    /// Smallest form, except 39 which goes out as int8 (HAP-NodeJS rejects inline 0x2F).
    pub fn int(&mut self, i: i64) {
        match i {
            -1 => self.out.push(tag::MINUS_ONE),
            0..=38 => self.out.push(tag::INT_INLINE_0 + i as u8),
            _ => {
                if let Ok(v) = i8::try_from(i) {
                    self.out.push(tag::INT8);
                    self.out.put_i8(v);
                } else if let Ok(v) = i16::try_from(i) {
                    self.out.push(tag::INT16);
                    self.out.put_i16_le(v);
                } else if let Ok(v) = i32::try_from(i) {
                    self.out.push(tag::INT32);
                    self.out.put_i32_le(v);
                } else {
                    self.int64(i);
                }
            }
        }
    }

    /// Always int64 (0x33), as HAP-NodeJS writes header `id` and `status`.
    pub fn int64(&mut self, i: i64) {
        self.out.push(tag::INT64);
        self.out.put_i64_le(i);
    }

    /// UTF-8 string: inline up to 32 bytes, then u8/u16/u32/u64 length.
    pub fn string(&mut self, s: &str) {
        let n = s.len();
        if n <= 32 {
            self.out.push(tag::STR_INLINE_0 + n as u8);
        } else {
            self.length(tag::STR_LEN8, n);
        }
        self.out.extend_from_slice(s.as_bytes());
    }

    /// Data with an explicit length (0x91–0x94), never the inline forms.
    pub fn data(&mut self, d: &[u8]) {
        self.data_header(d.len());
        self.out.extend_from_slice(d);
    }

    /// Only the tag and length of a data item whose bytes the caller appends itself.
    pub fn data_header(&mut self, len_bytes: usize) {
        self.length(tag::DATA_LEN8, len_bytes);
    }

    fn length(&mut self, base_tag: u8, n: usize) {
        if let Ok(v) = u8::try_from(n) {
            self.out.push(base_tag);
            self.out.put_u8(v);
        } else if let Ok(v) = u16::try_from(n) {
            self.out.push(base_tag + 1);
            self.out.put_u16_le(v);
        } else if let Ok(v) = u32::try_from(n) {
            self.out.push(base_tag + 2);
            self.out.put_u32_le(v);
        } else {
            self.out.push(base_tag + 3);
            self.out.put_u64_le(n as u64);
        }
    }

    /// Start an array of `count` items (counted tag up to 14, else terminated).
    pub fn array_start(&mut self, count: usize) {
        if count <= MAX_COUNTED {
            self.out.push(tag::ARRAY_0 + count as u8);
        } else {
            self.out.push(tag::ARRAY_TERMINATED);
        }
    }

    /// Start a dictionary of `count` entries (counted tag up to 14, else terminated).
    pub fn dict_start(&mut self, count: usize) {
        if count <= MAX_COUNTED {
            self.out.push(tag::DICT_0 + count as u8);
        } else {
            self.out.push(tag::DICT_TERMINATED);
        }
    }

    /// Close a container started with the same `count`.
    pub fn container_end(&mut self, count: usize) {
        if count > MAX_COUNTED {
            self.out.push(tag::TERMINATOR);
        }
    }
}

/// Decode exactly one value that spans all of `input`.
///
/// # Errors
/// [`Error::Malformed`] with the byte offset, also for trailing bytes.
pub fn decode(input: &Bytes) -> Result<Value, Error> {
    let (v, used) = decode_prefix(input)?;
    if used != input.len() {
        return Err(malformed(used, "trailing bytes after value"));
    }
    Ok(v)
}

/// Decode one value from the front of `input`; returns it and the number of bytes used.
///
/// # Errors
/// [`Error::Malformed`] with the byte offset.
pub fn decode_prefix(input: &Bytes) -> Result<(Value, usize), Error> {
    let mut d = Decoder {
        input,
        pos: 0,
        table: Vec::new(),
        copy_budget_bytes: input.len().saturating_add(REFERENCE_COPY_BUDGET_BYTES),
    };
    match d.value(0)? {
        Item::Value(v) => Ok((v, d.pos)),
        Item::Terminator => Err(malformed(0, "terminator outside a container")),
    }
}

enum Item {
    Value(Value),
    Terminator,
}

struct Decoder<'a> {
    input: &'a Bytes,
    pos: usize,
    /// Multi-byte scalars seen so far, for back-references (note 2).
    table: Vec<Value>,
    copy_budget_bytes: usize,
}

impl Decoder<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.input.len())
            .ok_or_else(|| malformed(self.pos, what))?;
        let b = self.input.slice(self.pos..end);
        self.pos = end;
        Ok(b)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let b = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&b);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        let [b] = self.array::<1>(what)?;
        Ok(b)
    }

    fn length(&mut self, width_bytes: usize) -> Result<usize, Error> {
        let what = "truncated length";
        let n: u64 = match width_bytes {
            1 => u64::from(self.u8(what)?),
            2 => u64::from(u16::from_le_bytes(self.array(what)?)),
            4 => u64::from(u32::from_le_bytes(self.array(what)?)),
            _ => u64::from_le_bytes(self.array(what)?),
        };
        let remaining = self.input.len().saturating_sub(self.pos);
        // Checked against the input before anything is allocated.
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= remaining)
            .ok_or_else(|| malformed(self.pos, "declared length exceeds the input"))
    }

    fn string_of(&mut self, n: usize) -> Result<Value, Error> {
        let start = self.pos;
        let b = self.take(n, "truncated string")?;
        let s = std::str::from_utf8(&b).map_err(|_| malformed(start, "string is not UTF-8"))?;
        Ok(self.track(Value::String(s.to_owned())))
    }

    fn track(&mut self, v: Value) -> Value {
        self.table.push(v.clone());
        v
    }

    fn until(&mut self, stop: u8, what: &'static str) -> Result<Bytes, Error> {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|&b| b == stop)
            .ok_or_else(|| malformed(self.pos, what))?;
        let b = self.take(n, what)?;
        self.pos += 1; // the stop byte, found above
        Ok(b)
    }

    fn value(&mut self, depth: usize) -> Result<Item, Error> {
        let at = self.pos;
        let t = self.u8("truncated: missing tag")?;
        let v = match t {
            tag::TRUE => Value::Bool(true),
            tag::FALSE => Value::Bool(false),
            tag::TERMINATOR => return Ok(Item::Terminator),
            tag::NULL => Value::Null,
            tag::UUID => {
                let u = self.array::<16>("truncated UUID")?;
                self.track(Value::Uuid(u))
            }
            tag::DATE => {
                let f = f64::from_le_bytes(self.array("truncated date")?);
                self.track(Value::Date(f))
            }
            tag::MINUS_ONE => Value::Int(-1),
            tag::INT_INLINE_0..=tag::INT_INLINE_39 => Value::Int(i64::from(t - tag::INT_INLINE_0)),
            tag::INT8 => {
                let [b] = self.array::<1>("truncated int8")?;
                self.track(Value::Int(i64::from(b as i8)))
            }
            tag::INT16 => {
                let v = i16::from_le_bytes(self.array("truncated int16")?);
                self.track(Value::Int(i64::from(v)))
            }
            tag::INT32 => {
                let v = i32::from_le_bytes(self.array("truncated int32")?);
                self.track(Value::Int(i64::from(v)))
            }
            tag::INT64 => {
                let v = i64::from_le_bytes(self.array("truncated int64")?);
                self.track(Value::Int(v))
            }
            tag::FLOAT32 => {
                let v = f32::from_le_bytes(self.array("truncated float32")?);
                self.track(Value::Float(f64::from(v)))
            }
            tag::FLOAT64 => {
                let v = f64::from_le_bytes(self.array("truncated float64")?);
                self.track(Value::Float(v))
            }
            tag::STR_INLINE_0..=tag::STR_INLINE_32 => {
                self.string_of(usize::from(t - tag::STR_INLINE_0))?
            }
            tag::STR_LEN8..=tag::STR_LEN64 => {
                let n = self.length(1 << (t - tag::STR_LEN8))?;
                self.string_of(n)?
            }
            tag::STR_NUL_TERMINATED => {
                let start = self.pos;
                let b = self.until(0x00, "unterminated string")?;
                let s =
                    std::str::from_utf8(&b).map_err(|_| malformed(start, "string is not UTF-8"))?;
                self.track(Value::String(s.to_owned()))
            }
            tag::DATA_INLINE_0..=tag::DATA_INLINE_32 => {
                let d = self.take(usize::from(t - tag::DATA_INLINE_0), "truncated data")?;
                self.track(Value::Data(d))
            }
            tag::DATA_LEN8..=tag::DATA_LEN64 => {
                let n = self.length(1 << (t - tag::DATA_LEN8))?;
                let d = self.take(n, "truncated data")?;
                self.track(Value::Data(d))
            }
            tag::DATA_TERMINATED => {
                let d = self.until(tag::TERMINATOR, "unterminated data")?;
                self.track(Value::Data(d))
            }
            tag::REF_0..=tag::REF_47 => {
                let index = usize::from(t - tag::REF_0);
                let v = self
                    .table
                    .get(index)
                    .cloned()
                    .ok_or_else(|| malformed(at, "back-reference to an unknown index"))?;
                if let Value::String(s) = &v {
                    self.copy_budget_bytes = self
                        .copy_budget_bytes
                        .checked_sub(s.len())
                        .ok_or_else(|| malformed(at, "back-references copy too much"))?;
                }
                v
            }
            tag::ARRAY_0..=tag::ARRAY_TERMINATED => {
                let depth = self.enter(depth, at)?;
                let mut items = Vec::new();
                if t == tag::ARRAY_TERMINATED {
                    while let Item::Value(v) = self.value(depth)? {
                        items.push(v);
                    }
                } else {
                    for _ in 0..(t - tag::ARRAY_0) {
                        items.push(self.element(depth)?);
                    }
                }
                Value::Array(items)
            }
            tag::DICT_0..=tag::DICT_TERMINATED => {
                let depth = self.enter(depth, at)?;
                let mut entries = Vec::new();
                if t == tag::DICT_TERMINATED {
                    while let Item::Value(k) = self.value(depth)? {
                        let v = self.element(depth)?;
                        entries.push((k, v));
                    }
                } else {
                    for _ in 0..(t - tag::DICT_0) {
                        let k = self.element(depth)?;
                        let v = self.element(depth)?;
                        entries.push((k, v));
                    }
                }
                Value::Dict(entries)
            }
            _ => return Err(malformed(at, "unknown tag")),
        };
        Ok(Item::Value(v))
    }

    fn enter(&self, depth: usize, at: usize) -> Result<usize, Error> {
        if depth >= MAX_DEPTH {
            return Err(malformed(at, "containers nested too deep"));
        }
        Ok(depth + 1)
    }

    fn element(&mut self, depth: usize) -> Result<Value, Error> {
        let at = self.pos;
        match self.value(depth)? {
            Item::Value(v) => Ok(v),
            Item::Terminator => Err(malformed(at, "terminator inside a counted container")),
        }
    }
}
