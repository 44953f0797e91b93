//! H.264 bitstream helpers: the one place in the workspace that reads NAL units.
//!
//! - [`NalHeader`] and [`NalType`]: the one-byte NAL unit header (ITU-T H.264 §7.3.1,
//!   §7.4.1, Table 7-1);
//! - [`nal_units`]: the NAL units of an access unit in either [`H264Framing`] (Annex B start
//!   codes, §B.1; or AVCC length prefixes, ISO/IEC 14496-15 §5.3.3);
//! - access-unit tests: [`contains_idr`], [`contains_slice`], [`is_disposable`],
//!   [`first_slice_type`], [`find_nal`] (e.g. the in-band SPS);
//! - [`to_annex_b`]: an access unit as Annex B for a decoder, out-of-band [`ParameterSets`]
//!   in front of an IDR;
//! - [`SpsInfo`]: SPS facts via `h264-reader` (§7.3.2.1, Annex E);
//! - [`AnnexBSplitter`]: an Annex B byte stream → access units (§7.4.1.2.3).
//!
//! Everything works on untrusted bytes: bounded, never panics, never indexes.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use h264_reader::nal::{Nal, RefNal, UnitType};

use crate::Error;
use crate::input::{H264Framing, ParameterSets};

/// A `nal_unit_type` (ITU-T H.264 §7.4.1, Table 7-1): the low 5 bits of a NAL header, 0..=31.
///
/// The associated constants are the types this workspace acts on; any other value is kept as
/// is (see [`NalType::id`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NalType(u8);

impl NalType {
    /// Coded slice of a non-IDR picture (1).
    pub const SLICE: Self = Self(1);
    /// Coded slice data partition A (2); partitions B and C are 3 and 4.
    pub const SLICE_PARTITION_A: Self = Self(2);
    /// Coded slice of an IDR picture (5): a decoder can start here.
    pub const IDR: Self = Self(5);
    /// Supplemental enhancement information (6).
    pub const SEI: Self = Self(6);
    /// Sequence parameter set (7).
    pub const SPS: Self = Self(7);
    /// Picture parameter set (8).
    pub const PPS: Self = Self(8);
    /// Access unit delimiter (9).
    pub const AUD: Self = Self(9);
    /// End of sequence (10).
    pub const END_OF_SEQ: Self = Self(10);
    /// End of stream (11).
    pub const END_OF_STREAM: Self = Self(11);
    /// Filler data (12).
    pub const FILLER: Self = Self(12);

    /// The type in a NAL header byte (its low 5 bits).
    pub const fn from_header_byte(byte: u8) -> Self {
        Self(byte & 0x1f)
    }

    /// The numeric `nal_unit_type`, 0..=31.
    pub const fn id(self) -> u8 {
        self.0
    }

    /// A VCL NAL unit, i.e. coded slice data (types 1–5, Table 7-1 class "VCL").
    pub const fn is_vcl(self) -> bool {
        matches!(self.0, 1..=5)
    }
}

impl fmt::Debug for NalType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // h264-reader knows every name of Table 7-1.
        match UnitType::for_id(self.0) {
            Ok(t) => write!(f, "NalType({} {t:?})", self.0),
            Err(_) => write!(f, "NalType({})", self.0),
        }
    }
}

/// The one-byte NAL unit header (ITU-T H.264 §7.3.1): `forbidden_zero_bit` (1 bit),
/// `nal_ref_idc` (2 bits), `nal_unit_type` (5 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NalHeader(u8);

impl NalHeader {
    /// The header of a NAL unit (its first byte); `None` for an empty one.
    pub fn of(nal: &[u8]) -> Option<Self> {
        nal.first().copied().map(Self)
    }

    /// The `nal_unit_type`.
    pub const fn nal_type(self) -> NalType {
        NalType::from_header_byte(self.0)
    }

    /// `nal_ref_idc`, 0..=3. 0 means no other picture references this one (§7.4.1), so a
    /// decoder may skip it without breaking later pictures.
    pub const fn nal_ref_idc(self) -> u8 {
        (self.0 >> 5) & 0x03
    }

    /// `forbidden_zero_bit`: set means the NAL unit is corrupt (§7.4.1).
    pub const fn forbidden_zero_bit(self) -> bool {
        self.0 & 0x80 != 0
    }
}

/// The `nal_unit_type` of a NAL unit, `None` for an empty one.
pub fn nal_type(nal: &[u8]) -> Option<NalType> {
    NalHeader::of(nal).map(NalHeader::nal_type)
}

/// The NAL units of one access unit; see [`nal_units`].
#[derive(Debug, Clone)]
pub struct NalUnits<'a> {
    rest: &'a [u8],
    framing: H264Framing,
    /// Annex B: the first start code was found (and the bytes before it checked).
    started: bool,
    /// An error was returned; the iterator is fused.
    done: bool,
}

