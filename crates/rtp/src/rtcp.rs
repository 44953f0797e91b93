//! RTCP (RFC 3550 §6): sender reports we send at the RTCP interval, receiver reports the
//! controller answers with (our liveness signal), and a bounded parser for compound packets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// RTCP packet types (RFC 3550 §12.1).
pub mod packet_type {
    /// Sender report.
    pub const SR: u8 = 200;
    /// Receiver report.
    pub const RR: u8 = 201;
    /// Source description.
    pub const SDES: u8 = 202;
    /// Goodbye.
    pub const BYE: u8 = 203;
    /// Application-defined.
    pub const APP: u8 = 204;
}

/// Most report blocks one packet can carry (the 5-bit count).
pub const MAX_REPORT_BLOCKS: usize = 31;
/// Bytes of one report block.
pub const REPORT_BLOCK_LEN: usize = 24;
/// Most packets [`parse_compound`] returns; a compound packet with more is refused.
pub const MAX_COMPOUND_PACKETS: usize = 16;

/// Why bytes are not an RTCP compound packet.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RtcpError {
    /// A header or body shorter than its length field or report count says.
    #[error("RTCP packet truncated")]
    Truncated,
    /// The version field is not 2.
    #[error("RTCP version {0}, expected 2")]
    Version(u8),
    /// More than [`MAX_COMPOUND_PACKETS`] packets.
    #[error("too many packets in an RTCP compound packet")]
    TooMany,
    /// No packet at all.
    #[error("empty RTCP packet")]
    Empty,
}

/// A reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction of packets lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub extended_highest_sequence: u32,
    /// Interarrival jitter, in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received (0: none).
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

/// A sender report (RFC 3550 §6.4.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SenderReport {
    /// The sender's SSRC.
    pub ssrc: u32,
    /// Wall-clock time of this report, NTP format (see [`ntp_timestamp`]).
    pub ntp_timestamp: u64,
    /// The RTP timestamp that corresponds to `ntp_timestamp`.
    pub rtp_timestamp: u32,
    /// RTP packets sent so far.
    pub packet_count: u32,
    /// RTP payload bytes sent so far.
    pub octet_count: u32,
    /// Reception reports (none when we only send).
    pub reports: Vec<ReportBlock>,
}

/// A receiver report (RFC 3550 §6.4.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceiverReport {
    /// The reporter's SSRC.
    pub ssrc: u32,
    /// Reception reports.
    pub reports: Vec<ReportBlock>,
}

/// One packet of a compound RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    /// A sender report.
    SenderReport(SenderReport),
    /// A receiver report.
    ReceiverReport(ReceiverReport),
    /// A goodbye, with the sources leaving.
    Bye {
        /// The SSRCs that leave.
        ssrcs: Vec<u32>,
    },
    /// Any other type (SDES, APP, feedback such as PLI): only its type is kept.
    Other {
        /// The packet type.
        packet_type: u8,
    },
}

/// The NTP timestamp (RFC 3550 §4: seconds since 1900 in the high 32 bits, fraction in the
/// low 32) of `time`.
pub fn ntp_timestamp(time: SystemTime) -> u64 {
    const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs().wrapping_add(NTP_UNIX_OFFSET_S);
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

fn write_header(out: &mut Vec<u8>, count: u8, packet_type: u8, body_words: usize) {
    out.push(0x80 | (count & 0x1f));
    out.push(packet_type);
    // Length in 32-bit words minus one (the header word).
    let len = u16::try_from(body_words).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
}

fn write_blocks(out: &mut Vec<u8>, blocks: &[ReportBlock]) {
    for b in blocks.iter().take(MAX_REPORT_BLOCKS) {
        out.extend_from_slice(&b.ssrc.to_be_bytes());
        out.push(b.fraction_lost);
        let lost = b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0x00ff_ffff;
        out.extend_from_slice(&lost.to_be_bytes()[1..]);
        out.extend_from_slice(&b.extended_highest_sequence.to_be_bytes());
        out.extend_from_slice(&b.jitter.to_be_bytes());
        out.extend_from_slice(&b.last_sr.to_be_bytes());
        out.extend_from_slice(&b.delay_since_last_sr.to_be_bytes());
    }
}

impl SenderReport {
    /// Appends the SR (28 bytes + 24 per block, at most 31 blocks) to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let n = self.reports.len().min(MAX_REPORT_BLOCKS);
        write_header(out, n as u8, packet_type::SR, 6 + 6 * n);
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&self.ntp_timestamp.to_be_bytes());
        out.extend_from_slice(&self.rtp_timestamp.to_be_bytes());
        out.extend_from_slice(&self.packet_count.to_be_bytes());
        out.extend_from_slice(&self.octet_count.to_be_bytes());
        write_blocks(out, &self.reports);
    }
}

