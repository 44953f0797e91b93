//! Cross-implementation test: our SRTP/SRTCP against libsrtp 2 (through pylibsrtp, pinned in
//! tests/peers/requirements.txt), both directions, across a sequence-number wrap.
#![allow(clippy::indexing_slicing, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use base64::Engine;
use rtp::RtpHeader;
use rtp::rtcp::{ReceiverReport, ReportBlock, SenderReport};
use rtp::srtp::{Context, Error, MasterKey, Suite};

/// The Python with pylibsrtp: `HKSV_TEST_PYTHON` (set by scripts/test) or `.venv/` at the
/// workspace root. Missing is a failure, not a skip.
fn python() -> PathBuf {
    let path = std::env::var_os("HKSV_TEST_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
        PathBuf::from,
    );
    let ok = Command::new(&path)
        .args(["-c", "import pylibsrtp"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "pylibsrtp missing at {}: run scripts/test (it installs it into .venv/)",
        path.display()
    );
    path
}

struct Libsrtp {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Libsrtp {
    fn start(master: &MasterKey) -> Self {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/srtp_codec.py");
        let key = base64::engine::general_purpose::STANDARD.encode(master.concatenated());
        let mut child = Command::new(python())
            .arg(script)
            .arg(key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn call(&mut self, op: &str, data: &[u8]) -> Result<Vec<u8>, String> {
        writeln!(self.stdin, "{op} {}", hex::encode(data)).unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let line = line.trim();
        match line.strip_prefix("error") {
            Some(e) => Err(e.trim().to_string()),
            None => Ok(hex::decode(line).unwrap()),
        }
    }
}

impl Drop for Libsrtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn master() -> MasterKey {
    MasterKey::new(
        &hex::decode("00112233445566778899aabbccddeeff").unwrap(),
        &hex::decode("0102030405060708090a0b0c0d0e").unwrap(),
    )
    .unwrap()
}

fn rtp_packet(seq: u16, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    RtpHeader {
        marker: seq.is_multiple_of(3),
        payload_type: 99,
        sequence_number: seq,
        timestamp: u32::from(seq).wrapping_mul(3000),
        ssrc: 0x1234_5678,
    }
    .write(&mut p);
    p.extend((0..len).map(|i| (i as u8) ^ (seq as u8)));
    p
}

fn sender_report(n: u32) -> Vec<u8> {
    let mut p = Vec::new();
    SenderReport {
        ssrc: 0x1234_5678,
        ntp_timestamp: 0xe000_0000_0000_0000 + u64::from(n),
        rtp_timestamp: n * 45_000,
        packet_count: n,
        octet_count: n * 1000,
        reports: vec![],
    }
    .write(&mut p);
    rtp::rtcp::write_sdes_cname(&mut p, 0x1234_5678, "hksv-bridge");
    p
}

/// Sequence numbers across the 16-bit wrap, so the ROC goes 0 → 1.
fn sequence() -> impl Iterator<Item = u16> {
    (65_530u16..=65_535).chain(0..6)
}

#[test]
fn libsrtp_decrypts_what_we_protect() {
    let m = master();
    let mut ours = Context::new(Suite::AesCm128HmacSha1_80, &m);
    let mut lib = Libsrtp::start(&m);
    for (k, seq) in sequence().enumerate() {
        let plain = rtp_packet(seq, 1 + k * 97);
        let mut protected = plain.clone();
        ours.protect_rtp(&mut protected).unwrap();
        assert_eq!(protected.len(), plain.len() + 10);
        assert_eq!(lib.call("unprotect", &protected), Ok(plain), "seq {seq}");
    }
    for n in 0..3 {
        let plain = sender_report(n);
        let mut protected = plain.clone();
        ours.protect_rtcp(&mut protected).unwrap();
        assert_eq!(protected.len(), plain.len() + 14);
        assert_eq!(lib.call("unprotect_rtcp", &protected), Ok(plain), "SR {n}");
    }
}

#[test]
fn we_decrypt_what_libsrtp_protects_and_refuse_tampering_and_replays() {
    let m = master();
    let mut ours = Context::new(Suite::AesCm128HmacSha1_80, &m);
    let mut lib = Libsrtp::start(&m);
    for (k, seq) in sequence().enumerate() {
        let plain = rtp_packet(seq, 5 + k * 97);
        let protected = lib.call("protect", &plain).unwrap();
        // A flipped payload bit fails the tag and changes nothing.
        let mut tampered = protected.clone();
        tampered[14] ^= 1;
        assert_eq!(
            ours.unprotect_rtp(&mut tampered),
            Err(Error::AuthenticationFailed)
        );
        let mut buf = protected.clone();
        let n = ours.unprotect_rtp(&mut buf).unwrap();
        assert_eq!(&buf[..n], &plain[..], "seq {seq}");
        let mut again = protected.clone();
        assert_eq!(ours.unprotect_rtp(&mut again), Err(Error::Replayed));
    }
    for n in 0..3u32 {
        let mut rr = Vec::new();
        ReceiverReport {
            ssrc: 0x0abc_def0,
            reports: vec![ReportBlock {
                ssrc: 0x1234_5678,
                extended_highest_sequence: n,
                ..ReportBlock::default()
            }],
        }
        .write(&mut rr);
        let protected = lib.call("protect_rtcp", &rr).unwrap();
        let mut buf = protected.clone();
        let len = ours.unprotect_rtcp(&mut buf).unwrap();
        assert_eq!(&buf[..len], &rr[..]);
        let mut again = protected.clone();
        assert_eq!(ours.unprotect_rtcp(&mut again), Err(Error::Replayed));
    }
    // A different key: libsrtp's packet does not authenticate.
    let other = MasterKey::new(&[7; 16], &[7; 14]).unwrap();
    let mut wrong = Context::new(Suite::AesCm128HmacSha1_80, &other);
    let mut p = lib.call("protect", &rtp_packet(100, 40)).unwrap();
    assert_eq!(
        wrong.unprotect_rtp(&mut p),
        Err(Error::AuthenticationFailed)
    );
}
