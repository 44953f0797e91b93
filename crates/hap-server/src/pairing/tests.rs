//! Two-party pairing tests: our controller side against our accessory side, plus checks of
//! the wire constants computed independently from the literal strings of protocol-notes
//! §1.5–§1.7 (so a typo shared by both sides would still fail).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce, Tag};
use ed25519_dalek::{Signer, SigningKey};
use hap_tlv::{PairingError, Tlv8, TlvType};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::controller::{
    AccessoryPairing, ControllerError, ControllerIdentity, SetupClient, VerifyClient,
};
use super::*;

fn now() -> std::time::Instant {
    std::time::Instant::now()
}
use crate::session::SessionCipher;

const CODE: &str = "031-45-154";

fn rng() -> StdRng {
    StdRng::seed_from_u64(0x4b53_5642)
}

fn ctx(identity: &AccessoryIdentity) -> SetupContext<'_> {
    SetupContext {
        identity,
        setup_code: CODE,
        paired: false,
        failed_attempts: 0,
    }
}

fn reply(o: SetupOutcome) -> Vec<u8> {
    match o {
        SetupOutcome::Reply(r) => r,
        other => panic!("expected Reply, got {other:?}"),
    }
}

fn state_error(body: &[u8]) -> (u8, Option<PairingError>) {
    let tlv = Tlv8::decode(body).unwrap();
    (
        tlv.require_u8(TlvType::STATE).unwrap(),
        tlv.get(TlvType::ERROR).map(|e| PairingError(e[0])),
    )
}

fn hkdf(ikm: &[u8], salt: &str, info: &str) -> [u8; 32] {
    let mut okm = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha512>::new(Some(salt.as_bytes()), ikm)
        .expand(info.as_bytes(), &mut okm)
        .unwrap();
    okm
}

/// Decrypts ciphertext ‖ tag with an explicit 12-byte nonce.
fn open12(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let (ct, tag) = sealed.split_at(sealed.len() - 16);
    let mut buf = ct.to_vec();
    ChaCha20Poly1305::new(&(*key).into())
        .decrypt_inout_detached(
            &Nonce::from(*nonce),
            aad,
            buf.as_mut_slice().into(),
            &Tag::try_from(tag).unwrap(),
        )
        .ok()?;
    Some(buf)
}

struct Setup {
    accessory: AccessoryIdentity,
    controller: ControllerIdentity,
    pairing: Pairing,
    accessory_pairing: AccessoryPairing,
}

/// Runs M1–M6 and checks every step; also checks M6's encryption independently.
fn pair(rng: &mut StdRng) -> Setup {
    let accessory = AccessoryIdentity::generate(rng);
    let controller = ControllerIdentity::generate(rng);
    let mut server = PairSetup::new();
    let mut client = SetupClient::new(controller.clone(), CODE);
    let m2 = reply(server.handle(7, &client.m1(), &ctx(&accessory), now(), rng));
    let m3 = client.handle_m2(&m2, rng).unwrap();
    let m4 = reply(server.handle(7, &m3, &ctx(&accessory), now(), rng));
    let m5 = client.handle_m4(&m4).unwrap();
    let k = client.session_key().unwrap();
    let SetupOutcome::Paired { reply: m6, pairing } =
        server.handle(7, &m5, &ctx(&accessory), now(), rng)
    else {
        panic!("M5 did not pair");
    };
    assert_eq!(server.in_progress(), None);

    // M6 opens with key HKDF(K, "Pair-Setup-Encrypt-Salt", "Pair-Setup-Encrypt-Info") and
    // nonce 00000000 ‖ "PS-Msg06".
    let key = hkdf(&k, "Pair-Setup-Encrypt-Salt", "Pair-Setup-Encrypt-Info");
    let sealed = Tlv8::decode(&m6).unwrap();
    let sealed = sealed.require(TlvType::ENCRYPTED_DATA).unwrap();
    let plain = open12(&key, b"\0\0\0\0PS-Msg06", &[], sealed).expect("PS-Msg06 nonce");
    let sub = Tlv8::decode(&plain).unwrap();
    assert_eq!(
        sub.get(TlvType::IDENTIFIER),
        Some(accessory.pairing_id.as_bytes())
    );
    // Signature over AccessoryX ‖ id ‖ LTPK, AccessoryX from the literal salt/info.
    let ax = hkdf(
        &k,
        "Pair-Setup-Accessory-Sign-Salt",
        "Pair-Setup-Accessory-Sign-Info",
    );
    let mut info = ax.to_vec();
    info.extend_from_slice(accessory.pairing_id.as_bytes());
    info.extend_from_slice(&accessory.public_key());
    let sig =
        ed25519_dalek::Signature::from_bytes(&sub.require_array::<64>(TlvType::SIGNATURE).unwrap());
    accessory
        .signing_key
        .verifying_key()
        .verify_strict(&info, &sig)
        .unwrap();

    let accessory_pairing = client.handle_m6(&m6).unwrap();
    assert_eq!(accessory_pairing.pairing_id, accessory.pairing_id);
    assert_eq!(accessory_pairing.ltpk, accessory.public_key());
    assert_eq!(
        pairing,
        Pairing {
            controller_id: controller.pairing_id.clone(),
            ltpk: controller.public_key(),
            admin: true
        }
    );
    Setup {
        accessory,
        controller,
        pairing,
        accessory_pairing,
    }
}