impl ReceiverReport {
    /// Appends the RR (8 bytes + 24 per block, at most 31 blocks) to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let n = self.reports.len().min(MAX_REPORT_BLOCKS);
        write_header(out, n as u8, packet_type::RR, 1 + 6 * n);
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        write_blocks(out, &self.reports);
    }
}

/// Appends what a sender sends every RTCP interval: a sender report for `ssrc` mapping `wall`
/// to `rtp_timestamp` with its packet and payload-octet counts (wrapping, RFC 3550 §6.4.1),
/// then the SDES CNAME.
pub fn write_sender_report(
    out: &mut Vec<u8>,
    ssrc: u32,
    wall: SystemTime,
    rtp_timestamp: u32,
    (packets, octets): (u64, u64),
    cname: &str,
) {
    SenderReport {
        ssrc,
        ntp_timestamp: ntp_timestamp(wall),
        rtp_timestamp,
        packet_count: packets as u32,
        octet_count: octets as u32,
        reports: Vec::new(),
    }
    .write(out);
    write_sdes_cname(out, ssrc, cname);
}

/// Appends an SDES packet with one chunk: `ssrc` and its CNAME item (RFC 3550 §6.5.1), which
/// a compound packet should carry. `cname` is cut to 255 bytes.
pub fn write_sdes_cname(out: &mut Vec<u8>, ssrc: u32, cname: &str) {
    let name = cname.as_bytes();
    let name = name.get(..name.len().min(255)).unwrap_or_default();
    // SSRC (4) + type (1) + length (1) + name + end item (1), padded to 32 bits.
    let chunk = 4 + 2 + name.len() + 1;
    let padded = chunk.div_ceil(4) * 4;
    write_header(out, 1, packet_type::SDES, padded / 4);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(1); // CNAME
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.resize(out.len() + (padded - chunk) + 1, 0);
}

fn be32(b: &[u8], at: usize) -> Result<u32, RtcpError> {
    b.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_be_bytes)
        .ok_or(RtcpError::Truncated)
}

fn parse_blocks(body: &[u8], count: usize) -> Result<Vec<ReportBlock>, RtcpError> {
    (0..count)
        .map(|i| {
            let at = i * REPORT_BLOCK_LEN;
            let lost_word = be32(body, at + 4)?;
            // Sign-extend the 24-bit cumulative count.
            let lost = ((lost_word << 8) as i32) >> 8;
            Ok(ReportBlock {
                ssrc: be32(body, at)?,
                fraction_lost: (lost_word >> 24) as u8,
                cumulative_lost: lost,
                extended_highest_sequence: be32(body, at + 8)?,
                jitter: be32(body, at + 12)?,
                last_sr: be32(body, at + 16)?,
                delay_since_last_sr: be32(body, at + 20)?,
            })
        })
        .collect()
}

