//! H.264 over RTP, RFC 6184 packetization mode 1 (non-interleaved): single NAL unit packets,
//! STAP-A (type 24) for runs of small NAL units, FU-A (type 28) for NAL units larger than a
//! packet. The caller's datagram bound is respected exactly.
//!
//! HomeKit's controller has no SDP, so parameter sets travel in band: an access unit with an
//! IDR slice but without SPS/PPS gets the source's out-of-band ones in front (they then share
//! the first STAP-A). Access unit delimiters and filler data are dropped (they cost bytes and
//! no decoder needs them), as are NAL types 0 and 24..=31, which would read as RTP payload
//! structures at the receiver.

use bytes::Bytes;
use recorder::h264::{self, NalType};
use recorder::{H264Framing, ParameterSets};

use crate::packet::{RTP_HEADER_LEN, RtpHeader};

/// STAP-A NAL unit type (RFC 6184 §5.7.1).
pub const STAP_A: u8 = 24;
/// FU-A NAL unit type (RFC 6184 §5.8).
pub const FU_A: u8 = 28;
/// Smallest `max_packet_bytes` accepted: the header, FU indicator and header, and 1 byte.
pub const MIN_PACKET_BYTES: usize = RTP_HEADER_LEN + 3;

/// Settings of a [`Packetizer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketizerConfig {
    /// RTP payload type (from 117; HomeKit video uses 99).
    pub payload_type: u8,
    /// Our SSRC (from 118).
    pub ssrc: u32,
    /// Most bytes of one RTP packet, header included (the MTU minus the SRTP tag).
    pub max_packet_bytes: usize,
    /// Sequence number of the first packet (random, RFC 3550 §5.1).
    pub initial_sequence: u16,
}

/// Why an access unit was not sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PacketizeError {
    /// The access unit's NAL framing is broken (nothing was emitted).
    #[error("malformed access unit: {0}")]
    Malformed(String),
    /// `max_packet_bytes` below [`MIN_PACKET_BYTES`] or a payload type above 127.
    #[error("invalid packetizer configuration")]
    Config,
}

/// What [`Packetizer::packetize`] sent for one access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketizeStats {
    /// RTP packets emitted.
    pub packets: u32,
    /// RTP payload bytes emitted (headers excluded).
    pub payload_bytes: usize,
    /// NAL units sent (after dropping AUD/filler, with inserted parameter sets).
    pub nal_units: u32,
    /// The out-of-band SPS/PPS were put in front of this access unit.
    pub inserted_parameter_sets: bool,
}

/// Turns access units into RTP packets; see the module docs.
#[derive(Debug)]
pub struct Packetizer {
    config: PacketizerConfig,
    next_sequence: u16,
    /// The packet being built, reused (capacity `max_packet_bytes` + room for an SRTP tag).
    buf: Vec<u8>,
    /// NAL units of the access unit being sent, reused.
    nals: Vec<Bytes>,
}

/// Room kept after each packet so SRTP can append its tag without reallocating.
const TAG_ROOM: usize = 16;