#[test]
fn pair_setup_verify_and_session_round_trip() {
    let mut rng = rng();
    let s = pair(&mut rng);
    let stored = s.pairing.clone();
    let lookup = move |id: &str| (id == stored.controller_id).then(|| stored.clone());

    let mut server = PairVerify::new();
    let mut client = VerifyClient::new(s.controller.clone(), s.accessory_pairing.clone(), &mut rng);
    let m1 = client.m1().unwrap();
    let m2 = match server.handle(&m1, &s.accessory, &lookup, &mut rng) {
        VerifyOutcome::Reply(r) => r,
        other => panic!("{other:?}"),
    };
    let m3 = client.handle_m2(&m2).unwrap();
    let VerifyOutcome::Verified {
        reply,
        controller,
        shared_secret,
    } = server.handle(&m3, &s.accessory, &lookup, &mut rng)
    else {
        panic!("not verified");
    };
    assert_eq!(controller, s.pairing);
    assert_eq!(state_error(&reply), (4, None));
    let client_secret = client.handle_m4(&reply).unwrap();
    assert_eq!(client_secret.as_bytes(), shared_secret.as_bytes());

    // M2 opens with HKDF(shared, "Pair-Verify-Encrypt-Salt", "Pair-Verify-Encrypt-Info") and
    // nonce 00000000 ‖ "PV-Msg02".
    let key = hkdf(
        shared_secret.as_bytes(),
        "Pair-Verify-Encrypt-Salt",
        "Pair-Verify-Encrypt-Info",
    );
    let m2 = Tlv8::decode(&m2).unwrap();
    assert!(
        open12(
            &key,
            b"\0\0\0\0PV-Msg02",
            &[],
            m2.require(TlvType::ENCRYPTED_DATA).unwrap()
        )
        .is_some()
    );

    // Session: accessory → controller with "Control-Read-Encryption-Key", counter nonce 0.
    let mut acc = SessionCipher::accessory(&shared_secret);
    let mut ctl = SessionCipher::controller(&client_secret);
    let mut wire = Vec::new();
    acc.encrypt(b"HTTP/1.1 200 OK\r\n\r\n", &mut wire);
    let read_key = hkdf(
        shared_secret.as_bytes(),
        "Control-Salt",
        "Control-Read-Encryption-Key",
    );
    let plain = open12(&read_key, &[0; 12], &wire[..2], &wire[2..]).expect("read key, nonce 0");
    assert_eq!(plain, b"HTTP/1.1 200 OK\r\n\r\n");
    let mut buf = bytes::BytesMut::from(&wire[..]);
    let mut out = Vec::new();
    assert_eq!(ctl.decrypt(&mut buf, &mut out), Ok(1));
    assert_eq!(out, b"HTTP/1.1 200 OK\r\n\r\n");
    // And back, with "Control-Write-Encryption-Key".
    let mut wire = Vec::new();
    ctl.encrypt(b"GET /accessories", &mut wire);
    let write_key = hkdf(
        shared_secret.as_bytes(),
        "Control-Salt",
        "Control-Write-Encryption-Key",
    );
    assert!(open12(&write_key, &[0; 12], &wire[..2], &wire[2..]).is_some());
}