/// Parses a compound RTCP packet (already decrypted): every packet's version, length and
/// report count are checked against the bytes; trailing bytes that do not form a whole
/// packet are an error. At most [`MAX_COMPOUND_PACKETS`] packets.
pub fn parse_compound(data: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if out.len() == MAX_COMPOUND_PACKETS {
            return Err(RtcpError::TooMany);
        }
        let header = rest.get(..4).ok_or(RtcpError::Truncated)?;
        let (first, pt) = match header {
            [a, b, _, _] => (*a, *b),
            _ => return Err(RtcpError::Truncated),
        };
        if first >> 6 != 2 {
            return Err(RtcpError::Version(first >> 6));
        }
        let words = header
            .get(2..4)
            .and_then(|s| <[u8; 2]>::try_from(s).ok())
            .map(u16::from_be_bytes)
            .ok_or(RtcpError::Truncated)?;
        let total = 4 * (usize::from(words) + 1);
        let packet = rest.get(..total).ok_or(RtcpError::Truncated)?;
        rest = rest.get(total..).unwrap_or_default();
        let count = usize::from(first & 0x1f);
        let body = packet.get(4..).unwrap_or_default();
        out.push(match pt {
            packet_type::SR => {
                let blocks = body.get(24..).ok_or(RtcpError::Truncated)?;
                let ntp_hi = be32(body, 4)?;
                let ntp_lo = be32(body, 8)?;
                RtcpPacket::SenderReport(SenderReport {
                    ssrc: be32(body, 0)?,
                    ntp_timestamp: (u64::from(ntp_hi) << 32) | u64::from(ntp_lo),
                    rtp_timestamp: be32(body, 12)?,
                    packet_count: be32(body, 16)?,
                    octet_count: be32(body, 20)?,
                    reports: parse_blocks(blocks, count)?,
                })
            }
            packet_type::RR => {
                let blocks = body.get(4..).ok_or(RtcpError::Truncated)?;
                RtcpPacket::ReceiverReport(ReceiverReport {
                    ssrc: be32(body, 0)?,
                    reports: parse_blocks(blocks, count)?,
                })
            }
            packet_type::BYE => RtcpPacket::Bye {
                ssrcs: (0..count)
                    .map(|i| be32(body, 4 * i))
                    .collect::<Result<_, _>>()?,
            },
            other => RtcpPacket::Other { packet_type: other },
        });
    }
    if out.is_empty() {
        return Err(RtcpError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn block(ssrc: u32) -> ReportBlock {
        ReportBlock {
            ssrc,
            fraction_lost: 3,
            cumulative_lost: -2,
            extended_highest_sequence: 0x0001_0005,
            jitter: 77,
            last_sr: 0xdead_beef,
            delay_since_last_sr: 65_536,
        }
    }

    #[test]
    fn sr_sdes_rr_bye_round_trip() {
        let sr = SenderReport {
            ssrc: 1,
            ntp_timestamp: 0x0102_0304_0506_0708,
            rtp_timestamp: 9,
            packet_count: 10,
            octet_count: 11,
            reports: vec![],
        };
        let rr = ReceiverReport {
            ssrc: 2,
            reports: vec![block(1), block(5)],
        };
        let mut b = Vec::new();
        sr.write(&mut b);
        assert_eq!(b.len(), 28);
        write_sdes_cname(&mut b, 1, "hksv-bridge");
        assert_eq!(b.len() % 4, 0);
        rr.write(&mut b);
        b.extend_from_slice(&[0x81, packet_type::BYE, 0, 1, 0, 0, 0, 2]);
        let parsed = parse_compound(&b).unwrap();
        assert_eq!(
            parsed,
            vec![
                RtcpPacket::SenderReport(sr),
                RtcpPacket::Other {
                    packet_type: packet_type::SDES
                },
                RtcpPacket::ReceiverReport(rr),
                RtcpPacket::Bye { ssrcs: vec![2] },
            ]
        );
    }

    #[test]
    fn malformed_compounds_are_errors() {
        assert_eq!(parse_compound(&[]), Err(RtcpError::Empty));
        assert_eq!(parse_compound(&[0x80, 201, 0]), Err(RtcpError::Truncated));
        assert_eq!(
            parse_compound(&[0x40, 201, 0, 0]),
            Err(RtcpError::Version(1))
        );
        // Length says 2 words, 1 present.
        assert_eq!(
            parse_compound(&[0x80, 201, 0, 2, 0, 0, 0, 1]),
            Err(RtcpError::Truncated)
        );
        // RR claiming one block without it.
        assert_eq!(
            parse_compound(&[0x81, 201, 0, 1, 0, 0, 0, 1]),
            Err(RtcpError::Truncated)
        );
        // 17 empty RRs.
        let many: Vec<u8> = (0..17)
            .flat_map(|_| [0x80, 201, 0, 1, 0, 0, 0, 1])
            .collect();
        assert_eq!(parse_compound(&many), Err(RtcpError::TooMany));
    }

    #[test]
    fn ntp_timestamp_of_the_unix_epoch_and_half_seconds() {
        assert_eq!(ntp_timestamp(UNIX_EPOCH) >> 32, 2_208_988_800);
        let t = UNIX_EPOCH + Duration::from_millis(1500);
        assert_eq!(ntp_timestamp(t) & 0xffff_ffff, 0x8000_0000);
    }

    proptest::proptest! {
        #[test]
        fn parse_compound_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse_compound(&bytes);
        }
    }
}