/// Whether the first NAL header byte of an Annex B stream says H.265 rather than H.264.
/// H.265's two-byte NAL header (H.265 §7.3.1.2) puts the type in bits 1..6, so its
/// VPS/SPS/PPS/AUD/SEI/IDR read as H.264 header bytes that H.264 never produces (types 0, 2,
/// 4, or SEI with `nal_ref_idc` ≠ 0).
pub const fn looks_like_h265(first_nal_header: u8) -> bool {
    matches!(
        first_nal_header,
        0x40 | 0x42 | 0x44 | 0x46 | 0x4e | 0x50 | 0x26 | 0x28 | 0x2a
    )
}

/// Iterates over the NAL units of one access unit framed as `framing`, each without its start
/// code or length prefix, in order. Empty NAL units are skipped.
///
/// - [`H264Framing::AnnexB`] (ITU-T H.264 §B.1): a NAL unit is the bytes between `00 00 01`
///   start codes; zero bytes before a start code (`trailing_zero_8bits`, and the first byte of
///   a 4-byte start code) are not part of it.
/// - [`H264Framing::Avcc`] (ISO/IEC 14496-15 §5.3.3): each NAL unit follows its big-endian
///   length of `length_size_bytes` (1, 2 or 4) bytes.
///
/// Malformed framing yields one `Err(`[`Error::MalformedVideo`]`)` and ends the iteration:
/// Annex B data without a start code or with non-zero bytes before the first one; a length
/// size other than 1, 2 or 4; a truncated length prefix; a NAL unit running past the end.
/// `.collect::<Result<Vec<_>, _>>()` rejects such a unit; `.map_while(Result::ok)` takes the
/// NAL units before the damage.
pub fn nal_units(data: &[u8], framing: H264Framing) -> NalUnits<'_> {
    NalUnits {
        rest: data,
        framing,
        started: false,
        done: false,
    }
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = Result<&'a [u8], Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = match self.framing {
            H264Framing::AnnexB => self.next_annex_b(),
            H264Framing::Avcc { length_size_bytes } => self.next_avcc(length_size_bytes),
        };
        if !matches!(next, Some(Ok(_))) {
            self.done = true;
        }
        next
    }
}

impl std::iter::FusedIterator for NalUnits<'_> {}

impl<'a> NalUnits<'a> {
    fn next_annex_b(&mut self) -> Option<Result<&'a [u8], Error>> {
        if !self.started {
            self.started = true;
            let Some((at, after)) = find_start_code(self.rest) else {
                return Some(Err(Error::MalformedVideo("no Annex B start code")));
            };
            // Only `leading_zero_8bits` may come before the first start code (§B.2).
            if self
                .rest
                .get(..at)
                .is_some_and(|lead| lead.iter().any(|&b| b != 0))
            {
                return Some(Err(Error::MalformedVideo(
                    "bytes before the first start code",
                )));
            }
            self.rest = self.rest.get(after..).unwrap_or_default();
        }
        while !self.rest.is_empty() {
            let (nal, rest) = match find_start_code(self.rest) {
                Some((at, after)) => (self.rest.get(..at), self.rest.get(after..)),
                None => (Some(self.rest), None),
            };
            self.rest = rest.unwrap_or_default();
            let nal = trim_trailing_zeros(nal.unwrap_or_default());
            if !nal.is_empty() {
                return Some(Ok(nal));
            }
        }
        None
    }

    fn next_avcc(&mut self, length_size_bytes: u8) -> Option<Result<&'a [u8], Error>> {
        let n = usize::from(length_size_bytes);
        if !matches!(n, 1 | 2 | 4) {
            return Some(Err(Error::MalformedVideo(
                "NAL length size must be 1, 2 or 4",
            )));
        }
        while !self.rest.is_empty() {
            let Some((len_bytes, tail)) = self.rest.split_at_checked(n) else {
                return Some(Err(Error::MalformedVideo("truncated NAL length")));
            };
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            let Some((nal, tail)) = tail.split_at_checked(len) else {
                return Some(Err(Error::MalformedVideo("truncated NAL unit")));
            };
            self.rest = tail;
            if !nal.is_empty() {
                return Some(Ok(nal));
            }
        }
        None
    }
}

/// The first `00 00 01` in `data`: (its position, the position just after it).
fn find_start_code(data: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    loop {
        // Looking for the `01` first skips most bytes in one pass.
        let one = from + data.get(from..)?.iter().position(|&b| b == 1)?;
        if one >= 2 && data.get(one - 2..one) == Some(&[0u8, 0][..]) {
            return Some((one - 2, one + 1));
        }
        from = one + 1;
    }
}