#[test]
fn m5_nonce_and_keys_match_the_literal_constants() {
    let mut rng = rng();
    let accessory = AccessoryIdentity::generate(&mut rng);
    let controller = ControllerIdentity::generate(&mut rng);
    let mut server = PairSetup::new();
    let mut client = SetupClient::new(controller.clone(), CODE);
    let m2 = reply(server.handle(1, &client.m1(), &ctx(&accessory), now(), &mut rng));
    let m3 = client.handle_m2(&m2, &mut rng).unwrap();
    let _m4 = reply(server.handle(1, &m3, &ctx(&accessory), now(), &mut rng));
    let m5 = client.handle_m4(&_m4).unwrap();
    let k = client.session_key().unwrap();
    let key = hkdf(&k, "Pair-Setup-Encrypt-Salt", "Pair-Setup-Encrypt-Info");
    let m5 = Tlv8::decode(&m5).unwrap();
    let plain = open12(
        &key,
        b"\0\0\0\0PS-Msg05",
        &[],
        m5.require(TlvType::ENCRYPTED_DATA).unwrap(),
    )
    .expect("PS-Msg05 nonce");
    let sub = Tlv8::decode(&plain).unwrap();
    let cx = hkdf(
        &k,
        "Pair-Setup-Controller-Sign-Salt",
        "Pair-Setup-Controller-Sign-Info",
    );
    let mut info = cx.to_vec();
    info.extend_from_slice(controller.pairing_id.as_bytes());
    info.extend_from_slice(&controller.public_key());
    let sig =
        ed25519_dalek::Signature::from_bytes(&sub.require_array::<64>(TlvType::SIGNATURE).unwrap());
    controller
        .signing_key
        .verifying_key()
        .verify_strict(&info, &sig)
        .unwrap();
}

#[test]
fn wrong_setup_code_is_counted_and_resets() {
    let mut rng = rng();
    let accessory = AccessoryIdentity::generate(&mut rng);
    let mut server = PairSetup::new();
    let mut client = SetupClient::new(ControllerIdentity::generate(&mut rng), "031-45-155");
    let m2 = reply(server.handle(1, &client.m1(), &ctx(&accessory), now(), &mut rng));
    let m3 = client.handle_m2(&m2, &mut rng).unwrap();
    let SetupOutcome::WrongCode(m4) = server.handle(1, &m3, &ctx(&accessory), now(), &mut rng)
    else {
        panic!("wrong code not reported");
    };
    assert_eq!(state_error(&m4), (4, Some(PairingError::AUTHENTICATION)));
    assert_eq!(
        client.handle_m4(&m4),
        Err(ControllerError::Accessory {
            state: 4,
            code: PairingError::AUTHENTICATION
        })
    );
    assert_eq!(server.in_progress(), None);
    // A fresh attempt with the right code from another connection succeeds.
    let mut client = SetupClient::new(ControllerIdentity::generate(&mut rng), CODE);
    let m2 = reply(server.handle(2, &client.m1(), &ctx(&accessory), now(), &mut rng));
    let m3 = client.handle_m2(&m2, &mut rng).unwrap();
    let m4 = reply(server.handle(2, &m3, &ctx(&accessory), now(), &mut rng));
    assert!(client.handle_m4(&m4).is_ok());
}

