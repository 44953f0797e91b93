//! The async HDS client against the sans-IO accessory `hds::Connection` on loopback TCP,
//! sending the real fixture recording: the client reassembles it, acks endOfStream, and the
//! checker passes; an accessory with recording off refuses the open.
#![allow(clippy::indexing_slicing)] // tests: a panic is a failed check

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use controller::checker;
use controller::hds_client::{HdsClient, RecordingEnd, StopWhen};
use hds::{CameraState, Connection, Event, Reason, SegmentKind, SessionKeys};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/hksv-example/fragments")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A one-connection accessory; returns whether the hub acked the end of stream.
async fn accessory(listener: TcpListener, keys: SessionKeys, recording_active: bool) -> bool {
    let (mut sock, _) = listener.accept().await.expect("accept");
    let mut conn = Connection::with_keys(&keys, Instant::now());
    conn.set_camera_state(CameraState {
        recording_active,
        camera_active: true,
        configuration_selected: true,
        recording_elsewhere: false,
    });
    let segments: Vec<(SegmentKind, Vec<u8>)> = [
        (SegmentKind::MediaInitialization, "mediaInitialization.mp4"),
        (SegmentKind::MediaFragment, "sequence2.mp4"),
        (SegmentKind::MediaFragment, "sequence3.mp4"),
        (SegmentKind::MediaFragment, "sequence4.mp4"),
    ]
    .into_iter()
    .map(|(k, n)| (k, fixture(n)))
    .collect();
    let mut buf = BytesMut::new();
    let mut tmp = vec![0u8; 65536];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut tmp))
            .await
            .expect("hub went silent")
            .expect("read");
        if n == 0 {
            return false;
        }
        buf.extend_from_slice(&tmp[..n]);
        conn.handle_incoming(Instant::now(), &mut buf)
            .expect("hub input");
        while let Some(ev) = conn.poll_event() {
            match ev {
                Event::StreamOpened { stream_id } => {
                    let last = segments.len() - 1;
                    for (i, (kind, data)) in segments.iter().enumerate() {
                        conn.send_segment(
                            Instant::now(),
                            stream_id,
                            *kind,
                            Bytes::from(data.clone()),
                            i == last,
                        )
                        .expect("send");
                    }
                }
                Event::AckReceived { .. } => return true,
                Event::OpenRejected { .. } | Event::HelloDone => {}
                other => println!("accessory event: {other:?}"),
            }
        }
        let mut out = Vec::new();
        while conn.poll_transmit(&mut out) {}
        sock.write_all(&out).await.expect("write");
    }
}

async fn start(recording_active: bool) -> (SocketAddr, SessionKeys, tokio::task::JoinHandle<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let keys = SessionKeys::derive(&[3; 32], &[1; 32], &[2; 32]);
    let task = tokio::spawn(accessory(listener, keys.clone(), recording_active));
    (addr, keys, task)
}

#[tokio::test]
async fn receives_the_fixture_recording_and_acks() {
    let (addr, keys, task) = start(true).await;
    let mut hub = HdsClient::connect(addr, &keys, Duration::from_secs(5))
        .await
        .expect("hello");
    let rec = hub
        .record(
            7,
            StopWhen {
                max_fragments: 10,
                ..StopWhen::default()
            },
        )
        .await;
    assert_eq!(rec.end, RecordingEnd::EndOfStream);
    assert_eq!(rec.segments.len(), 4);
    assert!(rec.open_to_first_chunk.is_some());
    let report = checker::check(&rec, 4000);
    assert!(report.passed(), "{report}");
    assert!(task.await.expect("accessory"), "accessory saw the ack");
}

#[tokio::test]
async fn open_with_recording_off_is_rejected_not_allowed() {
    let (addr, keys, task) = start(false).await;
    let mut hub = HdsClient::connect(addr, &keys, Duration::from_secs(5))
        .await
        .expect("hello");
    let rec = hub.record(1, StopWhen::default()).await;
    assert!(
        matches!(
            rec.end,
            RecordingEnd::Rejected {
                reason: Reason::NOT_ALLOWED,
                ..
            }
        ),
        "{:?}",
        rec.end
    );
    assert!(rec.chunks.is_empty());
    drop(hub);
    assert!(!task.await.expect("accessory"));
}
