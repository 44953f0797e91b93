//! The receiving side of RFC 6184 packetization mode 1: RTP payloads (single NAL unit, STAP-A,
//! FU-A) back into Annex B access units. The controller crate uses it to play the iPhone in
//! tests and `selftest`; the bridge only sends.
//!
//! An access unit ends at the packet with the marker bit (RFC 6184 §5.1). A sequence gap or a
//! malformed payload spoils the access unit it falls in: that one is dropped, reassembly
//! resumes with the next one. Memory is bounded by `max_access_unit_bytes`.

use crate::h264::{FU_A, STAP_A};
use crate::packet::RtpHeader;

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Why a packet spoiled its access unit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DepacketizeError {
    /// Packets are missing before this one (expected sequence number, got).
    #[error("sequence gap: expected {expected}, got {got}")]
    Gap {
        /// The sequence number that should have come.
        expected: u16,
        /// The one that came.
        got: u16,
    },
    /// The payload is not a mode 1 structure or is cut short.
    #[error("malformed H.264 RTP payload: {0}")]
    Malformed(&'static str),
    /// The access unit would exceed the bound.
    #[error("access unit larger than {0} bytes")]
    TooLarge(usize),
}

/// One reassembled access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// RTP timestamp (90 kHz).
    pub timestamp: u32,
    /// The NAL units, each after a 4-byte start code.
    pub annex_b: Vec<u8>,
    /// `nal_unit_type` of each NAL unit, in order.
    pub nal_types: Vec<u8>,
}

/// Reassembles access units from the RTP packets of one SSRC, in arrival order.
#[derive(Debug)]
pub struct Depacketizer {
    max_access_unit_bytes: usize,
    annex_b: Vec<u8>,
    nal_types: Vec<u8>,
    timestamp: Option<u32>,
    next_sequence: Option<u16>,
    in_fragment: bool,
    spoiled: bool,
}

impl Depacketizer {
    /// A depacketizer whose access units hold at most `max_access_unit_bytes` (Annex B).
    pub fn new(max_access_unit_bytes: usize) -> Self {
        Self {
            max_access_unit_bytes,
            annex_b: Vec::new(),
            nal_types: Vec::new(),
            timestamp: None,
            next_sequence: None,
            in_fragment: false,
            spoiled: false,
        }
    }

    /// Takes one RTP packet (`header` and its decrypted `payload`). Returns the access unit
    /// it completes, if any. An error means the current access unit is dropped; later
    /// packets of it are ignored up to its marker.
    ///
    /// # Errors
    /// [`DepacketizeError`] for a gap, a malformed payload or an oversized access unit.
    pub fn push(
        &mut self,
        header: &RtpHeader,
        payload: &[u8],
    ) -> Result<Option<AccessUnit>, DepacketizeError> {
        let expected = self
            .next_sequence
            .replace(header.sequence_number.wrapping_add(1));
        if self.timestamp.is_some_and(|t| t != header.timestamp) {
            // The previous access unit lost its marker packet.
            self.reset();
        }
        let result = match expected {
            Some(e) if e != header.sequence_number && !self.spoiled => Err(DepacketizeError::Gap {
                expected: e,
                got: header.sequence_number,
            }),
            _ if self.spoiled => Ok(()),
            _ => {
                self.timestamp = Some(header.timestamp);
                self.append(payload)
            }
        };
        if result.is_err() {
            self.spoiled = true;
        }
        let unit = if header.marker {
            let done =
                (!self.spoiled && !self.annex_b.is_empty() && !self.in_fragment).then(|| {
                    AccessUnit {
                        timestamp: header.timestamp,
                        annex_b: std::mem::take(&mut self.annex_b),
                        nal_types: std::mem::take(&mut self.nal_types),
                    }
                });
            self.reset();
            done
        } else {
            None
        };
        result.map(|()| unit)
    }

    fn reset(&mut self) {
        self.annex_b.clear();
        self.nal_types.clear();
        self.timestamp = None;
        self.in_fragment = false;
        self.spoiled = false;
    }

    fn reserve(&self, more: usize) -> Result<(), DepacketizeError> {
        if self.annex_b.len().saturating_add(more) > self.max_access_unit_bytes {
            return Err(DepacketizeError::TooLarge(self.max_access_unit_bytes));
        }
        Ok(())
    }