#[test]
fn m1_refused_when_paired_or_too_many_tries() {
    let mut rng = rng();
    let accessory = AccessoryIdentity::generate(&mut rng);
    let mut server = PairSetup::new();
    let m1 = SetupClient::new(ControllerIdentity::generate(&mut rng), CODE).m1();
    let paired = SetupContext {
        paired: true,
        ..ctx(&accessory)
    };
    let r = reply(server.handle(1, &m1, &paired, now(), &mut rng));
    assert_eq!(state_error(&r), (2, Some(PairingError::UNAVAILABLE)));
    let tried = SetupContext {
        failed_attempts: MAX_FAILED_ATTEMPTS,
        ..ctx(&accessory)
    };
    let r = reply(server.handle(1, &m1, &tried, now(), &mut rng));
    assert_eq!(state_error(&r), (2, Some(PairingError::MAX_TRIES)));
    assert_eq!(server.in_progress(), None);
    let almost = SetupContext {
        failed_attempts: MAX_FAILED_ATTEMPTS - 1,
        ..ctx(&accessory)
    };
    let r = reply(server.handle(1, &m1, &almost, now(), &mut rng));
    assert_eq!(state_error(&r), (2, None));
    assert_eq!(server.in_progress(), Some(1));
}

#[test]
fn second_connection_is_busy_until_the_first_closes() {
    let mut rng = rng();
    let accessory = AccessoryIdentity::generate(&mut rng);
    let mut server = PairSetup::new();
    let m1 = SetupClient::new(ControllerIdentity::generate(&mut rng), CODE).m1();
    let _ = reply(server.handle(1, &m1, &ctx(&accessory), now(), &mut rng));
    let r = reply(server.handle(2, &m1, &ctx(&accessory), now(), &mut rng));
    assert_eq!(state_error(&r), (2, Some(PairingError::BUSY)));
    server.connection_closed(2); // not the owner: no effect
    assert_eq!(server.in_progress(), Some(1));
    server.connection_closed(1);
    let r = reply(server.handle(2, &m1, &ctx(&accessory), now(), &mut rng));
    assert_eq!(state_error(&r), (2, None));
}

#[test]
fn an_abandoned_pair_setup_is_reset_for_the_next_controller_after_30_s() {
    let mut rng = rng();
    let accessory = AccessoryIdentity::generate(&mut rng);
    let mut server = PairSetup::new();
    let m1 = SetupClient::new(ControllerIdentity::generate(&mut rng), CODE).m1();
    let t0 = now();
    let _ = reply(server.handle(1, &m1, &ctx(&accessory), t0, &mut rng));
    // Still within 30 s of M2: Busy for anyone else.
    let just_before = t0 + ABANDONED_AFTER - std::time::Duration::from_millis(1);
    assert!(!server.is_abandoned(just_before));
    let r = reply(server.handle(2, &m1, &ctx(&accessory), just_before, &mut rng));
    assert_eq!(state_error(&r), (2, Some(PairingError::BUSY)));
    // 30 s without the owner's M3: the next M1 starts over.
    let after = t0 + ABANDONED_AFTER;
    assert!(server.is_abandoned(after));
    let r = reply(server.handle(2, &m1, &ctx(&accessory), after, &mut rng));
    assert_eq!(state_error(&r), (2, None));
    assert_eq!(server.in_progress(), Some(2));
    // The first controller's late M3 is refused (its SRP state is gone).
    let r = reply(server.handle(1, &m1, &ctx(&accessory), after, &mut rng));
    assert_eq!(state_error(&r), (2, Some(PairingError::BUSY)));
}

