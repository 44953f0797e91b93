//! A segment of a recording (init segment or fragment) as one or more `Bytes` parts, and the
//! cutting of it into `dataSend` chunks without copying.
//!
//! A prebuffer ring fragment is a fresh `moof` header per reader in front of a payload shared
//! by all readers; joining them would copy the payload. A [`Segment`] keeps the parts apart and
//! a chunk is the list of sub-slices of the parts it covers, which the frame encoder writes
//! straight into the outgoing frame.

use std::fmt;

use bytes::Bytes;

/// The bytes of one `dataSend` segment, in order, as one or more parts (never joined).
///
/// Build it from one buffer with `From<Bytes>` or from several with [`Segment::from_parts`],
/// e.g. a ring fragment's `moof` header and shared `mdat` payload.
#[derive(Clone, Default)]
pub struct Segment {
    /// Non-empty parts only, so every chunk slice has bytes.
    parts: Vec<Bytes>,
    len: usize,
}

impl Segment {
    /// The concatenation of `parts`, without copying them. Empty parts are dropped.
    #[must_use]
    pub fn from_parts(parts: impl IntoIterator<Item = Bytes>) -> Self {
        let parts: Vec<Bytes> = parts.into_iter().filter(|p| !p.is_empty()).collect();
        let len = parts.iter().map(Bytes::len).sum();
        Self { parts, len }
    }

    /// Total bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// No bytes (`send_segment` refuses such a segment).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The non-empty parts, in order.
    #[must_use]
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }
}

impl From<Bytes> for Segment {
    fn from(bytes: Bytes) -> Self {
        Self::from_parts([bytes])
    }
}

// Not derived: a derived Debug would print every byte of a 300 KB fragment.
impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("len", &self.len)
            .field("parts", &self.parts.len())
            .finish()
    }
}

/// `left` bytes starting at `offset` in `parts[0]`, as borrowed slices of the parts.
#[derive(Debug, Clone)]
pub(crate) struct Slices<'a> {
    parts: &'a [Bytes],
    offset: usize,
    left: usize,
}

impl Slices<'_> {
    /// Bytes the slices cover.
    pub(crate) fn len(&self) -> usize {
        self.left
    }
}

impl<'a> Iterator for Slices<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while self.left > 0 {
            let (first, rest) = self.parts.split_first()?;
            let avail = first.get(self.offset..).unwrap_or_default();
            let n = avail.len().min(self.left);
            let piece = avail.get(..n).unwrap_or_default();
            if n == avail.len() {
                self.parts = rest;
                self.offset = 0;
            } else {
                self.offset += n;
            }
            self.left -= n;
            if n > 0 {
                return Some(piece);
            }
        }
        None
    }
}

/// A segment being sent: where its next chunk starts. Chunks are cut on demand, one per frame.
#[derive(Debug)]
pub(crate) struct Chunker {
    segment: Segment,
    max_chunk_bytes: usize,
    /// Index of the part holding the next unsent byte, and its offset there.
    part: usize,
    offset: usize,
    left: usize,
}

impl Chunker {
    /// `max_chunk_bytes` must be at least 1.
    pub(crate) fn new(segment: Segment, max_chunk_bytes: usize) -> Self {
        let left = segment.len();
        Self {
            segment,
            max_chunk_bytes: max_chunk_bytes.max(1),
            part: 0,
            offset: 0,
            left,
        }
    }

    pub(crate) fn segment_len(&self) -> usize {
        self.segment.len()
    }

    /// All bytes went out.
    pub(crate) fn is_done(&self) -> bool {
        self.left == 0
    }

    /// Chunks not yet sent.
    pub(crate) fn remaining_chunks(&self) -> usize {
        self.left.div_ceil(self.max_chunk_bytes)
    }

    /// The next chunk is the segment's last.
    pub(crate) fn next_is_last(&self) -> bool {
        self.left <= self.max_chunk_bytes
    }