fn trim_trailing_zeros(nal: &[u8]) -> &[u8] {
    let end = nal.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    nal.get(..end).unwrap_or_default()
}

/// The NAL units before any framing damage: what the look-only tests below see.
fn readable_units(data: &[u8], framing: H264Framing) -> impl Iterator<Item = &[u8]> {
    nal_units(data, framing).map_while(Result::ok)
}

/// Whether the access unit holds a slice of an IDR picture (`nal_unit_type` 5).
pub fn contains_idr(data: &[u8], framing: H264Framing) -> bool {
    readable_units(data, framing).any(|nal| nal_type(nal) == Some(NalType::IDR))
}

/// Whether the access unit holds a coded slice (a picture), not only parameter sets or SEI.
pub fn contains_slice(data: &[u8], framing: H264Framing) -> bool {
    readable_units(data, framing).any(|nal| nal_type(nal).is_some_and(NalType::is_vcl))
}

/// Whether every slice of the access unit has `nal_ref_idc == 0` (§7.4.1): no later picture
/// refers to it, so a decoder may skip it. An access unit without slices is not disposable (it
/// may carry parameter sets).
pub fn is_disposable(data: &[u8], framing: H264Framing) -> bool {
    let mut slices = readable_units(data, framing)
        .filter_map(NalHeader::of)
        .filter(|h| h.nal_type().is_vcl())
        .peekable();
    slices.peek().is_some() && slices.all(|h| h.nal_ref_idc() == 0)
}

/// The type of the access unit's first VCL NAL unit (1–5): [`NalType::IDR`] for a picture a
/// decoder can start at.
pub fn first_slice_type(data: &[u8], framing: H264Framing) -> Option<NalType> {
    readable_units(data, framing)
        .filter_map(nal_type)
        .find(|t| t.is_vcl())
}

/// The first NAL unit of type `ty` in the access unit (e.g. an in-band [`NalType::SPS`]), with
/// its header byte.
pub fn find_nal(data: &[u8], framing: H264Framing, ty: NalType) -> Option<&[u8]> {
    readable_units(data, framing).find(|nal| nal_type(nal) == Some(ty))
}

/// Annex B start code written by [`to_annex_b`].
const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// The access unit as an Annex B byte string (ITU-T H.264 §B.1), as decoders such as openh264
/// take it: each NAL unit after a 4-byte start code.
///
/// When the unit holds an IDR slice, `parameter_sets` (out of band: SDP
/// `sprop-parameter-sets`, MP4 `avcC`) go first so decoding can start there; in-band SPS/PPS
/// keep their place after them, so they win. An Annex B unit with nothing to add is returned
/// as is (shared, no copy).
///
/// # Errors
/// [`Error::MalformedVideo`] for malformed framing (see [`nal_units`]).
pub fn to_annex_b(
    data: &Bytes,
    framing: H264Framing,
    parameter_sets: Option<&ParameterSets>,
) -> Result<Bytes, Error> {
    let prefix = parameter_sets.filter(|_| contains_idr(data, framing));
    if framing == H264Framing::AnnexB && prefix.is_none() {
        nal_units(data, framing).try_for_each(|nal| nal.map(drop))?;
        return Ok(data.clone());
    }
    let prefix: &[&Bytes] = match prefix {
        Some(ps) => &[&ps.sps, &ps.pps],
        None => &[],
    };
    let extra: usize = prefix.iter().map(|p| p.len() + START_CODE.len()).sum();
    // AVCC with 4-byte lengths keeps its size; shorter prefixes or 3-byte codes grow a little.
    let mut out = BytesMut::with_capacity(data.len() + extra + 16);
    for nal in prefix.iter().filter(|p| !p.is_empty()) {
        out.put_slice(&START_CODE);
        out.put_slice(nal);
    }
    for nal in nal_units(data, framing) {
        out.put_slice(&START_CODE);
        out.put_slice(nal?);
    }
    Ok(out.freeze())
}

/// Facts about a stream read from its SPS (ITU-T H.264 §7.3.2.1, Annex E for the VUI).
#[derive(Debug, Clone, PartialEq)]
pub struct SpsInfo {
    /// `profile_idc` (66 Baseline, 77 Main, 100 High …).
    pub profile_idc: u8,
    /// The constraint flags byte (`constraint_set0_flag` … in the high bits).
    pub constraint_flags: u8,
    /// `level_idc` (ten times the level: 41 = 4.1).
    pub level_idc: u8,
    /// Display width after cropping, in pixels.
    pub width: u32,
    /// Display height after cropping, in pixels.
    pub height: u32,
    /// `chroma_format_idc` (1 = 4:2:0).
    pub chroma_format_idc: u8,
    /// `bit_depth_luma_minus8`.
    pub bit_depth_luma_minus8: u8,
    /// `bit_depth_chroma_minus8`.
    pub bit_depth_chroma_minus8: u8,
    /// Frame rate claimed by the VUI timing info (`time_scale / (2 × num_units_in_tick)`),
    /// if present. Cameras often get this wrong (fixture-analysis §5), so the fragmenter also
    /// measures the real rate from timestamps.
    pub vui_fps: Option<f64>,
}