#[test]
fn out_of_sequence_states_get_error_unknown() {
    let mut rng = rng();
    let accessory = AccessoryIdentity::generate(&mut rng);
    let mut server = PairSetup::new();
    let mut m3 = Tlv8::new();
    m3.push_u8(TlvType::STATE, 3)
        .push(TlvType::PUBLIC_KEY, &[1; 384])
        .push(TlvType::PROOF, &[0; 64]);
    let r = reply(server.handle(1, &m3.encode(), &ctx(&accessory), now(), &mut rng));
    assert_eq!(state_error(&r), (4, Some(PairingError::UNKNOWN)));
    // M5 while M3 is expected.
    let mut client = SetupClient::new(ControllerIdentity::generate(&mut rng), CODE);
    let _ = reply(server.handle(1, &client.m1(), &ctx(&accessory), now(), &mut rng));
    let mut m5 = Tlv8::new();
    m5.push_u8(TlvType::STATE, 5)
        .push(TlvType::ENCRYPTED_DATA, &[0; 40]);
    let r = reply(server.handle(1, &m5.encode(), &ctx(&accessory), now(), &mut rng));
    assert_eq!(state_error(&r), (6, Some(PairingError::UNKNOWN)));
    assert_eq!(server.in_progress(), None);
    // No State at all / garbage.
    let r = reply(server.handle(1, &[0x00, 0x01, 0x00], &ctx(&accessory), now(), &mut rng));
    assert_eq!(state_error(&r), (2, Some(PairingError::UNKNOWN)));
    let r = reply(server.handle(1, &[0x06, 0x05], &ctx(&accessory), now(), &mut rng));
    assert_eq!(state_error(&r), (2, Some(PairingError::UNKNOWN)));
}

/// Runs M1–M4 and returns the server and K.
fn up_to_m5(rng: &mut StdRng, accessory: &AccessoryIdentity) -> (PairSetup, [u8; 64]) {
    let mut server = PairSetup::new();
    let mut client = SetupClient::new(ControllerIdentity::generate(rng), CODE);
    let m2 = reply(server.handle(1, &client.m1(), &ctx(accessory), now(), rng));
    let m3 = client.handle_m2(&m2, rng).unwrap();
    let m4 = reply(server.handle(1, &m3, &ctx(accessory), now(), rng));
    let _m5 = client.handle_m4(&m4).unwrap();
    (server, client.session_key().unwrap())
}

fn forged_m5(k: &[u8; 64], id: &str, ltpk: [u8; 32], signer: &SigningKey) -> Vec<u8> {
    let cx = hkdf(
        k,
        "Pair-Setup-Controller-Sign-Salt",
        "Pair-Setup-Controller-Sign-Info",
    );
    let mut info = cx.to_vec();
    info.extend_from_slice(id.as_bytes());
    info.extend_from_slice(&ltpk);
    let mut sub = Tlv8::new();
    sub.push(TlvType::IDENTIFIER, id.as_bytes())
        .push(TlvType::PUBLIC_KEY, &ltpk)
        .push(TlvType::SIGNATURE, &signer.sign(&info).to_bytes());
    let key = hkdf(k, "Pair-Setup-Encrypt-Salt", "Pair-Setup-Encrypt-Info");
    let mut m5 = Tlv8::new();
    m5.push_u8(TlvType::STATE, 5).push_vec(
        TlvType::ENCRYPTED_DATA,
        crypto::seal(&key, b"PS-Msg05", &sub.encode()),
    );
    m5.encode()
}

#[test]
fn bad_m5_signature_is_authentication_error_in_state_6() {
    let mut rng = rng();
    let accessory = AccessoryIdentity::generate(&mut rng);
    let (mut server, k) = up_to_m5(&mut rng, &accessory);
    let claimed = SigningKey::generate(&mut rng).verifying_key().to_bytes();
    let other = SigningKey::generate(&mut rng);
    let m5 = forged_m5(&k, "C0FFEE00-0000-0000-0000-000000000000", claimed, &other);
    let r = reply(server.handle(1, &m5, &ctx(&accessory), now(), &mut rng));
    assert_eq!(state_error(&r), (6, Some(PairingError::AUTHENTICATION)));
    assert_eq!(server.in_progress(), None);

    // The same forgery signed with the right key pairs: the check above is the signature.
    let (mut server, k) = up_to_m5(&mut rng, &accessory);
    let good = SigningKey::generate(&mut rng);
    let m5 = forged_m5(
        &k,
        "C0FFEE00-0000-0000-0000-000000000000",
        good.verifying_key().to_bytes(),
        &good,
    );
    assert!(matches!(
        server.handle(1, &m5, &ctx(&accessory), now(), &mut rng),
        SetupOutcome::Paired { .. }
    ));

    // Tampered ciphertext: State=6, Authentication.
    let (mut server, k) = up_to_m5(&mut rng, &accessory);
    let mut m5 = forged_m5(&k, "X", good.verifying_key().to_bytes(), &good);
    let last = m5.len() - 1;
    m5[last] ^= 1;
    let r = reply(server.handle(1, &m5, &ctx(&accessory), now(), &mut rng));
    assert_eq!(state_error(&r), (6, Some(PairingError::AUTHENTICATION)));
}

