//! H.264 bitstream helpers: NAL unit iteration over Annex B and length-prefixed (AVCC) data,
//! SPS facts via `h264-reader`, and an Annex B byte-stream → access-unit splitter.

use bytes::{Bytes, BytesMut};
use h264_reader::nal::{Nal, RefNal};

use crate::Error;

/// NAL unit types we act on (ITU-T H.264 Table 7-1).
pub(crate) mod nal_type {
    pub(crate) const SLICE: u8 = 1;
    pub(crate) const IDR: u8 = 5;
    pub(crate) const SEI: u8 = 6;
    pub(crate) const SPS: u8 = 7;
    pub(crate) const PPS: u8 = 8;
    pub(crate) const AUD: u8 = 9;
    pub(crate) const END_OF_SEQ: u8 = 10;
    pub(crate) const END_OF_STREAM: u8 = 11;
    pub(crate) const FILLER: u8 = 12;
}

/// The NAL unit type (low 5 bits of the first byte), or `None` for an empty NAL.
pub(crate) fn nal_unit_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// Splits Annex B data (`00 00 01` / `00 00 00 01` start codes) into NAL units.
///
/// Trailing zero bytes before the next start code are dropped (they are `trailing_zero_8bits`,
/// H.264 §B.1). Bytes before the first start code are an error unless they are zeros.
pub(crate) fn split_annexb(data: &[u8]) -> Result<Vec<&[u8]>, Error> {
    let mut nals = Vec::new();
    let mut starts = Vec::new(); // (start code position, payload position)
    let mut i = 0usize;
    while let Some(window) = data.get(i..i + 3) {
        if window == [0, 0, 1] {
            starts.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let Some(&(first, _)) = starts.first() else {
        return Err(Error::MalformedVideo("no Annex B start code"));
    };
    if data
        .get(..first)
        .is_some_and(|lead| lead.iter().any(|&b| b != 0))
    {
        return Err(Error::MalformedVideo("bytes before the first start code"));
    }
    for (n, &(_, payload)) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(data.len(), |&(next, _)| next);
        let mut nal = data.get(payload..end).unwrap_or_default();
        while let Some((&0, rest)) = nal.split_last() {
            nal = rest;
        }
        if !nal.is_empty() {
            nals.push(nal);
        }
    }
    Ok(nals)
}

/// Splits length-prefixed data (ISO/IEC 14496-15 §5.3.3, `lengthSizeMinusOne + 1` bytes per
/// length) into NAL units. A length that runs past the end is an error (truncated NAL).
pub(crate) fn split_avcc(data: &[u8], length_size_bytes: u8) -> Result<Vec<&[u8]>, Error> {
    let n = usize::from(length_size_bytes);
    if !matches!(n, 1 | 2 | 4) {
        return Err(Error::MalformedVideo("NAL length size must be 1, 2 or 4"));
    }
    let mut nals = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (len_bytes, tail) = rest
            .split_at_checked(n)
            .ok_or(Error::MalformedVideo("truncated NAL length"))?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let (nal, tail) = tail
            .split_at_checked(len)
            .ok_or(Error::MalformedVideo("truncated NAL unit"))?;
        if !nal.is_empty() {
            nals.push(nal);
        }
        rest = tail;
    }
    Ok(nals)
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
        if nal_unit_type(sps_nal) != Some(nal_type::SPS) {
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
        let ty = header & 0x1f;
        let is_vcl = (nal_type::SLICE..=nal_type::IDR).contains(&ty);
        // A zero before `00 00 01` is part of a 4-byte start code.
        let pos = if pos > 0 && self.buf.get(pos - 1) == Some(&0) {
            pos - 1
        } else {
            pos
        };
        let starts_new_au = self.au_has_vcl
            && (matches!(
                ty,
                nal_type::AUD | nal_type::SPS | nal_type::PPS | nal_type::SEI
            ) || (14..=18).contains(&ty)
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

    #[test]
    fn annexb_split_handles_3_and_4_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 0, 1, 0x65, 9,
        ];
        let nals = split_annexb(&data).unwrap();
        assert_eq!(
            nals,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 9][..]]
        );
    }

    #[test]
    fn annexb_rejects_garbage() {
        assert!(split_annexb(&[1, 2, 3, 4, 5]).is_err());
        assert!(split_annexb(&[7, 0, 0, 1, 0x65]).is_err());
    }

    #[test]
    fn avcc_rejects_truncated_nal() {
        assert!(split_avcc(&[0, 0, 0, 5, 0x65, 1], 4).is_err());
        assert!(split_avcc(&[0, 0], 4).is_err());
        assert_eq!(
            split_avcc(&[0, 2, 0x65, 1], 2).unwrap(),
            vec![&[0x65, 1][..]]
        );
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
        assert_eq!(
            split_annexb(&aus[1]).unwrap(),
            vec![&[0x41, 0x9a, 0x01][..]]
        );
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
}
