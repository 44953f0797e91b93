//! Live view end to end on loopback: a camera accessory fed the bundled demo clip in real time,
//! the controller crate playing the iPhone (pair-setup, pair-verify, 118 with a known key, 117
//! START/END), and receivers we did not write: libsrtp (`tests/peers/srtp_viewer.py`, through
//! pylibsrtp) decrypts and checks every packet and answers sender reports as iOS does, and
//! ffprobe decodes what it reassembled. Negative paths: receiver reports stop → the stream ends
//! and StreamingStatus returns to available; END → silence; the HAP session closes → the
//! stream ends; a busy service; malformed 117/118 writes.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bridge::camera::{Camera, CameraOptions};
use bridge::live::LiveConfig;
use controller::{AccessoryDb, CharWrite, HapClient, PairingKeys, pair_setup};
use hap_server::pairing::controller::ControllerIdentity;
use hap_tlv::hksv::StreamingStatus;
use hap_tlv::rtp::{SessionCommand, SessionId, SetupEndpointsResponse, SetupEndpointsStatus};
use motion::MotionHub;
use recorder::{DemoSource, MediaUnit};
use serde_json::{Value as Json, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

const CODE: &str = "518-08-583";
const WAIT: Duration = Duration::from_secs(10);
const KEY: [u8; 16] = [0x11; 16];
const SALT: [u8; 14] = [0x22; 14];
/// Liveness timeout of the camera under test (the default is 30 s).
const SILENCE: Duration = Duration::from_secs(3);

const RTP_SERVICE: &str = "110";
const SETUP_ENDPOINTS: &str = "118";
const SELECTED: &str = "117";
const STREAMING_STATUS: &str = "120";

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
        "pylibsrtp missing at {}: run scripts/test",
        path.display()
    );
    path
}

struct Rig {
    camera: Camera,
    addr: SocketAddr,
    keys: PairingKeys,
    client: HapClient,
    db: AccessoryDb,
    dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
    _tasks: JoinSet<()>,
}

impl Rig {
    /// A camera whose streams end after `silence` without receiver reports.
    async fn new(silence: Duration) -> Self {
        Self::with(silence, false).await
    }

    /// As [`Rig::new`]; with `sub_stream` the camera has a `live_source` that the demo clip
    /// feeds too.
    async fn with(silence: Duration, sub_stream: bool) -> Self {
        Self::with_clip(silence, sub_stream, None).await
    }

    /// As [`Rig::with`], the camera fed `clip` (an MP4) instead of the bundled demo clip.
    async fn with_clip(silence: Duration, sub_stream: bool, clip: Option<bytes::Bytes>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let hub = MotionHub::new([("Cam", motion::DebounceConfig::default())]).unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let camera = Camera::start(
            CameraOptions {
                live: LiveConfig {
                    liveness_timeout: silence,
                    ..LiveConfig::default()
                },
                live_source: sub_stream.then_some(bridge::camera::MediaInput::External),
                // Live audio for a clip of our own; the bundled clip's near-silence is not
                // worth the viewers' sockets in the video tests.
                audio: clip.is_some(),
                ..common::options(dir.path(), Some(CODE))
            },
            hub,
            &mut tasks,
            stop_rx,
        )
        .await
        .unwrap();
        // The demo clip in real time, as a camera would deliver it.
        let mut feeder = camera.feeder();
        let sub_feed = camera.live_sub_feed().cloned();
        let mut stop_feed = stop.subscribe();
        let mut demo = match clip {
            Some(c) => DemoSource::from_mp4(c).unwrap(),
            None => DemoSource::bundled().unwrap(),
        };
        // What a source's Connected event carries: its AAC config.
        feeder.set_audio_config(demo.audio_config().cloned());
        tasks.spawn(async move {
            let start = tokio::time::Instant::now();
            loop {
                let (due, unit) = demo.next_unit();
                tokio::select! {
                    _ = tokio::time::sleep_until(start + due) => {
                        if let Some(sub) = &sub_feed {
                            sub.push(&unit);
                        }
                        feeder.push(unit);
                    }
                    _ = stop_feed.changed() => return,
                }
            }
        });
        let addr = SocketAddr::from(([127, 0, 0, 1], camera.port()));
        let identity = ControllerIdentity::generate(&mut rand::rng());
        let keys = pair_setup(addr, &identity, CODE, WAIT).await.unwrap();
        let mut client = HapClient::connect(addr, &keys, WAIT).await.unwrap();
        let db = client.accessories().await.unwrap();
        Self {
            camera,
            addr,
            keys,
            client,
            db,
            dir,
            _stop: stop,
            _tasks: tasks,
        }
    }

    /// `(aid, iid)` of `ch` in RTP service `n`.
    fn id(&self, n: usize, ch: &str) -> (u64, u64) {
        self.db.ids_in_each(RTP_SERVICE, ch)[n]
    }
}

fn setup_request(id: u8, port: u16) -> Vec<u8> {
    controller::live::setup_endpoints_request([id; 16], port, &KEY, &SALT)
}

fn select(id: u8, command: SessionCommand) -> Vec<u8> {
    controller::live::selected_stream_request([id; 16], command, Some(1378))
}

async fn write(client: &mut HapClient, id: (u64, u64), bytes: &[u8]) -> i64 {
    let r = client
        .write(
            &[CharWrite::value(id.0, id.1, json!(B64.encode(bytes)))],
            None,
        )
        .await
        .unwrap();
    r[0].status
}

async fn read_bytes(client: &mut HapClient, id: (u64, u64)) -> Vec<u8> {
    let v = client.read_one(id.0, id.1).await.unwrap();
    B64.decode(v.as_str().unwrap()).unwrap()
}

