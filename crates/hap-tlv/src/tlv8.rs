//! `Tlv8`: an owned, ordered list of items.

use crate::{Error, Reader, TlvType, Writer};

/// An owned TLV8 item with fragments joined.
#[derive(Clone, PartialEq, Eq)]
pub struct OwnedItem {
    /// The item's type byte.
    pub ty: TlvType,
    /// The whole value.
    pub value: Vec<u8>,
}

impl core::fmt::Debug for OwnedItem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}: ", self.ty)?;
        crate::fmt_value(f, &self.value)
    }
}

/// An ordered list of TLV8 items, keeping separators, repeats and unknown types.
///
/// `Debug` prints values of up to 4 bytes (states, methods, error codes, flags) and only the
/// length of longer ones, so keys, proofs and ciphertext never reach logs.
///
/// ```
/// use hap_tlv::{Tlv8, TlvType};
/// let mut tlv = Tlv8::new();
/// tlv.push_u8(TlvType::STATE, 2).push(TlvType::SALT, &[7; 16]);
/// let bytes = tlv.encode();
/// let back = Tlv8::decode(&bytes).unwrap();
/// assert_eq!(back.require_u8(TlvType::STATE), Ok(2));
/// assert_eq!(back.get(TlvType::SALT), Some(&[7u8; 16][..]));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tlv8 {
    items: Vec<OwnedItem>,
}

impl core::fmt::Debug for Tlv8 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(&self.items).finish()
    }
}

