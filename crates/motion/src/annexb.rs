//! H.264 Annex B helpers: NAL unit iteration and access-unit splitting (ITU-T H.264 §B.1,
//! §7.4.1.2.3). Works on untrusted bytes: never panics, never indexes.

/// NAL unit types used here (ITU-T H.264 Table 7-1).
pub mod nal_type {
    /// Coded slice of a non-IDR picture.
    pub const SLICE: u8 = 1;
    /// Coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
}

/// Iterates over the NAL units of an Annex B byte stream (without their start codes).
/// Bytes before the first start code are ignored; empty NAL units are skipped.
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest =
        find_start_code(data).map_or(&[][..], |(_, after)| data.get(after..).unwrap_or_default());
    std::iter::from_fn(move || {
        while !rest.is_empty() {
            let (nal, next) = match find_start_code(rest) {
                Some((begin, after)) => (rest.get(..begin), rest.get(after..)),
                None => (Some(rest), Some(&[][..])),
            };
            rest = next.unwrap_or_default();
            // Trailing zero bytes belong to the next start code (a 4-byte start code).
            let nal = trim_trailing_zeros(nal.unwrap_or_default());
            if !nal.is_empty() {
                return Some(nal);
            }
        }
        None
    })
}

/// Finds the first `00 00 01`; returns (index of its first byte, index just after it).
fn find_start_code(data: &[u8]) -> Option<(usize, usize)> {
    data.windows(3)
        .position(|w| w == [0, 0, 1])
        .map(|i| (i, i + 3))
}

fn trim_trailing_zeros(nal: &[u8]) -> &[u8] {
    let end = nal.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    nal.get(..end).unwrap_or_default()
}

/// The `nal_unit_type` of a NAL unit (low 5 bits of its first byte).
pub fn nal_unit_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// The `nal_ref_idc` of a NAL unit (bits 5–6 of its first byte): 0 means no other picture
/// references it, so it can be skipped without breaking decoding.
pub fn nal_ref_idc(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| (b >> 5) & 0x03)
}

fn is_vcl(nal_type: u8) -> bool {
    (1..=5).contains(&nal_type)
}

/// Whether an access unit contains an IDR slice.
pub fn contains_idr(access_unit: &[u8]) -> bool {
    nal_units(access_unit).any(|nal| nal_unit_type(nal) == Some(nal_type::IDR))
}

/// Whether an access unit contains a coded slice (a picture), not only parameter sets or SEI.
pub fn contains_slice(access_unit: &[u8]) -> bool {
    nal_units(access_unit).any(|nal| nal_unit_type(nal).is_some_and(is_vcl))
}

/// Whether every slice of an access unit has `nal_ref_idc == 0` (a disposable picture).
/// An access unit without slices is not disposable (it may carry SPS/PPS).
pub fn is_disposable(access_unit: &[u8]) -> bool {
    let mut slices = nal_units(access_unit)
        .filter(|nal| nal_unit_type(nal).is_some_and(is_vcl))
        .peekable();
    slices.peek().is_some() && slices.all(|nal| nal_ref_idc(nal) == Some(0))
}

/// Splits an Annex B elementary stream (as `ffmpeg -f h264` writes it) into access units,
/// each returned with 4-byte start codes. A new access unit begins at an AUD, SPS, PPS or SEI
/// after a slice, or at a slice whose `first_mb_in_slice` is 0 after a slice (§7.4.1.2.3).
pub fn split_access_units(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut units = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut seen_slice = false;
    for nal in nal_units(stream) {
        let Some(kind) = nal_unit_type(nal) else {
            continue;
        };
        // first_mb_in_slice is ue(v) right after the 1-byte header; 0 is coded as a single 1 bit.
        let first_slice = is_vcl(kind) && nal.get(1).is_some_and(|b| b & 0x80 != 0);
        let starts_new = seen_slice
            && (matches!(
                kind,
                nal_type::AUD | nal_type::SPS | nal_type::PPS | nal_type::SEI
            ) || first_slice);
        if starts_new {
            units.push(std::mem::take(&mut current));
            seen_slice = false;
        }
        seen_slice |= is_vcl(kind);
        current.extend_from_slice(&[0, 0, 0, 1]);
        current.extend_from_slice(nal);
    }
    if !current.is_empty() {
        units.push(current);
    }
    units
}