impl SpsInfo {
    /// Parses an SPS NAL unit (with its one-byte NAL header).
    ///
    /// # Errors
    /// [`Error::BadSps`] if the NAL is not an SPS or h264-reader rejects it.
    pub fn parse(sps_nal: &[u8]) -> Result<Self, Error> {
        if nal_type(sps_nal) != Some(NalType::SPS) {
            return Err(Error::BadSps("not an SPS NAL unit".into()));
        }
        let nal = RefNal::new(sps_nal, &[], true);
        let sps = h264_reader::nal::sps::SeqParameterSet::from_bits(nal.rbsp_bits())
            .map_err(|e| Error::BadSps(format!("{e:?}")))?;
        let (width, height) = sps
            .pixel_dimensions()
            .map_err(|e| Error::BadSps(format!("{e:?}")))?;
        let chroma_format_idc = match sps.chroma_info.chroma_format {
            h264_reader::nal::sps::ChromaFormat::Monochrome => 0,
            h264_reader::nal::sps::ChromaFormat::YUV420 => 1,
            h264_reader::nal::sps::ChromaFormat::YUV422 => 2,
            h264_reader::nal::sps::ChromaFormat::YUV444 => 3,
            h264_reader::nal::sps::ChromaFormat::Invalid(_) => {
                return Err(Error::BadSps("invalid chroma_format_idc".into()));
            }
        };
        if width == 0 || height == 0 || width > 16384 || height > 16384 {
            return Err(Error::BadSps(format!("unsupported size {width}x{height}")));
        }
        Ok(Self {
            profile_idc: sps.profile_idc.into(),
            constraint_flags: sps.constraint_flags.into(),
            level_idc: sps.level_idc,
            width,
            height,
            chroma_format_idc,
            bit_depth_luma_minus8: sps.chroma_info.bit_depth_luma_minus8,
            bit_depth_chroma_minus8: sps.chroma_info.bit_depth_chroma_minus8,
            vui_fps: sps.fps().filter(|f| f.is_finite() && *f > 0.0),
        })
    }
}

/// Splits an Annex B byte stream (e.g. a raw `.h264` file or a pipe from a camera) into access
/// units, using the first-NAL-of-a-new-access-unit rules of ITU-T H.264 §7.4.1.2.3: an AUD,
/// SPS, PPS or SEI after a slice, or a slice with `first_mb_in_slice == 0` after a slice.
///
/// Push bytes with [`AnnexBSplitter::push`]; take complete access units (still in Annex B form)
/// with [`AnnexBSplitter::pull`]. Memory is bounded: an access unit larger than
/// `max_access_unit_bytes` is discarded with an error and the splitter resynchronises.
#[derive(Debug)]
pub struct AnnexBSplitter {
    buf: BytesMut,
    /// Bytes of `buf` already scanned for start codes.
    scanned: usize,
    /// Start of the access unit being built (start code position).
    au_start: Option<usize>,
    au_has_vcl: bool,
    ready: std::collections::VecDeque<Bytes>,
    max_access_unit_bytes: usize,
}

