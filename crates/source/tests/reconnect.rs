//! The reconnect logic on the simulated camera, on tokio's paused clock: backoff growth and
//! reset, the stall watchdog, fatal errors, and timestamps that stay continuous.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, missing_docs)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use recorder::MediaUnit;
use recorder::{H264Framing, VideoAccessUnit};
use source::testing::{SimConnect, SimConnector, SimStep};
use source::{CameraSource, Error, ReconnectPolicy, ReconnectingSource, SourceEvent, StreamParams};
use tokio::time::Instant;

fn frame(pts_90k: i64) -> SimStep {
    SimStep::Unit(
        Duration::from_millis(100),
        MediaUnit::Video(VideoAccessUnit {
            pts_90k,
            dts_90k: None,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x41, 0x9a]),
            framing: H264Framing::AnnexB,
        }),
    )
}

fn policy() -> ReconnectPolicy {
    ReconnectPolicy {
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(8),
        stable_after: Duration::from_secs(5),
        stall_timeout: Duration::from_secs(3),
        max_consecutive_failures: None,
    }
}

fn refused() -> SimConnect {
    SimConnect::Fail(Error::Connect {
        camera: "sim:".into(),
        detail: "refused".into(),
    })
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_to_the_cap_between_attempts() {
    let mut src = ReconnectingSource::new(SimConnector::new(vec![refused(); 6]), policy());
    let mut delays = Vec::new();
    let mut starts = Vec::new();
    let t0 = Instant::now();
    for _ in 0..6 {
        let ev = src.next_event().await.unwrap();
        starts.push((Instant::now() - t0).as_secs());
        let SourceEvent::Reconnecting { delay, .. } = ev else {
            panic!("{ev:?}")
        };
        delays.push(delay.as_secs());
    }
    assert_eq!(delays, [1, 2, 4, 8, 8, 8]);
    // Each failure is reported when the attempt after the previous delay fails.
    assert_eq!(starts, [0, 1, 3, 7, 15, 23]);
}

#[tokio::test(start_paused = true)]
async fn watchdog_drops_a_silent_session_and_a_hung_connect() {
    let script = vec![
        SimConnect::Session(StreamParams::default(), vec![frame(0), SimStep::Hang]),
        SimConnect::Hang,
    ];
    let mut src = ReconnectingSource::new(SimConnector::new(script), policy());
    assert!(matches!(
        src.next_event().await.unwrap(),
        SourceEvent::Connected { attempt: 1, .. }
    ));
    assert!(matches!(
        src.next_event().await.unwrap(),
        SourceEvent::Unit(_)
    ));
    let t = Instant::now();
    let ev = src.next_event().await.unwrap();
    assert!(
        matches!(
            ev,
            SourceEvent::Reconnecting {
                error: Error::Stalled {
                    waited_ms: 3000,
                    ..
                },
                failures: 1,
                ..
            }
        ),
        "{ev:?}"
    );
    assert_eq!(Instant::now() - t, Duration::from_secs(3));
    let ev = src.next_event().await.unwrap();
    assert!(
        matches!(
            ev,
            SourceEvent::Reconnecting {
                error: Error::Stalled { .. },
                failures: 2,
                ..
            }
        ),
        "the hung connect is timed out too: {ev:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn fatal_errors_end_the_source() {
    let auth = Error::Auth {
        camera: "sim:".into(),
        status: 401,
    };
    let mut src = ReconnectingSource::new(
        SimConnector::new(vec![SimConnect::Fail(auth.clone())]),
        policy(),
    );
    assert_eq!(src.next_event().await.unwrap_err(), auth);
    assert!(src.next_event().await.is_err(), "stays finished");
}

#[tokio::test(start_paused = true)]
async fn attempt_limit_gives_up() {
    let sim = SimConnector::new(vec![refused(); 5]);
    let counter = sim.connect_counter();
    let mut src = ReconnectingSource::new(
        sim,
        ReconnectPolicy {
            max_consecutive_failures: Some(3),
            ..policy()
        },
    );
    assert!(matches!(
        src.next_event().await.unwrap(),
        SourceEvent::Reconnecting { failures: 1, .. }
    ));
    assert!(matches!(
        src.next_event().await.unwrap(),
        SourceEvent::Reconnecting { failures: 2, .. }
    ));
    assert!(matches!(
        src.next_event().await.unwrap_err(),
        Error::Connect { .. }
    ));
    assert_eq!(counter.load(Ordering::Relaxed), 3);
}

#[tokio::test(start_paused = true)]
async fn timestamps_continue_across_a_reconnect_and_a_stable_session_resets_backoff() {
    // Session 1 runs 6 s (stable), then fails; session 2 restarts its clock at 0.
    let mut s1: Vec<SimStep> = (0..60).map(|i| frame(1_000_000 + i * 9000)).collect();
    s1.push(SimStep::Fail(Error::Stream {
        camera: "sim:".into(),
        detail: "reset".into(),
    }));
    let s2: Vec<SimStep> = (0..3).map(|i| frame(i * 9000)).collect();
    let script = vec![
        refused(),
        SimConnect::Session(StreamParams::default(), s1),
        SimConnect::Session(StreamParams::default(), s2),
    ];
    let mut src = ReconnectingSource::new(SimConnector::new(script), policy());
    let mut times = Vec::new();
    let mut delays = Vec::new();
    while times.len() < 63 {
        match src.next_event().await.unwrap() {
            SourceEvent::Unit(MediaUnit::Video(v)) => times.push(v.pts_90k),
            SourceEvent::Reconnecting {
                delay, failures, ..
            } => delays.push((delay, failures)),
            _ => {}
        }
    }
    // Without the reset the second failure would wait 2 s.
    assert_eq!(
        delays,
        [(Duration::from_secs(1), 1), (Duration::from_secs(1), 1)],
        "a stable session resets the failure count"
    );
    assert!(
        times.windows(2).all(|w| w[1] > w[0]),
        "monotonic: {times:?}"
    );
    // The gap after the failure is the wall-clock gap: 1 s backoff + 0.1 s before the frame.
    assert_eq!(times[60] - times[59], 90_000 + 9000);
    assert_eq!(times[61] - times[60], 9000);
}

/// Regression: `check` polls `next_event` with a 1 s progress timeout; each cancelled call
/// used to restart the stall timer, so a silent camera never tripped the watchdog.
#[tokio::test(start_paused = true)]
async fn watchdog_survives_cancelled_next_event_calls() {
    // A connect that never answers (each repeated poll starts it again, as a real one would).
    let mut src = ReconnectingSource::new(SimConnector::new(vec![SimConnect::Hang; 20]), policy());
    let t0 = Instant::now();
    let stalled_after = loop {
        if let Ok(Ok(SourceEvent::Reconnecting {
            error: Error::Stalled { .. },
            ..
        })) = tokio::time::timeout(Duration::from_millis(500), src.next_event()).await
        {
            break Instant::now() - t0;
        }
        assert!(
            Instant::now() - t0 < Duration::from_secs(10),
            "the connect watchdog never fired"
        );
    };
    assert_eq!(stalled_after, Duration::from_secs(3));
    assert_eq!(
        src.attempts(),
        1,
        "cancelled calls do not count as new attempts"
    );

    // A live session: a unit, then silence, polled in 500 ms slices.
    let script = vec![SimConnect::Session(
        StreamParams::default(),
        vec![frame(0), SimStep::Hang],
    )];
    let mut src = ReconnectingSource::new(SimConnector::new(script), policy());
    let t1 = Instant::now();
    let mut unit_at = None;
    let stalled_at = loop {
        match tokio::time::timeout(Duration::from_millis(500), src.next_event()).await {
            Ok(Ok(SourceEvent::Unit(_))) => unit_at = Some(Instant::now() - t1),
            Ok(Ok(SourceEvent::Reconnecting {
                error: Error::Stalled { .. },
                ..
            })) => break Instant::now() - t1,
            _ => {}
        }
        assert!(
            Instant::now() - t1 < Duration::from_secs(10),
            "the session watchdog never fired"
        );
    };
    assert_eq!(unit_at, Some(Duration::from_millis(100)));
    assert_eq!(
        stalled_at,
        Duration::from_millis(3100),
        "3 s after the last unit"
    );
}

/// The watchdog is one timer per connection, re-armed when it fires: a session that delivers
/// for several stall periods is never dropped, and one that then goes silent is dropped one
/// stall period after its last unit.
#[tokio::test(start_paused = true)]
async fn watchdog_rearms_across_stall_periods_of_steady_units() {
    let mut steps: Vec<SimStep> = (0..100).map(frame).collect();
    steps.push(SimStep::Hang);
    let script = vec![SimConnect::Session(StreamParams::default(), steps)];
    let mut src = ReconnectingSource::new(SimConnector::new(script), policy());
    let t0 = Instant::now();
    let (mut units, mut last_unit) = (0, Duration::ZERO);
    let stalled_at = loop {
        match src.next_event().await.unwrap() {
            SourceEvent::Unit(_) => {
                units += 1;
                last_unit = Instant::now() - t0;
            }
            SourceEvent::Reconnecting {
                error: Error::Stalled { .. },
                ..
            } => break Instant::now() - t0,
            SourceEvent::Connected { .. } => {}
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        units, 100,
        "10 s of units (3 stall periods) were all delivered"
    );
    assert_eq!(stalled_at - last_unit, Duration::from_secs(3));
}