fn verify_m2(
    server: &mut PairVerify,
    client: &mut VerifyClient,
    accessory: &AccessoryIdentity,
    lookup: &dyn Fn(&str) -> Option<Pairing>,
    rng: &mut StdRng,
) -> Vec<u8> {
    match server.handle(&client.m1().unwrap(), accessory, lookup, rng) {
        VerifyOutcome::Reply(r) => client.handle_m2(&r).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn verify_reply(o: VerifyOutcome) -> Vec<u8> {
    match o {
        VerifyOutcome::Reply(r) => r,
        VerifyOutcome::Verified { .. } => panic!("unexpectedly verified"),
    }
}

#[test]
fn pair_verify_rejects_unknown_controller_and_bad_signature() {
    let mut rng = rng();
    let s = pair(&mut rng);

    // Unknown controller.
    let nobody = |_: &str| None;
    let mut server = PairVerify::new();
    let mut client = VerifyClient::new(s.controller.clone(), s.accessory_pairing.clone(), &mut rng);
    let m3 = verify_m2(&mut server, &mut client, &s.accessory, &nobody, &mut rng);
    let r = verify_reply(server.handle(&m3, &s.accessory, &nobody, &mut rng));
    assert_eq!(state_error(&r), (4, Some(PairingError::AUTHENTICATION)));
    assert!(matches!(
        client.handle_m4(&r),
        Err(ControllerError::Accessory { state: 4, .. })
    ));

    // Known id, but signed with a different key.
    let impostor = ControllerIdentity {
        pairing_id: s.controller.pairing_id.clone(),
        signing_key: SigningKey::generate(&mut rng),
    };
    let stored = s.pairing.clone();
    let lookup = move |id: &str| (id == stored.controller_id).then(|| stored.clone());
    let mut server = PairVerify::new();
    let mut client = VerifyClient::new(impostor, s.accessory_pairing.clone(), &mut rng);
    let m3 = verify_m2(&mut server, &mut client, &s.accessory, &lookup, &mut rng);
    let r = verify_reply(server.handle(&m3, &s.accessory, &lookup, &mut rng));
    assert_eq!(state_error(&r), (4, Some(PairingError::AUTHENTICATION)));

    // Tampered M3.
    let mut server = PairVerify::new();
    let mut client = VerifyClient::new(s.controller.clone(), s.accessory_pairing.clone(), &mut rng);
    let mut m3 = verify_m2(&mut server, &mut client, &s.accessory, &lookup, &mut rng);
    let last = m3.len() - 1;
    m3[last] ^= 0x80;
    let r = verify_reply(server.handle(&m3, &s.accessory, &lookup, &mut rng));
    assert_eq!(state_error(&r), (4, Some(PairingError::AUTHENTICATION)));

    // M3 before M1, and a low-order X25519 point in M1.
    let mut server = PairVerify::new();
    let r = verify_reply(server.handle(&m3, &s.accessory, &lookup, &mut rng));
    assert_eq!(state_error(&r), (4, Some(PairingError::UNKNOWN)));
    let mut m1 = Tlv8::new();
    m1.push_u8(TlvType::STATE, 1)
        .push(TlvType::PUBLIC_KEY, &[0; 32]);
    let r = verify_reply(server.handle(&m1.encode(), &s.accessory, &lookup, &mut rng));
    assert_eq!(state_error(&r), (2, Some(PairingError::AUTHENTICATION)));
}

#[test]
fn controller_rejects_a_foreign_accessory() {
    let mut rng = rng();
    let s = pair(&mut rng);
    let stranger = AccessoryIdentity {
        pairing_id: s.accessory.pairing_id.clone(),
        signing_key: SigningKey::generate(&mut rng),
    };
    let stored = s.pairing.clone();
    let lookup = move |id: &str| (id == stored.controller_id).then(|| stored.clone());
    let mut server = PairVerify::new();
    let mut client = VerifyClient::new(s.controller.clone(), s.accessory_pairing.clone(), &mut rng);
    let m2 = verify_reply(server.handle(&client.m1().unwrap(), &stranger, &lookup, &mut rng));
    assert_eq!(client.handle_m2(&m2), Err(ControllerError::BadSignature));
}

#[test]
fn debug_output_hides_secrets() {
    let mut rng = rng();
    let id = AccessoryIdentity::generate(&mut rng);
    let secret_hex: String = id
        .signing_key
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dbg = format!("{id:?}");
    assert!(dbg.contains(&id.pairing_id));
    assert!(!dbg.contains(&secret_hex), "{dbg}");
    let ctl = ControllerIdentity::generate(&mut rng);
    let secret_hex: String = ctl
        .signing_key
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!format!("{ctl:?}").contains(&secret_hex));
    assert_eq!(
        format!("{:?}", SharedSecret::from_bytes([0xAB; 32])),
        "SharedSecret(..)"
    );
    assert_eq!(id.pairing_id.len(), 17);
    assert!(id.pairing_id.split(':').all(|p| {
        p.len() == 2
            && p.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
    }));
    assert_eq!(ctl.pairing_id.len(), 36);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Arbitrary bodies in every pair-setup state produce a decodable error reply or a
    /// normal reply, never a panic.
    #[test]
    fn pair_setup_never_panics(body in prop::collection::vec(any::<u8>(), 0..600), step in 0u8..3) {
        let mut rng = rng();
        let accessory = AccessoryIdentity::generate(&mut rng);
        let mut server = PairSetup::new();
        let mut client = SetupClient::new(ControllerIdentity::generate(&mut rng), CODE);
        if step >= 1 {
            let m2 = reply(server.handle(1, &client.m1(), &ctx(&accessory), now(), &mut rng));
            if step >= 2 {
                let m3 = client.handle_m2(&m2, &mut rng).unwrap();
                let _ = server.handle(1, &m3, &ctx(&accessory), now(), &mut rng);
            }
        }
        let out = server.handle(1, &body, &ctx(&accessory), now(), &mut rng);
        let bytes = match out {
            SetupOutcome::Reply(r) | SetupOutcome::WrongCode(r) => r,
            SetupOutcome::Paired { .. } => panic!("random bytes paired"),
        };
        prop_assert!(Tlv8::decode(&bytes).unwrap().get(TlvType::STATE).is_some());
    }

    #[test]
    fn pair_verify_never_panics(body in prop::collection::vec(any::<u8>(), 0..300), started in any::<bool>()) {
        let mut rng = rng();
        let accessory = AccessoryIdentity::generate(&mut rng);
        let mut server = PairVerify::new();
        let lookup = |_: &str| None;
        if started {
            let mut m1 = Tlv8::new();
            m1.push_u8(TlvType::STATE, 1).push(TlvType::PUBLIC_KEY, &[9; 32]);
            let _ = server.handle(&m1.encode(), &accessory, &lookup, &mut rng);
        }
        let r = verify_reply(server.handle(&body, &accessory, &lookup, &mut rng));
        prop_assert!(Tlv8::decode(&r).unwrap().get(TlvType::STATE).is_some());
    }
}