impl Packetizer {
    /// A packetizer; errors with [`PacketizeError::Config`] on a bound too small for any packet
    /// or a payload type above 127.
    pub fn new(config: PacketizerConfig) -> Result<Self, PacketizeError> {
        if config.max_packet_bytes < MIN_PACKET_BYTES || config.payload_type > 127 {
            return Err(PacketizeError::Config);
        }
        Ok(Self {
            config,
            next_sequence: config.initial_sequence,
            buf: Vec::with_capacity(config.max_packet_bytes + TAG_ROOM),
            nals: Vec::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &PacketizerConfig {
        &self.config
    }

    /// The sequence number the next packet gets.
    pub fn next_sequence(&self) -> u16 {
        self.next_sequence
    }

    /// Packetizes one access unit (`data` framed as `framing`) with RTP timestamp `timestamp`,
    /// calling `emit` with each whole RTP packet (which it may change in place, e.g. SRTP
    /// protect; its capacity has room for a tag). The marker is set on the last packet.
    /// `parameter_sets` are put in front of an IDR access unit that lacks them in band.
    ///
    /// A malformed access unit emits nothing and returns [`PacketizeError::Malformed`]; an
    /// access unit with no NAL unit worth sending emits nothing and returns zero stats.
    pub fn packetize(
        &mut self,
        data: &Bytes,
        framing: H264Framing,
        parameter_sets: Option<&ParameterSets>,
        timestamp: u32,
        emit: &mut dyn FnMut(&mut Vec<u8>),
    ) -> Result<PacketizeStats, PacketizeError> {
        let mut nals = std::mem::take(&mut self.nals);
        nals.clear();
        let mut has_sps = false;
        let mut has_pps = false;
        let mut has_idr = false;
        for nal in h264::nal_units(data, framing) {
            let nal = nal.map_err(|e| PacketizeError::Malformed(e.to_string()))?;
            let Some(t) = h264::nal_type(nal) else {
                continue;
            };
            match t {
                NalType::AUD | NalType::FILLER => continue,
                t if t.id() == 0 || t.id() >= 24 => continue,
                NalType::SPS => has_sps = true,
                NalType::PPS => has_pps = true,
                NalType::IDR => has_idr = true,
                _ => {}
            }
            nals.push(data.slice_ref(nal));
        }
        let mut stats = PacketizeStats::default();
        if has_idr && let Some(ps) = parameter_sets {
            let mut front = Vec::with_capacity(2);
            if !has_sps {
                front.push(ps.sps.clone());
            }
            if !has_pps {
                front.push(ps.pps.clone());
            }
            stats.inserted_parameter_sets = !front.is_empty();
            nals.splice(0..0, front);
        }
        stats.nal_units = nals.len() as u32;
        self.send_nals(&nals, timestamp, emit, &mut stats);
        self.nals = nals;
        Ok(stats)
    }

    fn send_nals(
        &mut self,
        nals: &[Bytes],
        timestamp: u32,
        emit: &mut dyn FnMut(&mut Vec<u8>),
        stats: &mut PacketizeStats,
    ) {
        let max_payload = self.config.max_packet_bytes - RTP_HEADER_LEN;
        let mut i = 0;
        while i < nals.len() {
            // Greedy STAP-A: 1 byte header + (2 + len) per NAL unit.
            let mut j = i;
            let mut stap_len = 1;
            while let Some(n) = nals.get(j) {
                let next = stap_len + 2 + n.len();
                if next > max_payload {
                    break;
                }
                stap_len = next;
                j += 1;
            }
            let last_packet_of_au = |k: usize| k == nals.len();
            let alone_fits = nals.get(i).is_some_and(|n| n.len() <= max_payload);
            match j - i {
                0 if !alone_fits => {
                    // Larger than one packet: FU-A.
                    let nal = nals.get(i).map(Bytes::as_ref).unwrap_or_default();
                    self.send_fu_a(nal, timestamp, last_packet_of_au(i + 1), emit, stats);
                    i += 1;
                }
                0 | 1 => {
                    let nal = nals.get(i).map(Bytes::as_ref).unwrap_or_default();
                    self.start_packet(timestamp, last_packet_of_au(i + 1));
                    self.buf.extend_from_slice(nal);
                    self.finish_packet(emit, stats);
                    i += 1;
                }
                _ => {
                    let group = nals.get(i..j).unwrap_or_default();
                    let nri = group
                        .iter()
                        .filter_map(|n| n.first())
                        .map(|b| b & 0x60)
                        .max()
                        .unwrap_or(0);
                    self.start_packet(timestamp, last_packet_of_au(j));
                    self.buf.push(nri | STAP_A);
                    for n in group {
                        self.buf.extend_from_slice(&(n.len() as u16).to_be_bytes());
                        self.buf.extend_from_slice(n);
                    }
                    self.finish_packet(emit, stats);
                    i = j;
                }
            }
        }
    }

    fn send_fu_a(
        &mut self,
        nal: &[u8],
        timestamp: u32,
        last_nal: bool,
        emit: &mut dyn FnMut(&mut Vec<u8>),
        stats: &mut PacketizeStats,
    ) {
        let Some((&header, body)) = nal.split_first() else {
            return;
        };
        let indicator = (header & 0xe0) | FU_A;
        let nal_type = header & 0x1f;
        let chunk = self.config.max_packet_bytes - RTP_HEADER_LEN - 2;
        let count = body.len().div_ceil(chunk);
        for (k, piece) in body.chunks(chunk).enumerate() {
            let start = k == 0;
            let end = k + 1 == count;
            let fu_header = (u8::from(start) << 7) | (u8::from(end) << 6) | nal_type;
            self.start_packet(timestamp, end && last_nal);
            self.buf.push(indicator);
            self.buf.push(fu_header);
            self.buf.extend_from_slice(piece);
            self.finish_packet(emit, stats);
        }
    }

    fn start_packet(&mut self, timestamp: u32, marker: bool) {
        self.buf.clear();
        RtpHeader {
            marker,
            payload_type: self.config.payload_type,
            sequence_number: self.next_sequence,
            timestamp,
            ssrc: self.config.ssrc,
        }
        .write(&mut self.buf);
    }

    fn finish_packet(&mut self, emit: &mut dyn FnMut(&mut Vec<u8>), stats: &mut PacketizeStats) {
        stats.packets += 1;
        stats.payload_bytes += self.buf.len() - RTP_HEADER_LEN;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        emit(&mut self.buf);
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::packet::RtpPacket;

    fn annexb(nals: &[&[u8]]) -> Bytes {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&[0, 0, 0, 1]);
            v.extend_from_slice(n);
        }
        Bytes::from(v)
    }

    fn run(
        p: &mut Packetizer,
        au: &Bytes,
        ps: Option<&ParameterSets>,
    ) -> (Vec<Vec<u8>>, PacketizeStats) {
        let mut out = Vec::new();
        let stats = p
            .packetize(au, H264Framing::AnnexB, ps, 1000, &mut |b| {
                out.push(b.clone())
            })
            .unwrap();
        (out, stats)
    }

    fn config(max: usize) -> PacketizerConfig {
        PacketizerConfig {
            payload_type: 99,
            ssrc: 42,
            max_packet_bytes: max,
            initial_sequence: 65_535,
        }
    }

    /// Reassembles NAL units from RFC 6184 payloads, as a receiver does.
    fn depacketize(packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut nals = Vec::new();
        let mut fu: Option<Vec<u8>> = None;
        for p in packets {
            let pkt = RtpPacket::parse(p).unwrap();
            let pl = pkt.payload;
            match pl[0] & 0x1f {
                STAP_A => {
                    let mut r = &pl[1..];
                    while r.len() >= 2 {
                        let n = usize::from(u16::from_be_bytes([r[0], r[1]]));
                        nals.push(r[2..2 + n].to_vec());
                        r = &r[2 + n..];
                    }
                    assert!(r.is_empty());
                }
                FU_A => {
                    let (s, e) = (pl[1] & 0x80 != 0, pl[1] & 0x40 != 0);
                    if s {
                        fu = Some(vec![(pl[0] & 0xe0) | (pl[1] & 0x1f)]);
                    }
                    fu.as_mut().unwrap().extend_from_slice(&pl[2..]);
                    if e {
                        nals.push(fu.take().unwrap());
                    }
                }
                _ => nals.push(pl.to_vec()),
            }
        }
        assert!(fu.is_none());
        nals
    }

    #[test]
    fn idr_gets_parameter_sets_in_a_stap_a_then_fu_a_with_one_marker() {
        let ps = ParameterSets {
            sps: Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1f]),
            pps: Bytes::from_static(&[0x68, 0xce, 0x3c, 0x80]),
        };
        let mut idr = vec![0x65];
        idr.extend((0..5000u32).map(|i| i as u8));
        let au = annexb(&[&[0x09, 0xf0], &idr]);
        let mut p = Packetizer::new(config(1368)).unwrap();
        let (out, stats) = run(&mut p, &au, Some(&ps));
        assert!(stats.inserted_parameter_sets);
        assert_eq!(stats.nal_units, 3, "AUD dropped, SPS+PPS added");
        assert!(out.iter().all(|b| b.len() <= 1368));
        // First packet: STAP-A of SPS + PPS (the IDR does not fit with them).
        let first = RtpPacket::parse(&out[0]).unwrap();
        assert_eq!(first.payload[0] & 0x1f, STAP_A);
        assert_eq!(first.header.sequence_number, 65_535);
        let seqs: Vec<u16> = out
            .iter()
            .map(|b| RtpPacket::parse(b).unwrap().header.sequence_number)
            .collect();
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(1));
        }
        let markers: Vec<bool> = out
            .iter()
            .map(|b| RtpPacket::parse(b).unwrap().header.marker)
            .collect();
        assert_eq!(markers.iter().filter(|m| **m).count(), 1);
        assert!(*markers.last().unwrap());
        assert_eq!(
            depacketize(&out),
            vec![ps.sps.to_vec(), ps.pps.to_vec(), idr.clone()]
        );
        assert_eq!(p.next_sequence(), 65_535u16.wrapping_add(out.len() as u16));
    }

    #[test]
    fn in_band_parameter_sets_are_not_duplicated_and_p_frames_get_none() {
        let ps = ParameterSets {
            sps: Bytes::from_static(&[0x67, 1]),
            pps: Bytes::from_static(&[0x68, 2]),
        };
        let mut p = Packetizer::new(config(1200)).unwrap();
        let au = annexb(&[&[0x67, 9], &[0x68, 9], &[0x65, 1, 2, 3]]);
        let (out, stats) = run(&mut p, &au, Some(&ps));
        assert!(!stats.inserted_parameter_sets);
        assert_eq!(out.len(), 1, "all three fit one STAP-A");
        assert_eq!(
            depacketize(&out),
            vec![vec![0x67, 9], vec![0x68, 9], vec![0x65, 1, 2, 3]]
        );
        let (out, stats) = run(&mut p, &annexb(&[&[0x41, 7, 7]]), Some(&ps));
        assert!(!stats.inserted_parameter_sets);
        assert_eq!(out.len(), 1);
        let pkt = RtpPacket::parse(&out[0]).unwrap();
        assert_eq!(pkt.payload, &[0x41, 7, 7], "single NAL unit packet");
        assert!(pkt.header.marker);
    }

    #[test]
    fn every_size_round_trips_within_the_bound() {
        for max in [MIN_PACKET_BYTES, 16, 100, 1368] {
            for len in [1usize, 2, 3, 50, 1355, 1356, 1357, 4000] {
                let mut nal = vec![0x41];
                nal.extend((1..len).map(|i| (i * 7) as u8));
                let au = annexb(&[&nal, &[0x06, 5, 0x80]]);
                let mut p = Packetizer::new(config(max)).unwrap();
                let (out, _) = run(&mut p, &au, None);
                assert!(out.iter().all(|b| b.len() <= max), "max {max} len {len}");
                assert_eq!(depacketize(&out), vec![nal.clone(), vec![0x06, 5, 0x80]]);
            }
        }
    }

    #[test]
    fn malformed_and_empty_access_units() {
        let mut p = Packetizer::new(config(1200)).unwrap();
        let mut out = 0;
        let err = p
            .packetize(
                &Bytes::from_static(&[1, 2, 3]),
                H264Framing::AnnexB,
                None,
                0,
                &mut |_| out += 1,
            )
            .unwrap_err();
        assert!(matches!(err, PacketizeError::Malformed(_)));
        let stats = p
            .packetize(
                &annexb(&[&[0x09, 0xf0], &[0x0c, 0xff], &[0x18, 1]]),
                H264Framing::AnnexB,
                None,
                0,
                &mut |_| out += 1,
            )
            .unwrap();
        assert_eq!(stats.packets, 0);
        assert_eq!(out, 0);
        assert_eq!(p.next_sequence(), 65_535);
        assert_eq!(
            Packetizer::new(config(MIN_PACKET_BYTES - 1)).unwrap_err(),
            PacketizeError::Config
        );
    }

    #[test]
    fn avcc_framing() {
        let data = Bytes::from_static(&[0, 0, 0, 3, 0x41, 1, 2]);
        let mut p = Packetizer::new(config(1200)).unwrap();
        let mut out = Vec::new();
        p.packetize(
            &data,
            H264Framing::Avcc {
                length_size_bytes: 4,
            },
            None,
            7,
            &mut |b| out.push(b.clone()),
        )
        .unwrap();
        assert_eq!(depacketize(&out), vec![vec![0x41, 1, 2]]);
        assert_eq!(RtpPacket::parse(&out[0]).unwrap().header.timestamp, 7);
    }
}