impl Tlv8 {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes `input` with [`Reader`]'s rules.
    ///
    /// # Errors
    /// [`Error::Truncated`] or [`Error::BadFragment`] for malformed input.
    pub fn decode(input: &[u8]) -> Result<Self, Error> {
        let items = Reader::new(input)
            .map(|item| {
                item.map(|item| OwnedItem {
                    ty: item.ty,
                    value: item.value.into_owned(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { items })
    }

    /// Encodes all items in order (see [`Writer`] for fragmentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_bytes());
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        for item in &self.items {
            w.put(item.ty, &item.value);
        }
    }

    /// Length of [`Tlv8::encode`]'s output.
    pub fn encoded_len_bytes(&self) -> usize {
        self.items
            .iter()
            .map(|i| i.value.len() + 2 * i.value.len().div_ceil(255).max(1))
            .sum()
    }

    /// The items in order.
    pub fn items(&self) -> &[OwnedItem] {
        &self.items
    }

    /// Consumes the list, returning its items.
    pub fn into_items(self) -> Vec<OwnedItem> {
        self.items
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Appends an item.
    pub fn push(&mut self, ty: TlvType, value: &[u8]) -> &mut Self {
        self.items.push(OwnedItem {
            ty,
            value: value.to_vec(),
        });
        self
    }

    /// Appends an item, taking the value.
    pub fn push_vec(&mut self, ty: TlvType, value: Vec<u8>) -> &mut Self {
        self.items.push(OwnedItem { ty, value });
        self
    }

    /// Appends a one-byte item.
    pub fn push_u8(&mut self, ty: TlvType, v: u8) -> &mut Self {
        self.push(ty, &[v])
    }

    /// Appends `v` little-endian in the fewest bytes (at least one): pairing integers.
    pub fn push_uint_min(&mut self, ty: TlvType, v: u64) -> &mut Self {
        let bytes = v.to_le_bytes();
        let width = crate::writer::min_width_bytes(v);
        self.push(ty, bytes.get(..width).unwrap_or(&bytes))
    }

    /// Appends a fixed 2-byte little-endian item (HKSV configuration fields).
    pub fn push_u16(&mut self, ty: TlvType, v: u16) -> &mut Self {
        self.push(ty, &v.to_le_bytes())
    }

    /// Appends a fixed 4-byte little-endian item (HKSV configuration fields).
    pub fn push_u32(&mut self, ty: TlvType, v: u32) -> &mut Self {
        self.push(ty, &v.to_le_bytes())
    }

    /// Appends a fixed 8-byte little-endian item.
    pub fn push_u64(&mut self, ty: TlvType, v: u64) -> &mut Self {
        self.push(ty, &v.to_le_bytes())
    }

    /// Appends a zero-length separator item of type `sep`.
    pub fn push_separator(&mut self, sep: TlvType) -> &mut Self {
        self.push(sep, &[])
    }

    /// Appends `inner`, encoded, as the value of one item of type `ty`.
    pub fn push_nested(&mut self, ty: TlvType, inner: &Tlv8) -> &mut Self {
        self.push_vec(ty, inner.encode())
    }

    /// The value of the first item of type `ty`.
    pub fn get(&self, ty: TlvType) -> Option<&[u8]> {
        self.items
            .iter()
            .find(|i| i.ty == ty)
            .map(|i| i.value.as_slice())
    }

    /// The values of every item of type `ty`, in order.
    pub fn get_all(&self, ty: TlvType) -> impl Iterator<Item = &[u8]> + '_ {
        self.items
            .iter()
            .filter(move |i| i.ty == ty)
            .map(|i| i.value.as_slice())
    }

    /// The value of the first item of type `ty`.
    ///
    /// # Errors
    /// [`Error::MissingType`] if there is none.
    pub fn require(&self, ty: TlvType) -> Result<&[u8], Error> {
        self.get(ty).ok_or(Error::MissingType { ty })
    }

    /// The first item of type `ty` as a fixed-size array.
    ///
    /// # Errors
    /// [`Error::MissingType`], or [`Error::BadLength`] unless it has exactly `N` bytes.
    pub fn require_array<const N: usize>(&self, ty: TlvType) -> Result<[u8; N], Error> {
        let v = self.require(ty)?;
        v.try_into().map_err(|_| Error::BadLength {
            ty,
            len_bytes: v.len(),
            min_bytes: N,
            max_bytes: N,
        })
    }

    /// The first item of type `ty` as one byte.
    ///
    /// # Errors
    /// [`Error::MissingType`], or [`Error::BadLength`] unless it has exactly one byte.
    pub fn require_u8(&self, ty: TlvType) -> Result<u8, Error> {
        self.require_array::<1>(ty).map(|[b]| b)
    }

    /// The first item of type `ty` as a little-endian unsigned integer of 1..=8 bytes, if
    /// present.
    ///
    /// # Errors
    /// [`Error::BadLength`] if the value is empty or longer than 8 bytes.
    pub fn get_uint(&self, ty: TlvType) -> Result<Option<u64>, Error> {
        self.get(ty).map(|v| read_uint_le(ty, v)).transpose()
    }

    /// Like [`Tlv8::get_uint`], but the item must be present.
    ///
    /// # Errors
    /// [`Error::MissingType`] or [`Error::BadLength`].
    pub fn require_uint(&self, ty: TlvType) -> Result<u64, Error> {
        read_uint_le(ty, self.require(ty)?)
    }

    /// Decodes the value of the first item of type `ty` as a nested TLV8, if present.
    ///
    /// # Errors
    /// Any decoding error of the nested value.
    pub fn nested(&self, ty: TlvType) -> Result<Option<Tlv8>, Error> {
        self.get(ty).map(Tlv8::decode).transpose()
    }

    /// Splits at zero-length items of type `sep`, dropping the separators. `n` separators give
    /// `n + 1` lists (some possibly empty); an empty list gives one empty list.
    pub fn split_lists(&self, sep: TlvType) -> Vec<Tlv8> {
        let mut lists = vec![Tlv8::new()];
        for item in &self.items {
            if item.ty == sep && item.value.is_empty() {
                lists.push(Tlv8::new());
            } else if let Some(last) = lists.last_mut() {
                last.items.push(item.clone());
            }
        }
        lists
    }
}

/// Reads a 1..=8 byte little-endian unsigned integer.
///
/// # Errors
/// [`Error::BadLength`] for an empty or longer value.
pub fn read_uint_le(ty: TlvType, v: &[u8]) -> Result<u64, Error> {
    if v.is_empty() || v.len() > 8 {
        return Err(Error::BadLength {
            ty,
            len_bytes: v.len(),
            min_bytes: 1,
            max_bytes: 8,
        });
    }
    let mut buf = [0u8; 8];
    for (dst, src) in buf.iter_mut().zip(v) {
        *dst = *src;
    }
    Ok(u64::from_le_bytes(buf))
}

impl FromIterator<OwnedItem> for Tlv8 {
    fn from_iter<I: IntoIterator<Item = OwnedItem>>(iter: I) -> Self {
        Self {
            items: iter.into_iter().collect(),
        }
    }
}

impl From<Vec<OwnedItem>> for Tlv8 {
    fn from(items: Vec<OwnedItem>) -> Self {
        Self { items }
    }
}

impl<'a> IntoIterator for &'a Tlv8 {
    type Item = &'a OwnedItem;
    type IntoIter = core::slice::Iter<'a, OwnedItem>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}