/// Converts length-prefixed NAL units (MP4 samples, "AVCC": big-endian lengths of
/// `length_size_bytes` = 1, 2 or 4 bytes, ISO/IEC 14496-15 §5.3.3) to Annex B. The
/// `parameter_sets` (SPS/PPS NAL units without start codes, e.g. from `avcC` or SDP
/// `sprop-parameter-sets`) are written first: give them with IDR pictures of streams that carry
/// them only out of band. Returns `None` for a bad length size or a length that overruns.
pub fn length_prefixed_to_annex_b(
    data: &[u8],
    length_size_bytes: u8,
    parameter_sets: &[&[u8]],
) -> Option<Vec<u8>> {
    if !matches!(length_size_bytes, 1 | 2 | 4) {
        return None;
    }
    let mut out = Vec::with_capacity(
        data.len() + parameter_sets.iter().map(|p| p.len() + 4).sum::<usize>() + 16,
    );
    for nal in parameter_sets.iter().filter(|p| !p.is_empty()) {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
    let mut rest = data;
    while !rest.is_empty() {
        let (len_bytes, tail) = rest.split_at_checked(usize::from(length_size_bytes))?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        let (nal, tail) = tail.split_at_checked(len)?;
        if !nal.is_empty() {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(nal);
        }
        rest = tail;
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn nal_units_handles_three_and_four_byte_start_codes() {
        let data = [
            0xff, 0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 0x88,
        ];
        let nals: Vec<&[u8]> = nal_units(&data).collect();
        assert_eq!(nals, [&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 0x88][..]]);
    }

    #[test]
    fn splits_access_units_at_parameter_sets_and_first_slices() {
        let mut s = Vec::new();
        for nal in [
            &[0x67u8, 0x42][..],
            &[0x68, 0xce],
            &[0x65, 0x88, 0x80],
            &[0x41, 0x9a],
            &[0x41, 0x9b],
            &[0x01, 0x9c],
        ] {
            s.extend_from_slice(&[0, 0, 0, 1]);
            s.extend_from_slice(nal);
        }
        let aus = split_access_units(&s);
        assert_eq!(aus.len(), 4);
        assert!(contains_idr(&aus[0]));
        assert!(!contains_idr(&aus[1]));
        assert!(!is_disposable(&aus[1]));
        assert!(is_disposable(&aus[3]), "nal_ref_idc 0 slice");
        assert!(!is_disposable(&[0, 0, 1, 0x67, 1]), "no slices");
    }

    #[test]
    fn second_slice_of_a_picture_stays_in_its_access_unit() {
        // first_mb_in_slice != 0 (first bit 0) continues the picture.
        let s = [0, 0, 1, 0x65, 0x80, 0, 0, 1, 0x65, 0x40];
        assert_eq!(split_access_units(&s).len(), 1);
    }

    #[test]
    fn length_prefixed_units_become_annex_b_with_parameter_sets_first() {
        let sps = [0x67u8, 0x4d, 0x40, 0x1f];
        let pps = [0x68u8, 0xee];
        let avcc = [0, 0, 0, 3, 0x65, 0x88, 0x84, 0, 0, 0, 2, 0x06, 0x05];
        let annexb = length_prefixed_to_annex_b(&avcc, 4, &[&sps, &pps]).unwrap();
        let nals: Vec<&[u8]> = nal_units(&annexb).collect();
        assert_eq!(
            nals,
            [
                &sps[..],
                &pps[..],
                &[0x65, 0x88, 0x84][..],
                &[0x06, 0x05][..]
            ]
        );
        assert!(contains_idr(&annexb));
        let two = length_prefixed_to_annex_b(&[0, 2, 0x41, 0x9a], 2, &[]).unwrap();
        assert_eq!(two, [0, 0, 0, 1, 0x41, 0x9a]);
    }

    #[test]
    fn length_prefixed_rejects_overruns_and_bad_sizes() {
        assert_eq!(
            length_prefixed_to_annex_b(&[0, 0, 0, 9, 0x65], 4, &[]),
            None
        );
        assert_eq!(length_prefixed_to_annex_b(&[0, 0], 4, &[]), None);
        assert_eq!(length_prefixed_to_annex_b(&[1, 0x65], 3, &[]), None);
        assert_eq!(length_prefixed_to_annex_b(&[], 4, &[]), Some(Vec::new()));
    }

    proptest::proptest! {
        #[test]
        fn length_prefixed_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256), size in 0u8..6) {
            let _ = length_prefixed_to_annex_b(&data, size, &[&data]);
        }


        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let aus = split_access_units(&data);
            for au in &aus {
                let _ = contains_idr(au);
                let _ = is_disposable(au);
            }
        }
    }
}
