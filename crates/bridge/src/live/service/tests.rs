//! The 118/117 state machine of one RTP service: real sockets are bound on loopback, nothing
//! is sent.
#![allow(clippy::indexing_slicing, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hap_server::HapStatus;
use hap_tlv::hksv::StreamingStatus;
use hap_tlv::rtp::{
    SessionCommand, SessionId, SetupEndpointsRequest, SetupEndpointsResponse, SetupEndpointsStatus,
    SrtpParameters, SrtpSuite,
};

use super::*;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn service() -> StreamService {
    StreamService::new(0, LiveConfig::default(), LOOPBACK)
}

fn caller(conn: u64) -> Caller {
    Caller {
        connection_id: conn,
        local_addr: Some(SocketAddr::new(LOOPBACK, 51_826)),
    }
}

fn srtp() -> SrtpParameters {
    SrtpParameters {
        suite: SrtpSuite::AesCm128HmacSha1_80,
        master_key: vec![1; 16],
        master_salt: vec![2; 14],
    }
}

fn setup(id: u8) -> Vec<u8> {
    controller::live::setup_endpoints_request([id; 16], 50_000, &[1; 16], &[2; 14])
}

fn select(id: u8, command: SessionCommand, mtu: Option<u16>) -> Vec<u8> {
    controller::live::selected_stream_request([id; 16], command, mtu)
}

#[test]
fn setup_binds_loopback_sockets_echoes_keys_and_answers_on_the_next_read() {
    let s = service();
    let now = Instant::now();
    assert_eq!(s.status(), StreamingStatus::Available);
    let before = SetupEndpointsResponse::decode(&s.read_setup_endpoints(true)).unwrap();
    assert_eq!(before.status, SetupEndpointsStatus::Error);
    assert_eq!(s.setup_endpoints(now, caller(1), &setup(7), true), Ok(true));
    assert_eq!(s.status(), StreamingStatus::InUse);
    let r = SetupEndpointsResponse::decode(&s.read_setup_endpoints(true)).unwrap();
    assert_eq!(r.status, SetupEndpointsStatus::Success);
    assert_eq!(r.session_id, Some(SessionId([7; 16])));
    let addr = r.accessory_address.unwrap();
    assert_eq!(addr.address, "127.0.0.1");
    assert_eq!(addr.ip_version, IpVersion::V4);
    assert_ne!(addr.video_rtp_port, 0);
    assert_ne!(addr.video_rtp_port, addr.audio_rtp_port);
    assert_eq!(r.video_srtp, Some(srtp()));
    let ssrc = r.video_ssrc.unwrap();
    assert!(ssrc > 0 && ssrc < 1 << 31);
    // The port is really ours: binding it again fails.
    assert!(std::net::UdpSocket::bind(("127.0.0.1", addr.video_rtp_port)).is_err());
    // Disabled: the read says error, as HAP-NodeJS answers.
    let off = SetupEndpointsResponse::decode(&s.read_setup_endpoints(false)).unwrap();
    assert_eq!(off.status, SetupEndpointsStatus::Error);
}

#[test]
fn a_second_setup_is_busy_and_does_not_disturb_the_first() {
    let s = service();
    let now = Instant::now();
    s.setup_endpoints(now, caller(1), &setup(1), true).unwrap();
    let first = s.read_setup_endpoints(true);
    assert_eq!(
        s.setup_endpoints(now, caller(2), &setup(2), true),
        Ok(false)
    );
    let busy = SetupEndpointsResponse::decode(&s.read_setup_endpoints(true)).unwrap();
    assert_eq!(busy.status, SetupEndpointsStatus::Busy);
    assert_eq!(busy.session_id, Some(SessionId([2; 16])));
    // The first session can still start.
    let (order, _) = s
        .select(
            now,
            caller(1),
            &select(1, SessionCommand::Start, None),
            true,
        )
        .unwrap();
    let order = order.unwrap();
    assert_eq!(order.session_id, SessionId([1; 16]));
    let first = SetupEndpointsResponse::decode(&first).unwrap();
    assert_eq!(order.params.ssrc, first.video_ssrc.unwrap());
    assert_eq!(
        order.video_socket.local_addr().unwrap().port(),
        first.accessory_address.unwrap().video_rtp_port
    );
}