impl AnnexBSplitter {
    /// A splitter that rejects access units larger than `max_access_unit_bytes`.
    pub fn new(max_access_unit_bytes: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scanned: 0,
            au_start: None,
            au_has_vcl: false,
            ready: Default::default(),
            max_access_unit_bytes,
        }
    }

    /// Appends bytes from the stream.
    ///
    /// # Errors
    /// [`Error::MalformedVideo`] when an access unit exceeded the size bound; its bytes were
    /// dropped and splitting continues at the next start code.
    pub fn push(&mut self, data: &[u8]) -> Result<(), Error> {
        self.buf.extend_from_slice(data);
        // Need the start code, the NAL header and one more byte (first_mb_in_slice).
        while let Some(w) = self.buf.get(self.scanned..self.scanned + 5) {
            if w.get(..3) == Some(&[0, 0, 1]) {
                let header = w.get(3).copied().unwrap_or(0);
                let first_mb_zero = w.get(4).is_some_and(|b| b & 0x80 != 0);
                // on_nal_start may drain the buffer up to this position and rebase `scanned`.
                self.on_nal_start(self.scanned, header, first_mb_zero);
                self.scanned += 3;
            } else {
                self.scanned += 1;
            }
        }
        let held = self
            .buf
            .len()
            .saturating_sub(self.au_start.unwrap_or(self.buf.len()));
        if held > self.max_access_unit_bytes
            || (self.au_start.is_none() && self.buf.len() > self.max_access_unit_bytes)
        {
            // Drop everything and resync at the next start code.
            self.buf.clear();
            self.scanned = 0;
            self.au_start = None;
            self.au_has_vcl = false;
            return Err(Error::MalformedVideo("access unit larger than the bound"));
        }
        Ok(())
    }

    /// `first_mb_zero`: first_mb_in_slice is ue(v), so it is 0 iff the first bit after the
    /// header is 1.
    fn on_nal_start(&mut self, pos: usize, header: u8, first_mb_zero: bool) {
        let ty = NalType::from_header_byte(header);
        let is_vcl = ty.is_vcl();
        // A zero before `00 00 01` is part of a 4-byte start code.
        let pos = if pos > 0 && self.buf.get(pos - 1) == Some(&0) {
            pos - 1
        } else {
            pos
        };
        let starts_new_au = self.au_has_vcl
            && (matches!(
                ty,
                NalType::AUD | NalType::SPS | NalType::PPS | NalType::SEI
            ) || (14..=18).contains(&ty.id())
                || (is_vcl && first_mb_zero));
        let pos = if starts_new_au {
            self.emit_until(pos);
            0 // the buffer now starts at this NAL's start code
        } else {
            pos
        };
        if self.au_start.is_none() {
            self.au_start = Some(pos);
        }
        self.au_has_vcl |= is_vcl;
    }

    fn emit_until(&mut self, end: usize) {
        if let Some(start) = self.au_start.take() {
            let mut chunk = self.buf.split_to(end).freeze();
            chunk = chunk.slice(start.min(chunk.len())..);
            self.scanned = self.scanned.saturating_sub(end);
            self.ready.push_back(chunk);
        }
        self.au_has_vcl = false;
    }

    /// Takes the next complete access unit (Annex B bytes), if one is ready.
    pub fn pull(&mut self) -> Option<Bytes> {
        self.ready.pop_front()
    }

    /// Ends the stream: the access unit in progress (if it has a slice) becomes ready.
    pub fn finish(&mut self) {
        if self.au_has_vcl {
            let end = self.buf.len();
            self.scanned = end;
            self.emit_until(end);
        }
        self.buf.clear();
        self.scanned = 0;
        self.au_start = None;
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    const ANNEX_B: H264Framing = H264Framing::AnnexB;
    const AVCC4: H264Framing = H264Framing::Avcc {
        length_size_bytes: 4,
    };

    #[test]
    fn h265_header_bytes_are_told_from_h264() {
        // H.265 VPS (32), SPS (33), PPS (34), AUD (35), IDR_W_RADL (19) headers.
        for h in [0x40, 0x42, 0x44, 0x46, 0x26] {
            assert!(looks_like_h265(h), "{h:#x}");
        }
        // H.264 SPS, PPS, AUD, IDR, non-IDR slice, SEI.
        for h in [0x67, 0x68, 0x09, 0x65, 0x41, 0x06] {
            assert!(!looks_like_h265(h), "{h:#x}");
        }
    }

    fn avcc(n: u8) -> H264Framing {
        H264Framing::Avcc {
            length_size_bytes: n,
        }
    }

    /// All NAL units, or the framing error.
    fn units(data: &[u8], framing: H264Framing) -> Result<Vec<&[u8]>, Error> {
        nal_units(data, framing).collect()
    }

    /// `nals` length-prefixed with `n`-byte big-endian lengths.
    fn length_prefixed(nals: &[&[u8]], n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for nal in nals {
            out.extend_from_slice(&(nal.len() as u32).to_be_bytes()[4 - n..]);
            out.extend_from_slice(nal);
        }
        out
    }

    #[test]
    fn header_fields_and_types() {
        let h = NalHeader::of(&[0x65, 0x88]).unwrap();
        assert_eq!(h.nal_type(), NalType::IDR);
        assert_eq!(h.nal_ref_idc(), 3);
        assert!(!h.forbidden_zero_bit());
        let h = NalHeader::of(&[0x81]).unwrap();
        assert_eq!((h.nal_type(), h.nal_ref_idc()), (NalType::SLICE, 0));
        assert!(h.forbidden_zero_bit());
        assert_eq!(NalHeader::of(&[]), None);
        assert_eq!(nal_type(&[0x67]), Some(NalType::SPS));
        assert_eq!(nal_type(&[0x68]), Some(NalType::PPS));
        assert_eq!(nal_type(&[]), None);
        assert_eq!(NalType::from_header_byte(0xff).id(), 31);
        assert!((1..=5).all(|t| NalType::from_header_byte(t).is_vcl()));
        assert!(
            ![0, 6, 7, 8, 9, 12, 20]
                .map(NalType::from_header_byte)
                .iter()
                .any(|t| t.is_vcl())
        );
        assert_eq!(format!("{:?}", NalType::SPS), "NalType(7 SeqParameterSet)");
    }

    #[test]
    fn annex_b_handles_3_and_4_byte_start_codes_and_trailing_zeros() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 0, 1, 0x65, 9, 0, 0,
        ];
        assert_eq!(
            units(&data, ANNEX_B).unwrap(),
            [&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 9]]
        );
        // Leading zero bytes (leading_zero_8bits) are allowed.
        assert_eq!(
            units(&[0, 0, 0, 0, 0, 1, 0x41, 7], ANNEX_B).unwrap(),
            [&[0x41, 7][..]]
        );
    }

    #[test]
    fn annex_b_skips_empty_nal_units() {
        let data = [0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1];
        assert_eq!(units(&data, ANNEX_B).unwrap(), [&[0x09, 0xf0][..]]);
        assert_eq!(units(&[0, 0, 1], ANNEX_B).unwrap(), Vec::<&[u8]>::new());
    }

    #[test]
    fn annex_b_rejects_missing_start_codes_and_leading_garbage() {
        assert!(units(&[1, 2, 3, 4, 5], ANNEX_B).is_err());
        assert!(units(&[], ANNEX_B).is_err());
        assert!(units(&[0, 0, 0], ANNEX_B).is_err());
        assert!(units(&[7, 0, 0, 1, 0x65], ANNEX_B).is_err());
        // One error, then the iterator is done.
        let mut it = nal_units(&[7, 0, 0, 1, 0x65], ANNEX_B);
        assert!(matches!(it.next(), Some(Err(Error::MalformedVideo(_)))));
        assert!(it.next().is_none());
    }

    #[test]
    fn avcc_with_1_2_and_4_byte_lengths() {
        let nals: [&[u8]; 3] = [&[0x09, 0xf0], &[0x06, 5, 6], &[0x65, 0x88, 0x84, 1]];
        for n in [1, 2, 4] {
            let data = length_prefixed(&nals, n);
            assert_eq!(
                units(&data, avcc(n as u8)).unwrap(),
                nals,
                "{n}-byte lengths"
            );
        }
        assert!(units(&[], AVCC4).unwrap().is_empty());
        // A zero length is an empty NAL unit: skipped.
        assert_eq!(
            units(&[0, 0, 0, 0, 0, 0, 0, 1, 0x41], AVCC4).unwrap(),
            [&[0x41][..]]
        );
    }

    #[test]
    fn avcc_rejects_truncation_and_bad_length_sizes() {
        assert_eq!(
            units(&[0, 0, 0, 5, 0x65, 1], AVCC4),
            Err(Error::MalformedVideo("truncated NAL unit"))
        );
        assert_eq!(
            units(&[0, 0, 0, 1, 0x41, 0, 0], AVCC4),
            Err(Error::MalformedVideo("truncated NAL length"))
        );
        for bad in [0, 3, 5] {
            assert!(units(&[1, 0x65], avcc(bad)).is_err(), "{bad}");
            assert!(units(&[], avcc(bad)).is_err(), "{bad}");
        }
        // The units before the damage can still be looked at.
        let data = [0, 2, 0x65, 1, 0, 9, 0x41];
        let before: Vec<&[u8]> = nal_units(&data, avcc(2)).map_while(Result::ok).collect();
        assert_eq!(before, [&[0x65, 1][..]]);
        assert!(contains_idr(&data, avcc(2)));
    }

    #[test]
    fn idr_slice_and_disposable_tests_over_both_framings() {
        /// (NAL units, contains_idr, contains_slice, is_disposable, first slice type)
        type Case<'a> = (&'a [&'a [u8]], bool, bool, bool, Option<NalType>);
        let cases: [Case<'_>; 6] = [
            (
                &[&[0x67, 1], &[0x68, 2], &[0x65, 0x88]],
                true,
                true,
                false,
                Some(NalType::IDR),
            ),
            (&[&[0x41, 0x9a]], false, true, false, Some(NalType::SLICE)),
            (
                &[&[0x06, 5], &[0x01, 0x9c]],
                false,
                true,
                true,
                Some(NalType::SLICE),
            ),
            // Every slice must be unreferenced for the picture to be disposable.
            (
                &[&[0x01, 0x9c], &[0x21, 0x9c]],
                false,
                true,
                false,
                Some(NalType::SLICE),
            ),
            (&[&[0x67, 1], &[0x68, 2]], false, false, false, None),
            (&[], false, false, false, None),
        ];
        for (nals, idr, slice, disposable, first) in cases {
            let mut annex_b = Vec::new();
            for nal in nals {
                annex_b.extend_from_slice(&[0, 0, 1]);
                annex_b.extend_from_slice(nal);
            }
            for (data, framing) in [(annex_b, ANNEX_B), (length_prefixed(nals, 4), AVCC4)] {
                assert_eq!(contains_idr(&data, framing), idr, "{nals:?}");
                assert_eq!(contains_slice(&data, framing), slice, "{nals:?}");
                assert_eq!(is_disposable(&data, framing), disposable, "{nals:?}");
                assert_eq!(first_slice_type(&data, framing), first, "{nals:?}");
            }
        }
        // An SEI before the IDR slice: the first *slice* decides.
        let au = length_prefixed(&[&[0x06, 1], &[0x65, 2]], 2);
        assert_eq!(first_slice_type(&au, avcc(2)), Some(NalType::IDR));
    }

    #[test]
    fn find_nal_returns_the_first_of_a_type() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 1, 0x67, 9,
        ];
        assert_eq!(
            find_nal(&data, ANNEX_B, NalType::SPS),
            Some(&[0x67, 1, 2][..])
        );
        assert_eq!(find_nal(&data, ANNEX_B, NalType::PPS), Some(&[0x68, 3][..]));
        assert_eq!(find_nal(&data, ANNEX_B, NalType::IDR), None);
        let avcc_au = length_prefixed(&[&[0x09, 0xf0], &[0x67, 4]], 4);
        assert_eq!(
            find_nal(&avcc_au, AVCC4, NalType::SPS),
            Some(&[0x67, 4][..])
        );
    }

    fn ps() -> ParameterSets {
        ParameterSets {
            sps: Bytes::from_static(&[0x67, 0x4d, 0x40, 0x1f]),
            pps: Bytes::from_static(&[0x68, 0xee]),
        }
    }

    #[test]
    fn to_annex_b_puts_parameter_sets_in_front_of_an_idr_only() {
        let ps = ps();
        let idr = Bytes::from(length_prefixed(&[&[0x65, 0x88, 0x84], &[0x06, 0x05]], 4));
        let out = to_annex_b(&idr, AVCC4, Some(&ps)).unwrap();
        assert_eq!(
            &out[..],
            [
                &[0, 0, 0, 1][..],
                &ps.sps,
                &[0, 0, 0, 1],
                &ps.pps,
                &[0, 0, 0, 1, 0x65, 0x88, 0x84, 0, 0, 0, 1, 0x06, 0x05],
            ]
            .concat()
        );
        assert!(contains_idr(&out, ANNEX_B));
        // Not an IDR: no parameter sets.
        let p = Bytes::from(length_prefixed(&[&[0x41, 0x9a]], 2));
        assert_eq!(
            &to_annex_b(&p, avcc(2), Some(&ps)).unwrap()[..],
            [0, 0, 0, 1, 0x41, 0x9a]
        );
        assert_eq!(
            &to_annex_b(&idr, AVCC4, None).unwrap()[..],
            [0, 0, 0, 1, 0x65, 0x88, 0x84, 0, 0, 0, 1, 0x06, 0x05]
        );
        // One-byte lengths.
        let one = Bytes::from_static(&[2, 0x41, 0x9a, 1, 0x09]);
        assert_eq!(
            &to_annex_b(&one, avcc(1), None).unwrap()[..],
            [0, 0, 0, 1, 0x41, 0x9a, 0, 0, 0, 1, 0x09]
        );
    }

    #[test]
    fn to_annex_b_of_annex_b_shares_or_reframes() {
        let ps = ps();
        let p = Bytes::from_static(&[0, 0, 1, 0x41, 0x9a]);
        let same = to_annex_b(&p, ANNEX_B, Some(&ps)).unwrap();
        assert_eq!(same.as_ptr(), p.as_ptr(), "nothing to add: no copy");
        let idr = Bytes::from_static(&[0, 0, 1, 0x65, 0x88]);
        assert_eq!(&to_annex_b(&idr, ANNEX_B, None).unwrap()[..], &idr[..]);
        assert_eq!(
            &to_annex_b(&idr, ANNEX_B, Some(&ps)).unwrap()[..],
            [
                &[0, 0, 0, 1][..],
                &ps.sps,
                &[0, 0, 0, 1],
                &ps.pps,
                &[0, 0, 0, 1, 0x65, 0x88]
            ]
            .concat()
        );
    }

    #[test]
    fn to_annex_b_rejects_malformed_framing() {
        for (data, framing) in [
            (&[0, 0, 0, 9, 0x65][..], AVCC4),
            (&[0, 0], AVCC4),
            (&[1, 0x65], avcc(3)),
            (&[5, 0, 0, 1, 0x41], ANNEX_B),
            (&[], ANNEX_B),
        ] {
            let data = Bytes::copy_from_slice(data);
            assert!(to_annex_b(&data, framing, None).is_err(), "{data:?}");
            assert!(to_annex_b(&data, framing, Some(&ps())).is_err(), "{data:?}");
        }
        assert!(to_annex_b(&Bytes::new(), AVCC4, None).unwrap().is_empty());
    }

    #[test]
    fn splitter_cuts_at_aud_and_first_mb() {
        let mut s = AnnexBSplitter::new(1 << 20);
        // AU1: SPS, PPS, IDR (first_mb=0: 0x88 has top bit set). AU2: slice first_mb=0.
        let stream = [
            0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68, 0xce, 0, 0, 1, 0x65, 0x88, 0x84, 0, 0, 1, 0x41,
            0x9a, 0x01, 0, 0, 1, 0x41, 0x9a, 0x02,
        ];
        // Push byte by byte to exercise every split point.
        for b in stream {
            s.push(&[b]).unwrap();
        }
        s.finish();
        let aus: Vec<Bytes> = std::iter::from_fn(|| s.pull()).collect();
        assert_eq!(aus.len(), 3, "{aus:?}");
        assert_eq!(&aus[0][..], &stream[..17]);
        assert_eq!(units(&aus[1], ANNEX_B).unwrap(), [&[0x41, 0x9a, 0x01][..]]);
    }

    #[test]
    fn splitter_keeps_the_second_slice_of_a_picture() {
        // first_mb_in_slice != 0 (first bit 0) continues the picture.
        let mut s = AnnexBSplitter::new(1 << 20);
        s.push(&[0, 0, 1, 0x65, 0x80, 0, 0, 1, 0x65, 0x40, 0])
            .unwrap();
        s.finish();
        assert!(s.pull().is_some());
        assert!(s.pull().is_none());
    }

    #[test]
    fn splitter_gives_the_same_units_for_every_split_point() {
        // Regression: the position of a new AU was not rebased after draining the buffer.
        let stream: Vec<u8> = [
            &[
                0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68, 0xce, 0, 0, 1, 0x65, 0x88, 0x84,
            ][..],
            &[0, 0, 0, 1, 0x41, 0x9a, 0x01, 0x02, 0x03],
            &[0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x41, 0x9a, 0x05],
            &[0, 0, 1, 0x41, 0x9a, 0x06, 0x07],
        ]
        .concat();
        let split = |pieces: &[&[u8]]| {
            let mut s = AnnexBSplitter::new(1 << 20);
            for p in pieces {
                s.push(p).unwrap();
            }
            s.finish();
            std::iter::from_fn(|| s.pull())
                .map(|b| b.to_vec())
                .collect::<Vec<_>>()
        };
        let whole = split(&[&stream]);
        assert_eq!(whole.len(), 4);
        assert_eq!(whole.concat(), stream, "no byte lost or duplicated");
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(split(&[a, b]), whole, "split at {cut}");
        }
    }

    #[test]
    fn splitter_bounds_memory() {
        let mut s = AnnexBSplitter::new(1000);
        let mut err = false;
        for _ in 0..100 {
            err |= s.push(&[0x55; 100]).is_err();
        }
        assert!(err);
        assert!(s.buf.len() <= 1100);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            size in 0u8..6,
        ) {
            let bytes = Bytes::from(data.clone());
            for framing in [ANNEX_B, avcc(size)] {
                let n = nal_units(&data, framing).count();
                proptest::prop_assert!(n <= data.len() + 1);
                let _ = (contains_idr(&data, framing), is_disposable(&data, framing));
                let _ = (contains_slice(&data, framing), first_slice_type(&data, framing));
                let _ = find_nal(&data, framing, NalType::SPS);
                if let Ok(out) = to_annex_b(&bytes, framing, Some(&ps())) {
                    // What comes out reads back as Annex B (or is empty).
                    proptest::prop_assert!(out.is_empty() || units(&out, ANNEX_B).is_ok());
                }
            }
        }

        #[test]
        fn avcc_round_trips_through_annex_b(
            nals in proptest::collection::vec(
                proptest::collection::vec(1u8..=255, 1..40), 0..8),
        ) {
            // NAL units without zero bytes cannot contain start codes: the conversion is exact.
            let nals: Vec<&[u8]> = nals.iter().map(|n| &n[..]).collect();
            let data = Bytes::from(length_prefixed(&nals, 4));
            let annex_b = to_annex_b(&data, AVCC4, None).unwrap();
            if nals.is_empty() {
                proptest::prop_assert!(annex_b.is_empty());
            } else {
                proptest::prop_assert_eq!(units(&annex_b, ANNEX_B).unwrap(), nals);
            }
        }
    }
}