fn status_of(v: &Json) -> Option<StreamingStatus> {
    let b = B64.decode(v.as_str()?).ok()?;
    match b.as_slice() {
        [1, 1, 0] => Some(StreamingStatus::Available),
        [1, 1, 1] => Some(StreamingStatus::InUse),
        [1, 1, 2] => Some(StreamingStatus::Unavailable),
        _ => None,
    }
}

/// The demo clip's most common frame spacing, 90 kHz.
fn demo_frame_step() -> u64 {
    let mut demo = DemoSource::bundled().unwrap();
    let mut steps: HashMap<i64, u32> = HashMap::new();
    let mut last = None;
    for _ in 0..400 {
        if let (_, MediaUnit::Video(v)) = demo.next_unit() {
            if let Some(l) = last {
                *steps.entry(v.pts_90k - l).or_default() += 1;
            }
            last = Some(v.pts_90k);
        }
    }
    steps.into_iter().max_by_key(|(_, n)| *n).unwrap().0 as u64
}

fn ffprobe(path: &Path) -> Json {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,profile,width,height,nb_read_frames",
        ])
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe (Debian ffmpeg) must be installed: run scripts/test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Json>(&out.stdout).unwrap()["streams"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libsrtp_viewer_gets_parameter_sets_then_an_idr_and_the_stream_ends_when_reports_stop() {
    let mut rig = Rig::new(SILENCE).await;
    let (setup, selected, status) = (
        rig.id(0, SETUP_ENDPOINTS),
        rig.id(0, SELECTED),
        rig.id(0, STREAMING_STATUS),
    );
    rig.client.subscribe(&[status], true).await.unwrap();
    assert_eq!(
        status_of(&rig.client.read_one(status.0, status.1).await.unwrap()),
        Some(StreamingStatus::Available)
    );
    // Let the camera get its first IDR into the live feed.
    let t = Instant::now();
    while rig.camera.live_feed().gop_len().0 == 0 {
        assert!(t.elapsed() < WAIT, "no IDR from the demo feed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let ready = rig.dir.path().join("viewer.port");
    let h264 = rig.dir.path().join("live.h264");
    let key = B64.encode([KEY.as_slice(), SALT.as_slice()].concat());
    // Reports are answered for 3 s, then the viewer listens silently to its end.
    let viewer = Command::new(python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/srtp_viewer.py"))
        .args([
            "--rx-key",
            &key,
            "--tx-key",
            &key,
            "--seconds",
            "4",
            "--rr-until",
            "3",
        ])
        .arg("--ready-file")
        .arg(&ready)
        .arg("--out")
        .arg(&h264)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let port: u16 = loop {
        if let Ok(s) = std::fs::read_to_string(&ready)
            && let Ok(p) = s.trim().parse()
        {
            break p;
        }
        assert!(t.elapsed() < WAIT, "viewer did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    assert_eq!(
        write(&mut rig.client, setup, &setup_request(1, port)).await,
        0
    );
    let answer = SetupEndpointsResponse::decode(&read_bytes(&mut rig.client, setup).await).unwrap();
    assert_eq!(answer.status, SetupEndpointsStatus::Success);
    let ssrc = answer.video_ssrc.unwrap();
    assert!(ssrc < 1 << 31);
    assert_eq!(
        answer.accessory_address.as_ref().unwrap().address,
        "127.0.0.1"
    );
    let in_use = rig
        .client
        .wait_for_event(status.0, status.1, WAIT, |v| {
            status_of(v) == Some(StreamingStatus::InUse)
        })
        .await;
    assert!(in_use.is_some(), "StreamingStatus did not become in use");

    assert_eq!(
        write(&mut rig.client, selected, &select(1, SessionCommand::Start)).await,
        0
    );
    assert_eq!(rig.camera.live_viewers(), 1);

    let out = tokio::task::spawn_blocking(move || viewer.wait_with_output().unwrap())
        .await
        .unwrap();
    let s: Json = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("viewer: {s}");
    assert!(s["rtp_packets"].as_u64().unwrap() > 20, "{s}");
    assert_eq!(s["rejected"], 0, "every packet decrypts with the 118 key");
    assert_eq!(s["payload_types"], json!([99]));
    assert_eq!(s["ssrcs"], json!([ssrc]));
    assert_eq!(s["seq_gaps"], 0);
    assert_eq!(s["first_unit_has_sps_pps"], true, "{s}");
    assert_eq!(s["first_unit_is_idr"], true, "{s}");
    assert_eq!(s["first_nal_types"][0], 7, "SPS first");
    assert!(s["max_datagram"].as_u64().unwrap() <= 1378);
    assert_eq!(s["markers"], s["access_units"]);
    assert!(s["access_units"].as_u64().unwrap() > 20, "{s}");
    // The first SR came with the first frame; then every 0.5 s.
    let first_packet = s["first_packet_s"].as_f64().unwrap();
    assert!(
        s["first_sr_s"].as_f64().unwrap() - first_packet < 1.0,
        "{s}"
    );
    assert!(s["sender_reports"].as_u64().unwrap() >= 5, "{s}");
    assert!(s["receiver_reports_sent"].as_u64().unwrap() >= 4, "{s}");
    // Live frames follow the source's spacing (the catch-up steps are a quarter of it).
    let step = demo_frame_step().to_string();
    let steps = s["ts_steps"].as_object().unwrap();
    let (top, _) = steps.iter().max_by_key(|(_, n)| n.as_u64()).unwrap();
    assert_eq!(top, &step, "{s}");

    // An independent decoder reads what libsrtp decrypted.
    let probe = ffprobe(&h264);
    assert_eq!(probe["codec_name"], "h264", "{probe}");
    assert_eq!(probe["width"], 1920, "{probe}");
    assert_eq!(probe["height"], 1080, "{probe}");
    let frames: u64 = probe["nb_read_frames"].as_str().unwrap().parse().unwrap();
    assert!(frames > 20, "{probe}");

    // The viewer stopped answering at 3 s: the stream ends within the silence and the
    // service is available again.
    let back = rig
        .client
        .wait_for_event(status.0, status.1, SILENCE + WAIT, |v| {
            status_of(v) == Some(StreamingStatus::Available)
        })
        .await;
    assert!(
        back.is_some(),
        "StreamingStatus did not return to available"
    );
    assert_eq!(rig.camera.live_viewers(), 0);
    assert_eq!(
        rig.camera.live_feed().reader_count(),
        0,
        "the reader was freed"
    );
}

/// Datagrams arriving on `sock` within `wait`.
fn count_datagrams(sock: &UdpSocket, wait: Duration) -> usize {
    let end = Instant::now() + wait;
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        if sock.recv(&mut buf).is_ok() {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_busy_hap_close_and_malformed_writes() {
    let mut rig = Rig::new(SILENCE).await;
    let (setup0, sel0, status0) = (
        rig.id(0, SETUP_ENDPOINTS),
        rig.id(0, SELECTED),
        rig.id(0, STREAMING_STATUS),
    );
    let (setup1, sel1) = (rig.id(1, SETUP_ENDPOINTS), rig.id(1, SELECTED));

    // Malformed writes: HAP errors, no state change.
    let full = setup_request(9, 40_000);
    assert_eq!(
        write(&mut rig.client, setup0, &full[..full.len() - 4]).await,
        -70410
    );
    assert_eq!(write(&mut rig.client, setup0, &[0xff]).await, -70410);
    assert_eq!(
        write(&mut rig.client, sel0, &select(9, SessionCommand::Start)).await,
        -70410,
        "unknown session"
    );
    let start = select(9, SessionCommand::Start);
    assert_eq!(write(&mut rig.client, sel0, &start[..7]).await, -70410);
    assert_eq!(
        status_of(&rig.client.read_one(status0.0, status0.1).await.unwrap()),
        Some(StreamingStatus::Available)
    );

    // END: nothing more arrives after 100 ms.
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = rx.local_addr().unwrap().port();
    assert_eq!(
        write(&mut rig.client, setup0, &setup_request(2, port)).await,
        0
    );
    assert_eq!(
        write(&mut rig.client, sel0, &select(2, SessionCommand::Start)).await,
        0
    );
    let rx2 = rx.try_clone().unwrap();
    let before =
        tokio::task::spawn_blocking(move || count_datagrams(&rx2, Duration::from_millis(1500)))
            .await
            .unwrap();
    assert!(before > 10, "{before} datagrams before END");
    // A second viewer on the same service is busy; the other service takes it.
    assert_eq!(
        write(&mut rig.client, setup0, &setup_request(3, port)).await,
        0
    );
    let busy = SetupEndpointsResponse::decode(&read_bytes(&mut rig.client, setup0).await).unwrap();
    assert_eq!(busy.status, SetupEndpointsStatus::Busy);
    assert_eq!(busy.session_id, Some(SessionId([3; 16])));
    let rx_b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port_b = rx_b.local_addr().unwrap().port();
    assert_eq!(
        write(&mut rig.client, setup1, &setup_request(4, port_b)).await,
        0
    );
    let ok = SetupEndpointsResponse::decode(&read_bytes(&mut rig.client, setup1).await).unwrap();
    assert_eq!(ok.status, SetupEndpointsStatus::Success);

    assert_eq!(
        write(&mut rig.client, sel0, &select(2, SessionCommand::End)).await,
        0
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rx2 = rx.try_clone().unwrap();
    let after = tokio::task::spawn_blocking(move || {
        // Drain what was already queued in the socket before END took effect.
        rx2.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2048];
        while rx2.recv(&mut buf).is_ok() {}
        rx2.set_nonblocking(false).unwrap();
        count_datagrams(&rx2, Duration::from_secs(1))
    })
    .await
    .unwrap();
    assert_eq!(after, 0, "datagrams after END");

    // The HAP session that set a stream up closes: the stream ends.
    let mut other = HapClient::connect(rig.addr, &rig.keys, WAIT).await.unwrap();
    let rx3 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port3 = rx3.local_addr().unwrap().port();
    assert_eq!(write(&mut other, setup0, &setup_request(5, port3)).await, 0);
    assert_eq!(
        write(&mut other, sel0, &select(5, SessionCommand::Start)).await,
        0
    );
    let rx3b = rx3.try_clone().unwrap();
    let got =
        tokio::task::spawn_blocking(move || count_datagrams(&rx3b, Duration::from_millis(800)))
            .await
            .unwrap();
    assert!(got > 5, "{got}");
    drop(other);
    let t = Instant::now();
    while rig.camera.live_viewers() > 0 {
        assert!(t.elapsed() < WAIT, "stream outlived its HAP session");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = tokio::task::spawn_blocking(move || {
        rx3.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2048];
        while rx3.recv(&mut buf).is_ok() {}
        rx3.set_nonblocking(false).unwrap();
        count_datagrams(&rx3, Duration::from_millis(500))
    })
    .await
    .unwrap();
    assert_eq!(after, 0, "datagrams after the HAP session closed");

    // A 118 whose HAP session closes before START frees the service at once (no 30 s wait).
    let mut third = HapClient::connect(rig.addr, &rig.keys, WAIT).await.unwrap();
    assert_eq!(write(&mut third, setup0, &setup_request(7, port3)).await, 0);
    assert_eq!(
        status_of(&rig.client.read_one(status0.0, status0.1).await.unwrap()),
        Some(StreamingStatus::InUse)
    );
    drop(third);
    let t = Instant::now();
    loop {
        let v = rig.client.read_one(status0.0, status0.1).await.unwrap();
        if status_of(&v) == Some(StreamingStatus::Available) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "prepared session outlived its HAP session"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // HomeKitCameraActive = 0 refuses live view (-70412).
    let (aid, iid) = rig.db.id_of("21A", "21B").unwrap();
    let r = rig
        .client
        .write(&[CharWrite::value(aid, iid, json!(0))], None)
        .await
        .unwrap();
    assert_eq!(r[0].status, 0);
    assert_eq!(
        write(&mut rig.client, setup0, &setup_request(6, port)).await,
        -70412
    );
    assert_eq!(
        write(&mut rig.client, sel1, &select(4, SessionCommand::Start)).await,
        -70412
    );
}

/// A UDP port `p` (even) with `p + 1` free too, as ffmpeg's RTP receiver binds both.
fn free_rtp_port() -> u16 {
    loop {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p.is_multiple_of(2) && p < u16::MAX && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

/// The SDP a receiver needs for what 118/117 negotiated (RFC 4568 `a=crypto`).
fn sdp(port: u16, key: &[u8; 16], salt: &[u8; 14]) -> String {
    let inline = B64.encode([key.as_slice(), salt.as_slice()].concat());
    format!(
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=hksv-bridge live view\r\nc=IN IP4 127.0.0.1\r\n\
         t=0 0\r\nm=video {port} RTP/SAVP 99\r\na=rtpmap:99 H264/90000\r\n\
         a=fmtp:99 packetization-mode=1\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{inline}\r\n"
    )
}

/// ffmpeg receiving `sdp_file` and copying the H.264 to `out`, `extra` output options first.
fn ffmpeg_receiver(sdp_file: &Path, out: &Path, extra: &[&str]) -> std::process::Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "warning"])
        .args(["-protocol_whitelist", "file,udp,rtp,srtp,crypto"])
        .args(["-reorder_queue_size", "0"])
        .arg("-i")
        .arg(sdp_file)
        .args(extra)
        .args(["-c", "copy", "-f", "h264", "-y"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg (Debian ffmpeg) must be installed: run scripts/test")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_decodes_the_stream_from_an_sdp_with_a_crypto_and_nothing_with_a_wrong_key() {
    // ffmpeg sends its receiver reports to itself (the SDP names no sender), so liveness
    // must outlast the run.
    let mut rig = Rig::new(Duration::from_secs(30)).await;
    let t = Instant::now();
    while rig.camera.live_feed().gop_len().0 == 0 {
        assert!(t.elapsed() < WAIT, "no IDR from the demo feed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What the source is: the bundled clip, probed by ffprobe itself.
    let clip = rig.dir.path().join("demo.mp4");
    std::fs::write(&clip, recorder::demo::DEMO_CLIP_MP4).unwrap();
    let source = ffprobe(&clip);

    // Right key: ffmpeg decodes the source's codec, profile and size.
    let port = free_rtp_port();
    let sdp_file = rig.dir.path().join("live.sdp");
    std::fs::write(&sdp_file, sdp(port, &KEY, &SALT)).unwrap();
    let out = rig.dir.path().join("ffmpeg.h264");
    let receiver = ffmpeg_receiver(&sdp_file, &out, &["-t", "3"]);
    tokio::time::sleep(Duration::from_millis(300)).await; // ffmpeg binds its port
    let (setup, selected) = (rig.id(0, SETUP_ENDPOINTS), rig.id(0, SELECTED));
    assert_eq!(
        write(&mut rig.client, setup, &setup_request(1, port)).await,
        0
    );
    assert_eq!(
        write(&mut rig.client, selected, &select(1, SessionCommand::Start)).await,
        0
    );
    let done = tokio::task::spawn_blocking(move || wait_or_kill(receiver, Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(done.0, "ffmpeg did not finish: {}", done.1);
    let probe = ffprobe(&out);
    eprintln!("ffmpeg received: {probe}; source: {source}");
    for field in ["codec_name", "profile", "width", "height"] {
        assert_eq!(probe[field], source[field], "{field}: {probe} vs {source}");
    }
    let frames: u64 = probe["nb_read_frames"].as_str().unwrap().parse().unwrap();
    assert!(frames > 20, "{probe}");
    assert_eq!(
        write(&mut rig.client, selected, &select(1, SessionCommand::End)).await,
        0
    );

    // Wrong key: packets arrive and fail authentication; nothing decodes.
    let port = free_rtp_port();
    let wrong_sdp = rig.dir.path().join("wrong.sdp");
    std::fs::write(&wrong_sdp, sdp(port, &[0x33; 16], &SALT)).unwrap();
    let wrong_out = rig.dir.path().join("wrong.h264");
    let receiver = ffmpeg_receiver(&wrong_sdp, &wrong_out, &[]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (setup, selected) = (rig.id(1, SETUP_ENDPOINTS), rig.id(1, SELECTED));
    assert_eq!(
        write(&mut rig.client, setup, &setup_request(2, port)).await,
        0
    );
    assert_eq!(
        write(&mut rig.client, selected, &select(2, SessionCommand::Start)).await,
        0
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        rig.camera.live_viewers(),
        1,
        "the stream was sent meanwhile"
    );
    let (_, stderr) = tokio::task::spawn_blocking(move || wait_or_kill(receiver, Duration::ZERO))
        .await
        .unwrap();
    assert!(
        stderr.contains("HMAC mismatch"),
        "ffmpeg saw no packets to refuse: {stderr}"
    );
    let decoded = std::fs::metadata(&wrong_out).map_or(0, |m| m.len());
    assert_eq!(decoded, 0, "ffmpeg decoded something with the wrong key");
}

/// Waits up to `wait` for `child`, else kills it; `(exited by itself, stderr)`.
fn wait_or_kill(mut child: std::process::Child, wait: Duration) -> (bool, String) {
    let end = Instant::now() + wait;
    let exited = loop {
        match child.try_wait().unwrap() {
            Some(_) => break true,
            None if Instant::now() >= end => {
                child.kill().unwrap();
                break false;
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let out = child.wait_with_output().unwrap();
    (exited, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_requests_get_the_live_source_and_others_the_main_stream() {
    let mut rig = Rig::with(Duration::from_secs(30), true).await;
    let sub = rig.camera.live_sub_feed().unwrap().clone();
    let t = Instant::now();
    while rig.camera.live_feed().gop_len().0 == 0 || sub.gop_len().0 == 0 {
        assert!(t.elapsed() < WAIT, "no IDR from the demo feed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = rx.local_addr().unwrap().port();
    for (n, size, from_sub) in [(0, (320, 240, 15), true), (1, (1280, 720, 30), false)] {
        let (setup, selected) = (rig.id(n, SETUP_ENDPOINTS), rig.id(n, SELECTED));
        let id = 20 + u8::try_from(n).unwrap();
        assert_eq!(
            write(&mut rig.client, setup, &setup_request(id, port)).await,
            0
        );
        let start = controller::live::selected_stream_request_sized(
            [id; 16],
            SessionCommand::Start,
            Some(1378),
            size,
        );
        assert_eq!(write(&mut rig.client, selected, &start).await, 0);
        let t = Instant::now();
        let want = |r: &Rig| {
            let (main, sub) = (
                r.camera.live_feed().reader_count(),
                r.camera.live_sub_feed().unwrap().reader_count(),
            );
            if from_sub {
                (main, sub) == (0, 1)
            } else {
                (main, sub) == (1, 0)
            }
        };
        while !want(&rig) {
            assert!(
                t.elapsed() < WAIT,
                "{size:?}: main {} / sub {} readers",
                rig.camera.live_feed().reader_count(),
                sub.reader_count()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rx2 = rx.try_clone().unwrap();
        let got =
            tokio::task::spawn_blocking(move || count_datagrams(&rx2, Duration::from_millis(500)))
                .await
                .unwrap();
        assert!(got > 5, "{size:?}: {got} datagrams");
        let end = controller::live::selected_stream_request_sized(
            [id; 16],
            SessionCommand::End,
            None,
            size,
        );
        assert_eq!(write(&mut rig.client, selected, &end).await, 0);
        let t = Instant::now();
        while rig.camera.live_viewers() > 0 {
            assert!(t.elapsed() < WAIT, "stream did not end");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A clip made by ffmpeg: `seconds` of a 320x240@15 test pattern with a keyframe every second,
/// and a 1 kHz AAC-LC tone, mono at `rate` Hz; with `beeps` the tone sounds only in the first
/// 100 ms of each second, i.e. on each keyframe.
fn tone_clip(dir: &Path, rate: u32, seconds: u32, beeps: bool) -> bytes::Bytes {
    let out = dir.join(format!("tone-{rate}-{beeps}.mp4"));
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!("testsrc=size=320x240:rate=15:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=1000:sample_rate={rate}:duration={seconds}"
        ));
    if beeps {
        cmd.args(["-af", "volume=0:enable='gte(mod(t,1),0.1)'"]);
    }
    let status = cmd
        .args([
            "-c:v",
            "libx264",
            "-profile:v",
            "main",
            "-pix_fmt",
            "yuv420p",
        ])
        .args([
            "-g",
            "15",
            "-keyint_min",
            "15",
            "-sc_threshold",
            "0",
            "-bf",
            "0",
        ])
        .args(["-c:a", "aac", "-ac", "1", "-b:a", "64k", "-shortest"])
        .arg(&out)
        .status()
        .expect("ffmpeg (Debian ffmpeg) must be installed: run scripts/test");
    assert!(status.success(), "ffmpeg could not make the tone clip");
    bytes::Bytes::from(std::fs::read(&out).unwrap())
}

/// An even UDP port `p` with `p..p + 4` free: video on `p` (118 puts audio on `p + 2`), and
/// ffmpeg's audio RTP and RTCP on `p + 2` and `p + 3`.
fn free_port_block() -> u16 {
    loop {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        drop(a);
        if p.is_multiple_of(2)
            && p < u16::MAX - 4
            && (p..p + 4).all(|q| UdpSocket::bind(("127.0.0.1", q)).is_ok())
        {
            return p;
        }
    }
}

/// The SDP for the audio we send: Opus at the requested rate (HomeKit's RTP clock, not RFC
/// 7587's 48 kHz; live-view notes §3), one channel.
fn audio_sdp(port: u16, rate: u32, key: &[u8; 16], salt: &[u8; 14]) -> String {
    let inline = B64.encode([key.as_slice(), salt.as_slice()].concat());
    format!(
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=hksv-bridge live audio\r\nc=IN IP4 127.0.0.1\r\n\
         t=0 0\r\nm=audio {port} RTP/SAVP 110\r\na=rtpmap:110 opus/{rate}/1\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{inline}\r\n"
    )
}

/// The power of `f` Hz in `pcm` (Goertzel).
fn tone_power(pcm: &[f32], rate: f32, f: f32) -> f32 {
    let w = 2.0 * std::f32::consts::PI * f / rate;
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &x in pcm {
        let s0 = x + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2
}

/// 118 on service `n` (session `[id; 16]`) for a viewer on `port`, audio on `port + 2`, then
/// 117 START asking for Opus at `audio` (rate, packet time ms): our 118 answer and when START
/// was written.
async fn start_with_audio(
    rig: &mut Rig,
    n: usize,
    id: u8,
    port: u16,
    audio: (hap_tlv::hksv::SampleRate, u8),
) -> (SetupEndpointsResponse, Instant) {
    let (setup, selected) = (rig.id(n, SETUP_ENDPOINTS), rig.id(n, SELECTED));
    assert_eq!(
        write(&mut rig.client, setup, &setup_request(id, port)).await,
        0
    );
    let answer = SetupEndpointsResponse::decode(&read_bytes(&mut rig.client, setup).await).unwrap();
    let start = controller::live::selected_stream_request_with_audio(
        [id; 16],
        SessionCommand::Start,
        Some(1378),
        (1280, 720, 30),
        Some(audio),
    );
    let t0 = Instant::now();
    assert_eq!(write(&mut rig.client, selected, &start).await, 0);
    (answer, t0)
}

/// 117 END for session `[id; 16]` on service `n`.
async fn end_stream(rig: &mut Rig, n: usize, id: u8) {
    let end = controller::live::selected_stream_request([id; 16], SessionCommand::End, None);
    let selected = rig.id(n, SELECTED);
    assert_eq!(write(&mut rig.client, selected, &end).await, 0);
}

/// Half a second for the last packets, then SIGINT (ffmpeg flushes its decoder and exits);
/// killed after `wait`. Its stderr.
async fn stop_ffmpeg(receiver: std::process::Child, wait: Duration) -> String {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = Command::new("kill")
        .args(["-INT", &receiver.id().to_string()])
        .status();
    tokio::task::spawn_blocking(move || wait_or_kill(receiver, wait))
        .await
        .unwrap()
        .1
}

/// One audio stream to ffmpeg: 118 + 117 START with Opus at `rate`/`ms` on service `n`,
/// `seconds` of streaming, END, then ffmpeg is stopped. Returns the decoded mono PCM at
/// 48 kHz, ffmpeg's warnings and the START → END time.
async fn receive_audio(
    rig: &mut Rig,
    n: usize,
    id: u8,
    (rate_code, rate, ms): (hap_tlv::hksv::SampleRate, u32, u8),
    key: &[u8; 16],
    seconds: u64,
) -> (Vec<f32>, String, Duration) {
    let port = free_port_block();
    let _video_sink = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let sdp_file = rig.dir.path().join(format!("audio-{id}.sdp"));
    std::fs::write(&sdp_file, audio_sdp(port + 2, rate, key, &SALT)).unwrap();
    let out = rig.dir.path().join(format!("audio-{id}.raw"));
    let receiver = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "warning"])
        .args(["-protocol_whitelist", "file,udp,rtp,srtp,crypto"])
        .args(["-reorder_queue_size", "0"])
        .arg("-i")
        .arg(&sdp_file)
        // Written as decoded: ffmpeg blocked on a silent socket may not see the SIGINT.
        .args(["-flush_packets", "1"])
        .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-y"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg (Debian ffmpeg) must be installed: run scripts/test");
    tokio::time::sleep(Duration::from_millis(300)).await; // ffmpeg binds its port
    let (_, t0) = start_with_audio(rig, n, id, port, (rate_code, ms)).await;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    end_stream(rig, n, id).await;
    let sent = t0.elapsed();
    let stderr = stop_ffmpeg(receiver, Duration::from_secs(1)).await;
    let raw = std::fs::read(&out).unwrap_or_default();
    let pcm = raw
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    (pcm, stderr, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_decodes_live_audio_as_the_sources_tone_for_the_time_sent_and_nothing_with_a_wrong_key()
 {
    let dir = tempfile::tempdir().unwrap();
    // 48 kHz AAC-LC: resampled to each requested rate.
    let clip = tone_clip(dir.path(), 48_000, 4, false);
    let mut rig = Rig::with_clip(Duration::from_secs(30), false, Some(clip)).await;
    let t = Instant::now();
    while rig.camera.live_feed().gop_len().0 == 0 || !rig.camera.live_feed().has_audio() {
        assert!(t.elapsed() < WAIT, "no IDR or no audio from the clip");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    use hap_tlv::hksv::SampleRate;
    for (n, id, target) in [
        (0, 41, (SampleRate::Hz16000, 16_000, 20)),
        (1, 42, (SampleRate::Hz24000, 24_000, 30)),
        (0, 43, (SampleRate::Hz8000, 8_000, 60)),
    ] {
        let (pcm, stderr, sent) = receive_audio(&mut rig, n, id, target, &KEY, 3).await;
        let label = format!("{} Hz, {} ms", target.1, target.2);
        for bad in ["rror", "HMAC", "nvalid"] {
            assert!(!stderr.contains(bad), "{label}: ffmpeg said: {stderr}");
        }
        // Duration: what was sent, START → END, within 5 %.
        let got = pcm.len() as f64 / 48_000.0;
        let sent = sent.as_secs_f64();
        assert!(
            (got - sent).abs() <= 0.05 * sent,
            "{label}: decoded {got:.3} s of {sent:.3} s sent"
        );
        // The tone: the strongest frequency in the middle second is 1 kHz ± 20 Hz.
        let mid = &pcm[pcm.len() / 2 - 24_000..pcm.len() / 2 + 24_000];
        let peak = (100..=3_900)
            .step_by(10)
            .map(|f| (f, tone_power(mid, 48_000.0, f as f32)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap()
            .0;
        assert!((980..=1_020).contains(&peak), "{label}: peak at {peak} Hz");
        let rms = (mid.iter().map(|x| x * x).sum::<f32>() / mid.len() as f32).sqrt();
        assert!(rms > 0.05, "{label}: the tone is too quiet ({rms})");
    }
    // Wrong key: ffmpeg refuses every packet and decodes nothing; the stream was sent.
    let (pcm, stderr, _) = receive_audio(
        &mut rig,
        1,
        44,
        (SampleRate::Hz16000, 16_000, 20),
        &[0x33; 16],
        2,
    )
    .await;
    assert!(
        stderr.contains("HMAC mismatch"),
        "ffmpeg saw no packets to refuse: {stderr}"
    );
    assert!(
        pcm.is_empty(),
        "ffmpeg decoded {} samples with the wrong key",
        pcm.len()
    );
}

/// `(pts_time, keyframe)` of every video packet in `file` (ffprobe).
fn video_packets(file: &Path) -> Vec<(f64, bool)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "packet=pts_time,flags", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe (Debian ffmpeg) must be installed: run scripts/test");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (t, flags) = l.split_once(',')?;
            Some((t.parse().ok()?, flags.contains('K')))
        })
        .collect()
}

/// `(pts_time, RMS dBFS)` of each 10 ms of the audio in `file`, on the file's own timeline
/// (ffmpeg `astats`).
fn audio_levels(file: &Path) -> Vec<(f64, f64)> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-copyts", "-i"])
        .arg(file)
        .args(["-map", "0:a", "-af"])
        .arg("asetnsamples=n=480,astats=metadata=1:reset=1,ametadata=print:key=lavfi.astats.Overall.RMS_level:file=-")
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg (Debian ffmpeg) must be installed: run scripts/test");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut levels = Vec::new();
    let mut t = None;
    for line in text.lines() {
        if let Some(p) = line.split("pts_time:").nth(1) {
            t = p.split_whitespace().next().and_then(|v| v.parse().ok());
        } else if let (Some(v), Some(at)) =
            (line.strip_prefix("lavfi.astats.Overall.RMS_level="), t)
        {
            levels.push((at, v.trim().parse().unwrap_or(f64::NEG_INFINITY)));
        }
    }
    levels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beep_on_each_keyframe_plays_with_its_keyframe_when_aligned_by_the_sender_reports() {
    let dir = tempfile::tempdir().unwrap();
    let clip = tone_clip(dir.path(), 48_000, 4, true);
    let mut rig = Rig::with_clip(Duration::from_secs(30), false, Some(clip)).await;
    let t = Instant::now();
    while rig.camera.live_feed().gop_len().0 == 0 || !rig.camera.live_feed().has_audio() {
        assert!(t.elapsed() < WAIT, "no IDR or no audio from the clip");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One SDP with both streams: ffmpeg places them on one timeline from their sender
    // reports (RFC 3550 §6.4.1), as a player would.
    let port = free_port_block();
    let inline = B64.encode([KEY.as_slice(), SALT.as_slice()].concat());
    let both = format!(
        "{}m=audio {} RTP/SAVP 110\r\na=rtpmap:110 opus/16000/1\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{inline}\r\n",
        sdp(port, &KEY, &SALT),
        port + 2
    );
    let sdp_file = rig.dir.path().join("both.sdp");
    std::fs::write(&sdp_file, both).unwrap();
    let out = rig.dir.path().join("both.nut");
    let receiver = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "warning"])
        .args(["-protocol_whitelist", "file,udp,rtp,srtp,crypto"])
        .args(["-reorder_queue_size", "0", "-i"])
        .arg(&sdp_file)
        .args([
            "-map",
            "0:v",
            "-map",
            "0:a",
            "-c:v",
            "copy",
            "-c:a",
            "pcm_s16le",
            "-ar",
            "48000",
        ])
        .args(["-flush_packets", "1", "-f", "nut", "-y"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg (Debian ffmpeg) must be installed: run scripts/test");
    tokio::time::sleep(Duration::from_millis(300)).await;
    start_with_audio(
        &mut rig,
        0,
        60,
        port,
        (hap_tlv::hksv::SampleRate::Hz16000, 20),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    end_stream(&mut rig, 0, 60).await;
    let stderr = stop_ffmpeg(receiver, Duration::from_secs(2)).await;

    let keyframes: Vec<f64> = video_packets(&out)
        .into_iter()
        .filter_map(|(t, k)| k.then_some(t))
        .collect();
    let levels = audio_levels(&out);
    // Beep onsets: a loud 10 ms after a quiet one (the tone is at -21 dBFS, the gaps below
    // -90).
    let onsets: Vec<f64> = levels
        .windows(2)
        .filter(|w| w[0].1 < -60.0 && w[1].1 > -40.0)
        .map(|w| w[1].0)
        .collect();
    eprintln!("keyframes {keyframes:?}\nonsets {onsets:?}\nffmpeg: {stderr}");
    // From the second second on (the GOP backlog is sent faster than real time first).
    let first = keyframes.first().copied().unwrap_or(0.0) + 2.0;
    let checked: Vec<(f64, f64)> = onsets
        .iter()
        .filter(|&&o| o > first)
        .map(|&o| {
            let k = keyframes
                .iter()
                .copied()
                .min_by(|a, b| (a - o).abs().total_cmp(&(b - o).abs()))
                .unwrap();
            (o, o - k)
        })
        .collect();
    assert!(checked.len() >= 3, "too few beeps to check: {checked:?}");
    // The skew seen here is 45–57 ms, audio late: one AAC frame (21 ms at 48 kHz, the
    // encoder's priming that the clip's edit list would hide), the Opus look-ahead (6.5 ms) and
    // the 10 ms level windows.
    for (o, skew) in &checked {
        assert!(
            skew.abs() <= 0.080,
            "beep at {o:.3} s is {:.0} ms from its keyframe",
            skew * 1000.0
        );
    }
}

/// libsrtp on the audio port for `seconds` while service `n` streams with Opus at
/// `rate`/`ms`: its JSON summary and the audio SSRC our 118 answer announced.
async fn libsrtp_audio(
    rig: &mut Rig,
    n: usize,
    id: u8,
    (rate_code, ms): (hap_tlv::hksv::SampleRate, u8),
    seconds: u64,
) -> (Json, Option<u32>) {
    let port = free_port_block();
    let _video_sink = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let key = B64.encode([KEY.as_slice(), SALT.as_slice()].concat());
    let ready = rig.dir.path().join(format!("audio-ready-{id}"));
    let peer = Command::new(python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/srtp_audio.py"))
        .args(["--rx-key", &key, "--port", &(port + 2).to_string()])
        .args(["--seconds", &seconds.to_string()])
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !ready.exists() {
        assert!(t.elapsed() < WAIT, "the audio peer did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (answer, _) = start_with_audio(rig, n, id, port, (rate_code, ms)).await;
    let out = tokio::task::spawn_blocking(move || peer.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(rig.camera.live_viewers(), 1, "the video stopped meanwhile");
    end_stream(rig, n, id).await;
    let summary = serde_json::from_slice(&out.stdout).unwrap();
    (summary, answer.audio_ssrc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libsrtp_sees_opus_with_the_negotiated_pt_ssrc_steps_and_reports_and_none_without_audio() {
    let dir = tempfile::tempdir().unwrap();
    // 16 kHz AAC-LC resampled to 24 kHz, in 40 ms packets.
    let clip = tone_clip(dir.path(), 16_000, 4, false);
    let mut rig = Rig::with_clip(Duration::from_secs(30), false, Some(clip)).await;
    let t = Instant::now();
    while rig.camera.live_feed().gop_len().0 == 0 || !rig.camera.live_feed().has_audio() {
        assert!(t.elapsed() < WAIT, "no IDR or no audio from the clip");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, ssrc) =
        libsrtp_audio(&mut rig, 0, 70, (hap_tlv::hksv::SampleRate::Hz24000, 40), 6).await;
    eprintln!("audio peer: {s}");
    let ssrc = ssrc.unwrap();
    assert_eq!(s["payload_types"], json!([110]), "{s}");
    assert_eq!(s["ssrcs"], json!([ssrc]), "{s}");
    assert_eq!(s["rejected"], 0, "{s}");
    assert_eq!(s["seq_gaps"], 0, "{s}");
    assert_eq!(s["markers"], 1, "{s}");
    let packets = s["rtp_packets"].as_u64().unwrap();
    assert!(packets >= 5_000 / 40, "{packets} packets in 6 s");
    // Every step is 40 ms at 24 kHz (one may differ where the looping clip joins).
    let steps = s["ts_steps"].as_object().unwrap();
    assert!(steps["960"].as_u64().unwrap() + 1 >= packets - 1, "{s}");
    // 24 kbit/s VBR: about 120 B per 40 ms packet.
    let sizes: Vec<u64> = s["payload_sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let mean = sizes.iter().sum::<u64>() as f64 / sizes.len() as f64;
    assert!((20.0..=180.0).contains(&mean), "mean payload {mean} B");
    // Sender reports: ours, 5 s apart, their RTP clock at 24 kHz.
    let srs = s["sender_reports"].as_array().unwrap();
    assert!(srs.len() >= 2, "{s}");
    for w in srs.windows(2) {
        assert_eq!(w[1]["ssrc"], json!(ssrc));
        let dt = w[1]["ntp"].as_f64().unwrap() - w[0]["ntp"].as_f64().unwrap();
        let drtp = (w[1]["rtp"].as_u64().unwrap() as u32)
            .wrapping_sub(w[0]["rtp"].as_u64().unwrap() as u32);
        assert!((dt - 5.0).abs() < 0.2, "reports {dt} s apart");
        assert!(
            (f64::from(drtp) / dt - 24_000.0).abs() < 240.0,
            "report clock {} Hz",
            f64::from(drtp) / dt
        );
    }

    // A camera without audio (the bundled clip with `audio = false`): the viewer asks for Opus,
    // gets video only, and nothing arrives on its audio port.
    let mut silent = Rig::new(Duration::from_secs(30)).await;
    let t = Instant::now();
    while silent.camera.live_feed().gop_len().0 == 0 {
        assert!(t.elapsed() < WAIT, "no IDR from the demo feed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, _) = libsrtp_audio(
        &mut silent,
        0,
        71,
        (hap_tlv::hksv::SampleRate::Hz16000, 20),
        2,
    )
    .await;
    assert_eq!(s["rtp_packets"], 0, "{s}");
    assert_eq!(s["sender_reports"], json!([]), "{s}");
}