#[test]
fn start_gives_the_negotiated_parameters_and_end_stops_the_stream() {
    let s = service();
    let now = Instant::now();
    s.setup_endpoints(now, caller(1), &setup(3), true).unwrap();
    let (order, _) = s
        .select(
            now,
            caller(1),
            &select(3, SessionCommand::Start, Some(1200)),
            true,
        )
        .unwrap();
    let order = order.unwrap();
    assert_eq!(order.params.payload_type, 99);
    assert_eq!(order.params.mtu, 1200);
    assert_eq!(order.params.rtcp_interval, Duration::from_millis(500));
    assert_eq!(order.destination, "127.0.0.1:50000".parse().unwrap());
    assert_eq!(order.requested, Some((1280, 720, 30)));
    assert!(s.is_streaming());
    assert_eq!(s.status(), StreamingStatus::InUse);
    assert_eq!(*order.stop.borrow(), None);
    // The read returns the accepted START.
    assert_eq!(
        s.read_selected(true),
        select(3, SessionCommand::Start, Some(1200))
    );
    let (none, changed) = s
        .select(now, caller(1), &select(3, SessionCommand::End, None), true)
        .unwrap();
    assert!(none.is_none() && changed);
    assert_eq!(*order.stop.borrow(), Some(LiveEnd::Stopped));
    assert_eq!(s.status(), StreamingStatus::Available);
    // The driver's late report of the end changes nothing more.
    assert!(!s.stream_ended(order.generation));
}

#[test]
fn default_mtu_and_stream_end_reported_by_the_driver() {
    let s = service();
    let now = Instant::now();
    s.setup_endpoints(now, caller(1), &setup(3), true).unwrap();
    let (order, _) = s
        .select(
            now,
            caller(1),
            &select(3, SessionCommand::Start, None),
            true,
        )
        .unwrap();
    let order = order.unwrap();
    assert_eq!(order.params.mtu, 1378);
    assert!(s.stream_ended(order.generation));
    assert_eq!(s.status(), StreamingStatus::Available);
}

#[test]
fn bad_117_and_118_writes_are_errors_without_state_change() {
    let s = service();
    let now = Instant::now();
    let bad = HapStatus::INVALID_VALUE_IN_REQUEST;
    // Truncated, garbage, wrong key length, AES-256, unusable addresses.
    let full = setup(1);
    assert_eq!(
        s.setup_endpoints(now, caller(1), &full[..full.len() - 3], true),
        Err(bad)
    );
    assert_eq!(
        s.setup_endpoints(now, caller(1), &[0xff, 0x10, 0], true),
        Err(bad)
    );
    let mut req = SetupEndpointsRequest::decode(&setup(1)).unwrap();
    req.video_srtp.master_key.pop();
    assert!(
        SetupEndpointsRequest::decode(&req.encode()).is_err()
            || s.setup_endpoints(now, caller(1), &req.encode(), true) == Err(bad)
    );
    let mut req = SetupEndpointsRequest::decode(&setup(1)).unwrap();
    req.video_srtp.suite = SrtpSuite::Aes256CmHmacSha1_80;
    req.video_srtp.master_key = vec![1; 32];
    assert_eq!(
        s.setup_endpoints(now, caller(1), &req.encode(), true),
        Err(bad)
    );
    for address in ["not an ip", "0.0.0.0", "::1", "224.0.0.1"] {
        let mut req = SetupEndpointsRequest::decode(&setup(1)).unwrap();
        req.controller_address.address = address.into();
        assert_eq!(
            s.setup_endpoints(now, caller(1), &req.encode(), true),
            Err(bad),
            "{address}"
        );
    }
    assert_eq!(s.status(), StreamingStatus::Available);
    // 117 before any 118, for another session, truncated, suspend/resume.
    assert_eq!(
        s.select(
            now,
            caller(1),
            &select(1, SessionCommand::Start, None),
            true
        )
        .unwrap_err(),
        bad
    );
    s.setup_endpoints(now, caller(1), &setup(1), true).unwrap();
    assert_eq!(
        s.select(
            now,
            caller(1),
            &select(9, SessionCommand::Start, None),
            true
        )
        .unwrap_err(),
        bad
    );
    let start = select(1, SessionCommand::Start, None);
    assert_eq!(
        s.select(now, caller(1), &start[..10], true).unwrap_err(),
        bad
    );
    for c in [SessionCommand::Suspend, SessionCommand::Resume] {
        assert_eq!(
            s.select(now, caller(1), &select(1, c, None), true)
                .unwrap_err(),
            bad
        );
    }
    assert!(!s.is_streaming());
    assert_eq!(s.status(), StreamingStatus::InUse, "still prepared");
    // Reconfigure is accepted.
    assert!(
        s.select(
            now,
            caller(1),
            &select(1, SessionCommand::Reconfigure, None),
            true
        )
        .is_ok()
    );
}

