//! The RTP fixed header (RFC 3550 §5.1) and the RTP/RTCP demultiplexing rule of RFC 5761 §4
//! (HomeKit sends RTCP to the RTP port of each medium).

/// Bytes of the RTP fixed header without CSRCs.
pub const RTP_HEADER_LEN: usize = 12;

/// Why bytes are not an RTP packet.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PacketError {
    /// Fewer bytes than the header, its CSRC list, extension or padding say.
    #[error("RTP packet truncated")]
    Truncated,
    /// The version field is not 2.
    #[error("RTP version {0}, expected 2")]
    Version(u8),
}

/// The fields of the RTP fixed header that this workspace sends and checks. Packets we write
/// carry no padding, extension or CSRCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// The marker bit; for H.264 the last packet of an access unit (RFC 6184 §5.1).
    pub marker: bool,
    /// Payload type, 0..=127 (HomeKit video: 99, from 117).
    pub payload_type: u8,
    /// Sequence number (+1 per packet, wrapping).
    pub sequence_number: u16,
    /// Media timestamp (90 kHz for video).
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
}

impl RtpHeader {
    /// Appends the 12-byte header to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(0x80); // V=2, P=0, X=0, CC=0
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.sequence_number.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
    }
}

/// A parsed RTP packet borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// The fixed header.
    pub header: RtpHeader,
    /// Bytes before the payload: 12, the CSRCs (4 each) and the extension, if any.
    pub header_len: usize,
    /// The payload, without padding.
    pub payload: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2)
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .map(u16::from_be_bytes)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_be_bytes)
}

impl<'a> RtpPacket<'a> {
    /// Parses an RTP packet (RFC 3550 §5.1, §5.3.1). For an SRTP packet the payload is still
    /// encrypted and includes the tag; only the header is meaningful.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PacketError> {
        let first = *bytes.first().ok_or(PacketError::Truncated)?;
        let version = first >> 6;
        if version != 2 {
            return Err(PacketError::Version(version));
        }
        let second = *bytes.get(1).ok_or(PacketError::Truncated)?;
        let sequence_number = be16(bytes, 2).ok_or(PacketError::Truncated)?;
        let timestamp = be32(bytes, 4).ok_or(PacketError::Truncated)?;
        let ssrc = be32(bytes, 8).ok_or(PacketError::Truncated)?;
        let csrc_count = usize::from(first & 0x0f);
        let mut header_len = RTP_HEADER_LEN + 4 * csrc_count;
        if first & 0x10 != 0 {
            // Extension: 16-bit profile, 16-bit length in 32-bit words.
            let words = be16(bytes, header_len + 2).ok_or(PacketError::Truncated)?;
            header_len += 4 + 4 * usize::from(words);
        }
        if header_len > bytes.len() {
            return Err(PacketError::Truncated);
        }
        let mut end = bytes.len();
        if first & 0x20 != 0 {
            let pad = usize::from(*bytes.last().ok_or(PacketError::Truncated)?);
            if pad == 0 || header_len + pad > end {
                return Err(PacketError::Truncated);
            }
            end -= pad;
        }
        Ok(Self {
            header: RtpHeader {
                marker: second & 0x80 != 0,
                payload_type: second & 0x7f,
                sequence_number,
                timestamp,
                ssrc,
            },
            header_len,
            payload: bytes.get(header_len..end).ok_or(PacketError::Truncated)?,
        })
    }
}

/// Whether a datagram on a muxed port is RTCP (RFC 5761 §4: the second byte, i.e. RTCP packet
/// type or RTP marker + payload type, is 192..=223). Anything else is treated as RTP.
pub fn is_rtcp(datagram: &[u8]) -> bool {
    matches!(datagram.get(1), Some(192..=223))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = RtpHeader {
            marker: true,
            payload_type: 99,
            sequence_number: 0xfffe,
            timestamp: 0x1234_5678,
            ssrc: 0x7abc_def0,
        };
        let mut b = Vec::new();
        h.write(&mut b);
        b.extend_from_slice(b"payload");
        assert_eq!(b.len(), RTP_HEADER_LEN + 7);
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.header, h);
        assert_eq!(p.payload, b"payload");
        assert!(!is_rtcp(&b));
    }

    #[test]
    fn csrcs_extension_and_padding() {
        // V=2 P=1 X=1 CC=1
        let mut b = vec![0xb1, 99, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        b.extend_from_slice(&[0, 0, 0, 9]); // CSRC
        b.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension, 1 word
        b.extend_from_slice(b"xy");
        b.extend_from_slice(&[0, 0, 3]); // 3 bytes padding
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.header_len, 12 + 4 + 8);
        assert_eq!(p.payload, b"xy");
    }

    #[test]
    fn bad_packets_are_errors() {
        assert_eq!(RtpPacket::parse(&[]), Err(PacketError::Truncated));
        assert_eq!(RtpPacket::parse(&[0x40; 12]), Err(PacketError::Version(1)));
        assert_eq!(RtpPacket::parse(&[0x80; 11]), Err(PacketError::Truncated));
        // CC=15 but no CSRCs.
        assert_eq!(RtpPacket::parse(&[0x8f; 12]), Err(PacketError::Truncated));
        // Padding longer than the packet.
        let mut b = vec![0xa0, 99, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 200];
        assert_eq!(RtpPacket::parse(&b), Err(PacketError::Truncated));
        b.pop();
        b.push(0);
        assert_eq!(RtpPacket::parse(&b), Err(PacketError::Truncated));
    }

    #[test]
    fn rtcp_demux() {
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(is_rtcp(&[0x81, 201]));
        assert!(!is_rtcp(&[0x80, 99]));
        assert!(!is_rtcp(&[0x80, 0x80 | 99]), "marker + PT 99 = 227");
        assert!(!is_rtcp(&[0x80]));
    }
}
