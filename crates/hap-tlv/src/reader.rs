//! Streaming TLV8 reader.

use std::borrow::Cow;

use crate::{Error, TlvType};

/// Longest value one TLV8 item can carry; longer values continue in the next item.
pub const MAX_FRAGMENT_BYTES: usize = 255;

/// One decoded item: its type and its value with fragments already joined.
#[derive(Clone, PartialEq, Eq)]
pub struct Item<'a> {
    /// The item's type byte.
    pub ty: TlvType,
    /// The value; borrowed unless it was reassembled from fragments.
    pub value: Cow<'a, [u8]>,
}

impl Item<'_> {
    /// Whether this is a zero-length item of type `sep` (a list boundary).
    pub fn is_separator(&self, sep: TlvType) -> bool {
        self.ty == sep && self.value.is_empty()
    }
}

impl core::fmt::Debug for Item<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}: ", self.ty)?;
        crate::fmt_value(f, &self.value)
    }
}

/// Reads TLV8 items in order.
///
/// Rules (HAP spec §14.1, HomeKitADK `HAPTLVReader.c`):
/// * an item directly followed by items of the same type is joined with them only while each
///   fragment before has exactly 255 bytes; an empty continuation fragment is
///   [`Error::BadFragment`];
/// * a same-type item after a shorter item starts a new item (ADK rejects this; we keep both so
///   a peer that lists same-type items without separators can still be read);
/// * zero-length items (separators such as `FF 00` or `00 00`) are yielded like any other item;
/// * unknown types are yielded.
///
/// After an error the iterator ends. Work is bounded by the input length; it never panics.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
    offset_bytes: usize,
    done: bool,
}

impl<'a> Reader<'a> {
    /// A reader over `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Self {
            rest: input,
            offset_bytes: 0,
            done: false,
        }
    }

    /// Splits one raw fragment (header + value) off the front of `rest`.
    fn fragment(&mut self) -> Result<(TlvType, &'a [u8]), Error> {
        let Some((&[ty, len], after)) = self.rest.split_first_chunk::<2>() else {
            return Err(Error::Truncated {
                ty: TlvType(self.rest.first().copied().unwrap_or(0)),
                offset_bytes: self.offset_bytes,
                needed_bytes: 2,
                available_bytes: self.rest.len(),
            });
        };
        let (ty, len) = (TlvType(ty), usize::from(len));
        let Some((value, rest)) = after.split_at_checked(len) else {
            return Err(Error::Truncated {
                ty,
                offset_bytes: self.offset_bytes,
                needed_bytes: 2 + len,
                available_bytes: self.rest.len(),
            });
        };
        self.rest = rest;
        self.offset_bytes += 2 + len;
        Ok((ty, value))
    }

    fn next_item(&mut self) -> Result<Item<'a>, Error> {
        let (ty, first) = self.fragment()?;
        let mut value = Cow::Borrowed(first);
        let mut last_len = first.len();
        while last_len == MAX_FRAGMENT_BYTES && self.rest.first() == Some(&ty.0) {
            let header_offset = self.offset_bytes;
            let (_, more) = self.fragment()?;
            if more.is_empty() {
                return Err(Error::BadFragment {
                    ty,
                    offset_bytes: header_offset,
                });
            }
            value.to_mut().extend_from_slice(more);
            last_len = more.len();
        }
        Ok(Item { ty, value })
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Item<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.rest.is_empty() {
            return None;
        }
        let item = self.next_item();
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}
