//! Interop with a real controller we did not write: aiohomekit's pair-setup and pair-verify
//! state machines (Python, `testdata/aiohomekit_pairing.py`) against our accessory side, over
//! pipes. Includes the SRP leading-zero edge cases, where aiohomekit's conventions (PAD(A) in
//! M1, K = H(PAD(S))) differ from the ADK's.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use bytes::BytesMut;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::session::SessionCipher;

const CODE: &str = "031-45-154";

/// The Python with aiohomekit: `HKSV_TEST_PYTHON` (set by scripts/test) or `.venv/` at the
/// workspace root. Missing is a failure, not a skip.
fn python() -> PathBuf {
    let path = std::env::var_os("HKSV_TEST_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
        PathBuf::from,
    );
    let ok = Command::new(&path)
        .args(["-c", "import aiohomekit"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "aiohomekit peer missing at {}: run scripts/test (it installs aiohomekit into .venv/)",
        path.display()
    );
    path
}

/// Salt [3; 16], then b [9; 32]: the server values the edge-case keys were found for.
struct ScriptedRng;

impl rand::TryRng for ScriptedRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(0)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(0)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        dst.fill(if dst.len() == 16 { 3 } else { 9 });
        Ok(())
    }
}

impl rand::TryCryptoRng for ScriptedRng {}

/// One full aiohomekit session: pair-setup, pair-verify, one encrypted request each way.
fn run_aiohomekit(a_hex: Option<&str>) {
    let mut rng = StdRng::seed_from_u64(5);
    let accessory = AccessoryIdentity::generate(&mut rng);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/pairing/testdata/aiohomekit_pairing.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).arg(CODE);
    if let Some(a) = a_hex {
        cmd.arg(a);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut to_peer = child.stdin.take().unwrap();
    let mut from_peer = BufReader::new(child.stdout.take().unwrap());
    let mut line = || {
        let mut l = String::new();
        from_peer.read_line(&mut l).unwrap();
        assert!(
            !l.is_empty(),
            "aiohomekit exited early (see its traceback above)"
        );
        l.trim_end().to_owned()
    };
    let hex_of = |l: &str, tag: &str| hex::decode(l.strip_prefix(tag).unwrap()).unwrap();

    let ctx = SetupContext {
        identity: &accessory,
        setup_code: CODE,
        paired: false,
        failed_attempts: 0,
    };
    let mut setup = PairSetup::new();
    let m1 = hex_of(&line(), "REQ ");
    let SetupOutcome::Reply(m2) =
        setup.handle(1, &m1, &ctx, std::time::Instant::now(), &mut ScriptedRng)
    else {
        panic!("M2");
    };
    writeln!(to_peer, "{}", hex::encode(m2)).unwrap();
    let m3 = hex_of(&line(), "REQ ");
    let SetupOutcome::Reply(m4) = setup.handle(1, &m3, &ctx, std::time::Instant::now(), &mut rng)
    else {
        panic!("aiohomekit's M3 was not accepted (a = {a_hex:?})");
    };
    writeln!(to_peer, "{}", hex::encode(m4)).unwrap();
    let m5 = hex_of(&line(), "REQ ");
    let SetupOutcome::Paired { reply: m6, pairing } =
        setup.handle(1, &m5, &ctx, std::time::Instant::now(), &mut rng)
    else {
        panic!("aiohomekit's M5 was not accepted");
    };
    assert!(pairing.admin);
    assert_eq!(pairing.controller_id.len(), 36);
    writeln!(to_peer, "{}", hex::encode(m6)).unwrap();

    let lookup = |id: &str| (id == pairing.controller_id).then(|| pairing.clone());
    let mut verify = PairVerify::new();
    let v1 = hex_of(&line(), "REQ ");
    let VerifyOutcome::Reply(v2) = verify.handle(&v1, &accessory, &lookup, &mut rng) else {
        panic!("verify M2");
    };
    writeln!(to_peer, "{}", hex::encode(v2)).unwrap();
    let v3 = hex_of(&line(), "REQ ");
    let VerifyOutcome::Verified {
        reply,
        controller,
        shared_secret,
    } = verify.handle(&v3, &accessory, &lookup, &mut rng)
    else {
        panic!("aiohomekit's verify M3 was not accepted");
    };
    assert_eq!(controller, pairing);
    writeln!(to_peer, "{}", hex::encode(reply)).unwrap();

    let mut session = SessionCipher::accessory(&shared_secret);
    let mut buf = BytesMut::from(&hex_of(&line(), "FRAME ")[..]);
    let mut request = Vec::new();
    assert_eq!(session.decrypt(&mut buf, &mut request), Ok(1));
    assert_eq!(request, b"GET /accessories HTTP/1.1\r\n\r\n");
    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let mut wire = Vec::new();
    session.encrypt(answer, &mut wire);
    writeln!(to_peer, "{}", hex::encode(wire)).unwrap();
    assert_eq!(hex_of(&line(), "PLAIN "), answer);
    drop(to_peer);
    assert!(child.wait().unwrap().success());
}

#[test]
fn aiohomekit_pairs_verifies_and_talks() {
    run_aiohomekit(None);
}

#[test]
fn aiohomekit_with_a_leading_zero_in_a() {
    // A = g^a starts with a zero byte for this a (srp.rs tests check the precondition).
    run_aiohomekit(Some(
        "011a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
    ));
}

#[test]
fn aiohomekit_with_a_leading_zero_in_s() {
    // With salt [3; 16] and b [9; 32], S starts with a zero byte for this a.
    run_aiohomekit(Some(
        "00675a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
    ));
}