    fn nal(&mut self, nal: &[u8]) -> Result<(), DepacketizeError> {
        let first = *nal
            .first()
            .ok_or(DepacketizeError::Malformed("empty NAL unit"))?;
        self.reserve(START_CODE.len() + nal.len())?;
        self.annex_b.extend_from_slice(&START_CODE);
        self.annex_b.extend_from_slice(nal);
        self.nal_types.push(first & 0x1f);
        Ok(())
    }

    fn append(&mut self, payload: &[u8]) -> Result<(), DepacketizeError> {
        let first = *payload
            .first()
            .ok_or(DepacketizeError::Malformed("empty payload"))?;
        let kind = first & 0x1f;
        if kind != FU_A && self.in_fragment {
            return Err(DepacketizeError::Malformed("FU-A without its end"));
        }
        match kind {
            1..=23 => self.nal(payload),
            STAP_A => {
                let mut rest = payload.get(1..).unwrap_or_default();
                if rest.is_empty() {
                    return Err(DepacketizeError::Malformed("empty STAP-A"));
                }
                while !rest.is_empty() {
                    let (len, tail) = rest
                        .split_first_chunk::<2>()
                        .ok_or(DepacketizeError::Malformed("STAP-A size cut short"))?;
                    let len = usize::from(u16::from_be_bytes(*len));
                    let nal = tail
                        .get(..len)
                        .ok_or(DepacketizeError::Malformed("STAP-A NAL unit cut short"))?;
                    self.nal(nal)?;
                    rest = tail.get(len..).unwrap_or_default();
                }
                Ok(())
            }
            FU_A => {
                let (&fu_header, data) = payload
                    .get(1..)
                    .and_then(<[u8]>::split_first)
                    .ok_or(DepacketizeError::Malformed("FU-A header cut short"))?;
                let (start, end) = (fu_header & 0x80 != 0, fu_header & 0x40 != 0);
                if start {
                    if self.in_fragment {
                        return Err(DepacketizeError::Malformed("FU-A start inside a FU-A"));
                    }
                    self.nal(&[(first & 0xe0) | (fu_header & 0x1f)])?;
                    self.in_fragment = true;
                } else if !self.in_fragment {
                    return Err(DepacketizeError::Malformed("FU-A without its start"));
                }
                self.reserve(data.len())?;
                self.annex_b.extend_from_slice(data);
                if end {
                    self.in_fragment = false;
                }
                Ok(())
            }
            _ => Err(DepacketizeError::Malformed("not a mode 1 payload type")),
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use recorder::{DemoSource, H264Framing, MediaUnit};

    use super::*;
    use crate::h264::{Packetizer, PacketizerConfig};
    use crate::packet::RtpPacket;

    /// The demo clip's first `n` video access units, packetized within `max` bytes.
    fn demo_packets(n: usize, max: usize) -> Vec<Vec<u8>> {
        let mut demo = DemoSource::bundled().unwrap();
        let mut ps = None;
        let mut p = Packetizer::new(PacketizerConfig {
            payload_type: 99,
            ssrc: 7,
            max_packet_bytes: max,
            initial_sequence: 65_500,
        })
        .unwrap();
        let (mut packets, mut sent) = (Vec::new(), 0);
        while sent < n {
            let v = match demo.next_unit().1 {
                MediaUnit::ParameterSets(p) => {
                    ps = Some(p);
                    continue;
                }
                MediaUnit::Video(v) => v,
                MediaUnit::Audio(_) => continue,
            };
            let ts = u32::try_from(v.pts_90k).unwrap();
            p.packetize(&v.data, v.framing, ps.as_ref(), ts, &mut |pkt| {
                packets.push(pkt.clone());
            })
            .unwrap();
            sent += 1;
        }
        packets
    }

    fn nal_units(annex_b: &[u8]) -> Vec<Vec<u8>> {
        recorder::h264::nal_units(annex_b, H264Framing::AnnexB)
            .map(|n| n.unwrap().to_vec())
            .collect()
    }

    #[test]
    fn reassembles_what_the_packetizer_sent_at_every_bound() {
        for max in [15, 200, 1366] {
            let packets = demo_packets(40, max);
            let mut d = Depacketizer::new(8 << 20);
            let mut units = Vec::new();
            for pkt in &packets {
                let rtp = RtpPacket::parse(pkt).unwrap();
                if let Some(u) = d.push(&rtp.header, rtp.payload).unwrap() {
                    units.push(u);
                }
            }
            assert_eq!(units.len(), 40, "bound {max}");
            assert_eq!(units[0].nal_types[..2], [7, 8], "parameter sets first");
            assert!(units[0].nal_types.contains(&5), "then the IDR");
            // Each access unit is the source's, NAL for NAL (AUD/SEI aside).
            let mut demo = DemoSource::bundled().unwrap();
            let mut i = 0;
            while i < units.len() {
                let (_, MediaUnit::Video(v)) = demo.next_unit() else {
                    continue;
                };
                let source: Vec<Vec<u8>> = recorder::h264::nal_units(&v.data, v.framing)
                    .map(|n| n.unwrap().to_vec())
                    .filter(|n| !matches!(n[0] & 0x1f, 9 | 12))
                    .collect();
                let got = nal_units(&units[i].annex_b);
                assert!(got.ends_with(&source), "unit {i} at bound {max}");
                assert_eq!(units[i].timestamp, u32::try_from(v.pts_90k).unwrap());
                i += 1;
            }
        }
    }

    #[test]
    fn a_lost_packet_drops_only_its_access_unit() {
        let mut packets = demo_packets(3, 200);
        // Lose the second packet of the first (IDR) access unit.
        packets.remove(1);
        let mut d = Depacketizer::new(8 << 20);
        let mut units = Vec::new();
        let mut errors = Vec::new();
        for pkt in &packets {
            let rtp = RtpPacket::parse(pkt).unwrap();
            match d.push(&rtp.header, rtp.payload) {
                Ok(Some(u)) => units.push(u),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        assert!(
            matches!(errors[..], [DepacketizeError::Gap { .. }]),
            "{errors:?}"
        );
        assert_eq!(units.len(), 2);
        assert!(!units[0].nal_types.contains(&5));
    }

    #[test]
    fn malformed_payloads_are_refused_and_the_next_unit_still_comes() {
        let header = |seq: u16, ts: u32, marker: bool| RtpHeader {
            marker,
            payload_type: 99,
            sequence_number: seq,
            timestamp: ts,
            ssrc: 1,
        };
        let bad: [&[u8]; 8] = [
            &[],
            &[0x1c],                // FU-A, no FU header
            &[0x1c, 0x05, 1],       // FU-A continuation without start
            &[0x18],                // empty STAP-A
            &[0x18, 0, 9, 0x67, 1], // STAP-A NAL cut short
            &[0x18, 0, 0],          // STAP-A empty NAL
            &[0x19, 1],             // STAP-B: not mode 1
            &[0x00, 1],             // type 0
        ];
        let mut d = Depacketizer::new(64);
        for (i, b) in bad.iter().enumerate() {
            let seq = u16::try_from(i * 2).unwrap();
            let ts = u32::try_from(i).unwrap();
            assert!(
                matches!(
                    d.push(&header(seq, ts, true), b),
                    Err(DepacketizeError::Malformed(_))
                ),
                "{b:?}"
            );
            // The next access unit is whole.
            let u = d
                .push(&header(seq + 1, ts + 100, true), &[0x65, 1, 2])
                .unwrap();
            assert_eq!(u.unwrap().annex_b, [0, 0, 0, 1, 0x65, 1, 2]);
        }
        // Oversized: bounded.
        let big = [0x41; 100];
        assert_eq!(
            d.push(&header(16, 9, true), &big),
            Err(DepacketizeError::TooLarge(64))
        );
        // An FU-A whose end never came does not complete at the marker.
        assert_eq!(d.push(&header(17, 10, false), &[0x7c, 0x85, 1]), Ok(None));
        assert_eq!(d.push(&header(18, 10, true), &[0x7c, 0x05, 2]), Ok(None));
        assert_eq!(
            d.push(&header(19, 11, true), &[0x7c, 0xc5, 3])
                .unwrap()
                .unwrap()
                .annex_b,
            [0, 0, 0, 1, 0x65, 3]
        );
    }
}
