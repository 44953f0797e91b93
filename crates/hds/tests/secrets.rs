//! Session keys never reach `Debug` output (architecture.md: secrets never reach logs).
#![allow(missing_docs, clippy::indexing_slicing)]

use std::time::Instant;

use hds::controller::Controller;
use hds::{Connection, PreparedSession, Role, SessionKeys};

#[test]
fn debug_output_never_contains_key_bytes() {
    let keys = SessionKeys::derive(&[0x42; 32], &[0x01; 32], &[0x02; 32]);
    let secrets = [
        hex::encode(keys.accessory_to_controller()),
        hex::encode(keys.controller_to_accessory()),
    ];
    let now = Instant::now();
    let dumps = [
        format!("{keys:?}"),
        format!("{:?}", PreparedSession::from_keys(keys.clone(), now)),
        format!("{:?}", keys.sealer(Role::Accessory)),
        format!("{:?}", keys.opener(Role::Controller)),
        format!("{:?}", Connection::with_keys(&keys, now)),
        format!("{:?}", Controller::new(&keys)),
    ];
    for d in &dumps {
        let lower = d.to_lowercase();
        for s in &secrets {
            assert!(!lower.contains(s), "key hex in {d}");
        }
        // Byte-list form, as a derived Debug of [u8; 32] would print it.
        let first = keys.accessory_to_controller()[..4]
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        assert!(!d.contains(&first), "key bytes in {d}");
    }
}
