//! Wrong setup codes: the back-off between attempts, the persisted count and MaxTries, a
//! store that cannot save the count, and `clear_failed_attempts` (what `hksv-bridge reset`
//! runs).
#![allow(clippy::indexing_slicing, clippy::unwrap_used)]

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hap_server::core::{
    CATEGORY_IP_CAMERA, FREE_ATTEMPTS, MAX_ATTEMPT_BACKOFF, attempt_backoff, clear_failed_attempts,
};
use hap_server::pairing::MAX_FAILED_ATTEMPTS;
use hap_server::pairing::controller::{ControllerIdentity, SetupClient};
use hap_server::setup::SetupCode;
use hap_server::store::{MemoryStore, Store};
use hap_server::{Accessory, Characteristic, Core, CoreConfig, Format, HapType, Perms, Service};
use hap_tlv::{PairingError, Tlv8, TlvType};

const CODE: &str = "518-08-582";
const WRONG: &str = "518-08-583";

/// A store whose saves can be made to fail (a full disk).
#[derive(Clone, Default)]
struct Disk {
    inner: MemoryStore,
    full: Arc<AtomicBool>,
    saves: Arc<Mutex<u32>>,
}

impl Store for Disk {
    fn load(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        self.inner.load(name)
    }

    fn save(&self, name: &str, data: &[u8]) -> io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
        }
        *self.saves.lock().unwrap() += 1;
        self.inner.save(name, data)
    }
}

fn open(store: &Disk) -> Core {
    let acc = Accessory::new(1).service(Service::new(HapType::apple(0x3E)).characteristic(
        Characteristic::new(HapType::apple(0x14), Format::Bool, Perms::PW),
    ));
    Core::open(
        CoreConfig {
            name: "Attempts".into(),
            model: "test".into(),
            category: CATEGORY_IP_CAMERA,
            setup_code: Some(SetupCode::parse(CODE).unwrap()),
            firmware_revision: "1.0.0".into(),
        },
        Arc::new(store.clone()),
        vec![acc],
        &mut rand::rng(),
    )
    .unwrap()
}

fn error_of(reply: &[u8]) -> Option<u8> {
    Tlv8::decode(reply)
        .unwrap()
        .get(TlvType::ERROR)
        .and_then(|e| e.first().copied())
}

/// One pair-setup with `code` at `now`, through M6: the first error (M2, M4 or M6).
fn attempt(core: &mut Core, code: &str, now: Instant) -> Option<u8> {
    let conn = core.open_connection();
    let out = (|| {
        let mut client = SetupClient::new(ControllerIdentity::generate(&mut rand::rng()), code);
        let m2 = core.pair_setup(conn, &client.m1(), now, &mut rand::rng());
        if let Some(e) = error_of(&m2) {
            return Some(e);
        }
        let m3 = client.handle_m2(&m2, &mut rand::rng()).unwrap();
        let m4 = core.pair_setup(conn, &m3, now, &mut rand::rng());
        if let Some(e) = error_of(&m4) {
            return Some(e);
        }
        let m5 = client.handle_m4(&m4).unwrap();
        let m6 = core.pair_setup(conn, &m5, now, &mut rand::rng());
        if let Some(e) = error_of(&m6) {
            return Some(e);
        }
        client.handle_m6(&m6).unwrap();
        None
    })();
    core.close_connection(conn);
    out
}

const AUTH: u8 = PairingError::AUTHENTICATION.0;
const BUSY: u8 = PairingError::BUSY.0;

#[test]
fn the_back_off_grows_to_an_hour_so_maxtries_takes_days_not_seconds() {
    for n in 0..=FREE_ATTEMPTS {
        assert_eq!(attempt_backoff(n), None, "{n}");
    }
    assert_eq!(
        attempt_backoff(FREE_ATTEMPTS + 1),
        Some(Duration::from_secs(1))
    );
    assert_eq!(
        attempt_backoff(FREE_ATTEMPTS + 2),
        Some(Duration::from_secs(2))
    );
    assert_eq!(attempt_backoff(200), Some(MAX_ATTEMPT_BACKOFF));
    let total: Duration = (1..MAX_FAILED_ATTEMPTS).filter_map(attempt_backoff).sum();
    assert!(total > Duration::from_secs(48 * 3600), "{total:?}");
}

