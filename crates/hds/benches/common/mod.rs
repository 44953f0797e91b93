//! Set-up shared by the hds benches.

use std::time::Instant;

use bytes::BytesMut;
use hds::controller::Controller;
use hds::{CameraState, Connection, SessionKeys};

/// An accessory connection after hello with stream 1 open (a hub's `dataSend/open` accepted)
/// and its replies drained: ready for `send_segment`.
pub(crate) fn ready_connection(keys: &SessionKeys) -> Connection {
    let now = Instant::now();
    let mut conn = Connection::with_keys(keys, now);
    conn.set_camera_state(CameraState {
        recording_active: true,
        camera_active: true,
        configuration_selected: true,
        recording_elsewhere: false,
    });
    let mut hub = Controller::new(keys);
    hub.hello();
    hub.open(1);
    let mut wire = Vec::new();
    while hub.poll_transmit(&mut wire) {}
    conn.handle_incoming(now, &mut BytesMut::from(&wire[..]))
        .unwrap();
    let mut sink = Vec::new();
    while conn.poll_transmit(&mut sink) {}
    conn
}