#[test]
fn disabled_streaming_refuses_writes_and_reads_suspend() {
    let s = service();
    let now = Instant::now();
    let no = HapStatus::NOT_ALLOWED_IN_CURRENT_STATE;
    assert_eq!(s.setup_endpoints(now, caller(1), &setup(1), false), Err(no));
    assert_eq!(
        s.select(
            now,
            caller(1),
            &select(1, SessionCommand::Start, None),
            false
        )
        .unwrap_err(),
        no
    );
    assert_eq!(s.read_selected(false), vec![0x01, 0x03, 0x02, 0x01, 0x02]);
    assert_eq!(s.status(), StreamingStatus::Available);
}

#[test]
fn suite_none_is_accepted_with_empty_keys() {
    let s = service();
    let mut req = SetupEndpointsRequest::decode(&setup(5)).unwrap();
    for p in [&mut req.video_srtp, &mut req.audio_srtp] {
        p.suite = SrtpSuite::None;
        p.master_key.clear();
        p.master_salt.clear();
    }
    let now = Instant::now();
    assert_eq!(
        s.setup_endpoints(now, caller(1), &req.encode(), true),
        Ok(true)
    );
    let (order, _) = s
        .select(
            now,
            caller(1),
            &select(5, SessionCommand::Start, None),
            true,
        )
        .unwrap();
    assert_eq!(order.unwrap().params.suite, rtp::srtp::Suite::Null);
}

#[test]
fn prepared_sessions_expire_and_closed_connections_free_the_service() {
    let s = service();
    let now = Instant::now();
    s.setup_endpoints(now, caller(1), &setup(1), true).unwrap();
    assert!(!s.expire(now + Duration::from_secs(29)));
    assert!(s.expire(now + Duration::from_secs(30)));
    assert_eq!(s.status(), StreamingStatus::Available);

    s.setup_endpoints(now, caller(4), &setup(2), true).unwrap();
    assert!(!s.connection_closed(5), "another connection");
    assert!(s.connection_closed(4));
    assert_eq!(s.status(), StreamingStatus::Available);

    s.setup_endpoints(now, caller(4), &setup(3), true).unwrap();
    let (order, _) = s
        .select(
            now,
            caller(4),
            &select(3, SessionCommand::Start, None),
            true,
        )
        .unwrap();
    let order = order.unwrap();
    assert!(s.connection_closed(4));
    assert_eq!(*order.stop.borrow(), Some(LiveEnd::HapSessionClosed));
    assert_eq!(s.status(), StreamingStatus::Available);

    s.setup_endpoints(now, caller(6), &setup(4), true).unwrap();
    assert!(s.stop(LiveEnd::Disabled));
    assert!(!s.stop(LiveEnd::Disabled));
}

#[test]
fn small_pictures_and_long_audio_packets_want_the_sub_stream() {
    // The Apple Watch (320x240), small tiles, and a remote viewer's 60 ms audio packets.
    assert!(sub_stream_wanted(Some((320, 240, 15)), Some(20)));
    assert!(sub_stream_wanted(Some((480, 270, 30)), None));
    assert!(sub_stream_wanted(Some((1280, 720, 30)), Some(60)));
    assert!(!sub_stream_wanted(Some((640, 360, 30)), Some(30)));
    assert!(!sub_stream_wanted(Some((1920, 1080, 30)), None));
    assert!(!sub_stream_wanted(None, None));
}