#[test]
fn wrong_codes_back_off_then_maxtries_and_clear_failed_attempts_reopens() {
    let disk = Disk::default();
    let mut core = open(&disk);
    let t0 = Instant::now();
    for _ in 0..=FREE_ATTEMPTS {
        assert_eq!(attempt(&mut core, WRONG, t0), Some(AUTH));
    }
    // The next attempt within a second is Busy (no SRP work, no count).
    assert_eq!(attempt(&mut core, WRONG, t0), Some(BUSY));
    assert_eq!(core.failed_attempts(), FREE_ATTEMPTS + 1);
    // After the back-off the right code pairs... but first one more wrong one doubles it.
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(attempt(&mut core, WRONG, t1), Some(AUTH));
    assert_eq!(
        attempt(&mut core, CODE, t1 + Duration::from_secs(1)),
        Some(BUSY)
    );
    // The count is persisted: a restart sees it.
    drop(core);
    let mut core = open(&disk);
    assert_eq!(core.failed_attempts(), FREE_ATTEMPTS + 2);

    // Reach MaxTries (time moves past each back-off).
    let mut now = t1;
    while core.failed_attempts() < MAX_FAILED_ATTEMPTS {
        now += MAX_ATTEMPT_BACKOFF;
        assert_eq!(attempt(&mut core, WRONG, now), Some(AUTH));
    }
    now += MAX_ATTEMPT_BACKOFF;
    assert_eq!(
        attempt(&mut core, CODE, now),
        Some(PairingError::MAX_TRIES.0)
    );
    drop(core);

    // `hksv-bridge reset` clears the count; identity and code stay.
    assert_eq!(clear_failed_attempts(&disk).unwrap(), MAX_FAILED_ATTEMPTS);
    assert_eq!(clear_failed_attempts(&disk).unwrap(), 0);
    let mut core = open(&disk);
    assert_eq!(core.failed_attempts(), 0);
    assert_eq!(attempt(&mut core, CODE, now), None, "pairs with the code");
    assert!(core.is_paired());
}

#[test]
fn a_count_that_cannot_be_saved_pauses_pair_setup_until_it_can() {
    let disk = Disk::default();
    let mut core = open(&disk);
    let now = Instant::now();
    disk.full.store(true, Ordering::SeqCst);
    assert_eq!(attempt(&mut core, WRONG, now), Some(AUTH));
    // Not saved: no further guesses (a restart would forget them).
    assert_eq!(attempt(&mut core, CODE, now), Some(BUSY));
    assert_eq!(attempt(&mut core, CODE, now), Some(BUSY));
    // Space again: the count is written first, then pair-setup runs.
    disk.full.store(false, Ordering::SeqCst);
    assert_eq!(attempt(&mut core, CODE, now), None);
    drop(core);
    assert!(open(&disk).is_paired());
}

#[test]
fn add_and_remove_pairing_change_nothing_when_the_write_fails() {
    let disk = Disk::default();
    let mut core = open(&disk);
    assert_eq!(attempt(&mut core, CODE, Instant::now()), None);
    let admin = core.pairings()[0].controller_id.clone();
    let user = ControllerIdentity::generate(&mut rand::rng());

    disk.full.store(true, Ordering::SeqCst);
    assert!(
        core.add_controller_pairing(&user.pairing_id, user.public_key(), true)
            .is_err()
    );
    assert_eq!(core.pairings().len(), 1, "a refused admin is not in memory");
    assert!(core.find_pairing(&user.pairing_id).is_none());
    disk.full.store(false, Ordering::SeqCst);
    core.add_controller_pairing(&user.pairing_id, user.public_key(), false)
        .unwrap();

    disk.full.store(true, Ordering::SeqCst);
    assert!(core.remove_controller_pairing(&user.pairing_id).is_err());
    assert!(
        core.find_pairing(&user.pairing_id).is_some(),
        "memory and disk still agree"
    );
    disk.full.store(false, Ordering::SeqCst);
    drop(core);
    let mut core = open(&disk);
    assert!(core.find_pairing(&user.pairing_id).is_some());
    assert!(core.find_pairing(&admin).is_some());

    // Identifiers longer than 64 bytes are refused (HAP uses 36-character UUIDs).
    let long = "A".repeat(65);
    assert!(
        core.add_controller_pairing(&long, user.public_key(), false)
            .is_err()
    );
    core.remove_controller_pairing(&user.pairing_id).unwrap();
    drop(core);
    assert!(open(&disk).find_pairing(&user.pairing_id).is_none());
}