    fn rest(&self) -> Slices<'_> {
        Slices {
            parts: self.segment.parts.get(self.part..).unwrap_or_default(),
            offset: self.offset,
            left: self.left,
        }
    }

    /// The next chunk's bytes, borrowed from the parts; [`advance`](Self::advance) moves on.
    pub(crate) fn next_chunk(&self) -> Slices<'_> {
        let mut chunk = self.rest();
        chunk.left = chunk.left.min(self.max_chunk_bytes);
        chunk
    }

    /// Mark the next chunk as sent.
    pub(crate) fn advance(&mut self) {
        let mut chunk = self.next_chunk();
        let n = chunk.len();
        chunk.by_ref().for_each(drop);
        let (parts_left, offset) = (chunk.parts.len(), chunk.offset);
        self.part = self.segment.parts.len() - parts_left;
        self.offset = offset;
        self.left -= n;
    }

    /// Every remaining chunk as (address, length) of its slices, without sending (tests).
    #[cfg(test)]
    pub(crate) fn plan(&self) -> Vec<Vec<(usize, usize)>> {
        let mut c = Self {
            segment: self.segment.clone(),
            ..*self
        };
        let mut plan = Vec::new();
        while !c.is_done() {
            plan.push(
                c.next_chunk()
                    .map(|s| (s.as_ptr() as usize, s.len()))
                    .collect(),
            );
            c.advance();
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]

    use super::*;

    fn pattern(len: usize, seed: u8) -> Bytes {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<_>>()
            .into()
    }

    fn range_of(b: &Bytes) -> std::ops::Range<usize> {
        b.as_ptr() as usize..b.as_ptr() as usize + b.len()
    }

    #[test]
    fn chunks_cut_across_parts_equal_the_joined_bytes() {
        const MAX: usize = 262_144;
        // 1 KiB header + 600 KiB payload, as one buffer to compare against.
        let joined = pattern(1024 + 600 * 1024, 2);
        // A part boundary at, just before and just after a chunk boundary, plus an empty part.
        for seam in [MAX - 1, MAX, MAX + 1, 2 * MAX] {
            let seg = Segment::from_parts([
                joined.slice(..1024),
                joined.slice(1024..seam),
                Bytes::new(),
                joined.slice(seam..),
            ]);
            assert_eq!(seg.len(), joined.len());
            assert_eq!(seg.parts().len(), 3, "empty part dropped");
            let mut c = Chunker::new(seg, MAX);
            assert_eq!(c.remaining_chunks(), 3);
            let mut at = 0;
            while !c.is_done() {
                let got: Vec<u8> = c.next_chunk().flatten().copied().collect();
                let want = &joined[at..(at + MAX).min(joined.len())];
                assert_eq!(got, want, "seam {seam}, chunk at {at}");
                assert_eq!(c.next_is_last(), at + MAX >= joined.len());
                at += want.len();
                c.advance();
            }
            assert_eq!(at, joined.len());
        }
    }

    #[test]
    fn a_chunk_inside_one_part_is_one_slice_of_it() {
        let header = pattern(1024, 1);
        let payload = pattern(600 * 1024, 2);
        let c = Chunker::new(
            Segment::from_parts([header.clone(), payload.clone()]),
            262_144,
        );
        let plan = c.plan();
        assert_eq!(plan.len(), 3);
        // Chunk 1 spans the seam: the whole header, then the payload's start.
        assert_eq!(
            plan[0],
            vec![
                (header.as_ptr() as usize, 1024),
                (payload.as_ptr() as usize, 262_144 - 1024)
            ]
        );
        // Chunks 2 and 3 lie in the payload: one slice each, pointing into its memory.
        for chunk in &plan[1..] {
            assert_eq!(chunk.len(), 1);
            let (ptr, len) = chunk[0];
            assert!(range_of(&payload).contains(&ptr));
            assert!(ptr + len <= range_of(&payload).end);
        }
    }

    #[test]
    fn one_bytes_segment_is_one_part() {
        let b = pattern(10, 0);
        let seg = Segment::from(b.clone());
        assert_eq!(seg.parts(), &[b][..]);
        assert!(Segment::from(Bytes::new()).is_empty());
        assert_eq!(
            format!("{seg:?}"),
            "Segment { len: 10, parts: 1 }",
            "Debug prints no bytes"
        );
    }
}
