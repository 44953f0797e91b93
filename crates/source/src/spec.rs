//! The `source` string of a camera: which kind of source, where, and its options.
//!
//! | form | source |
//! | --- | --- |
//! | `rtsp://user:pass@cam/stream`, `rtsps://…` | RTSP (retina); `#transport=udp` for UDP |
//! | `v4l2:///dev/video0?width=1920&height=1080&fps=30&<control>=<value>` | V4L2 H.264 capture |
//! | `http://…`, `https://…` | a byte stream (Annex B H.264 or fMP4) over HTTP |
//! | `tcp://host:port` | a byte stream from a TCP server |
//! | `file:///path`, `/path`, `./path` | a byte stream from a file, paced in real time |
//! | `-` | a byte stream on standard input |
//! | `exec:libcamera-vid -t 0 -o -` | a byte stream on a child's stdout (run by `sh -c`) |
//! | `demo:` | the bundled demo clip |
//!
//! Options of URL sources go in the URL fragment (`#fps=25&realtime=false`), which is never
//! sent to the camera, so camera query strings pass through untouched. For `exec:` a trailing
//! ` #fps=25` is taken as options when every item is a known option.
//!
//! `Display` and `Debug` replace passwords with `***` (in URLs and inside `exec:` commands).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use url::Url;

use crate::Error;

/// RTP transport for RTSP. Default TCP interleaved: it survives NAT and loss-free LANs alike,
/// and retina's UDP support has no reorder buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtspTransport {
    /// RTP interleaved on the RTSP TCP connection (RFC 2326 §10.12).
    #[default]
    Tcp,
    /// RTP over UDP.
    Udp,
}

/// Options of byte-stream sources (`http`, `tcp`, `file`, `-`, `exec:`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ByteStreamOptions {
    /// Frame rate used to timestamp Annex B input, which carries no timestamps. `None`: the
    /// SPS VUI timing (`time_scale / (2 × num_units_in_tick)`, H.264 Annex E), else 30.
    pub fps: Option<f64>,
    /// Pace the input by its timestamps as a live camera would. `None`: only for files.
    pub realtime: Option<bool>,
}

/// V4L2 capture settings (`v4l2:///dev/video0?…`).
#[derive(Debug, Clone, PartialEq)]
pub struct V4l2Params {
    /// The device node.
    pub device: PathBuf,
    /// Capture width in pixels. Default 1920.
    pub width: u32,
    /// Capture height in pixels. Default 1080.
    pub height: u32,
    /// Frames per second. Default 30.
    pub fps: u32,
    /// Further controls by name (`h264_i_period=60`, `rotate=180`, `brightness=55`), in the
    /// order given. Names map to control ids through [`crate::v4l2::control_id`] or the
    /// device's own control names.
    pub controls: Vec<(String, i64)>,
}

/// A parsed `source` string. See the module docs for the forms.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub enum SourceSpec {
    /// An RTSP camera.
    Rtsp {
        /// The URL, with credentials if any (never printed: see `Display`).
        url: Url,
        /// The RTP transport.
        transport: RtspTransport,
    },
    /// A V4L2 H.264 capture device.
    V4l2(V4l2Params),
    /// An HTTP(S) byte stream.
    Http {
        /// The URL without the options fragment.
        url: Url,
        /// Options.
        options: ByteStreamOptions,
    },
    /// A TCP byte stream.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
        /// Options.
        options: ByteStreamOptions,
    },
    /// A file.
    File {
        /// The path.
        path: PathBuf,
        /// Options.
        options: ByteStreamOptions,
    },
    /// Standard input.
    Stdin {
        /// Options.
        options: ByteStreamOptions,
    },
    /// A child command's stdout, restarted with backoff when it exits.
    Exec {
        /// The command line, run by `sh -c`.
        command: String,
        /// Options.
        options: ByteStreamOptions,
    },
    /// The bundled demo clip.
    Demo,
}

fn invalid(input: &str, reason: impl Into<String>) -> Error {
    Error::InvalidSpec {
        input: redact_str(input),
        reason: reason.into(),
    }
}

/// Replaces the password of every `scheme://user:password@` inside `s` with `***`.
pub fn redact_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // The authority ends at the first '/', whitespace, '?' or '#'.
        let end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(tail.len());
        let (authority, after) = tail.split_at(end);
        match authority.rfind('@') {
            Some(at) => {
                let (userinfo, host) = authority.split_at(at);
                match userinfo.split_once(':') {
                    Some((user, _password)) => {
                        out.push_str(user);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(host);
            }
            None => out.push_str(authority),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    u.to_string()
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Parses `fps=25&realtime=false`. `Ok(None)` when some key is unknown (for `exec:` that
/// means the `#` belongs to the command).
fn parse_byte_options(s: &str) -> Result<Option<ByteStreamOptions>, String> {
    let mut o = ByteStreamOptions::default();
    for item in s.split('&').filter(|i| !i.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            return Ok(None);
        };
        match k {
            "fps" => {
                let fps: f64 = v.parse().map_err(|_| format!("fps={v} is not a number"))?;
                if !(fps.is_finite() && (1.0..=240.0).contains(&fps)) {
                    return Err(format!("fps={v} must be 1..=240"));
                }
                o.fps = Some(fps);
            }
            "realtime" => {
                o.realtime = Some(
                    parse_bool(v).ok_or_else(|| format!("realtime={v} must be true or false"))?,
                );
            }
            _ => return Ok(None),
        }
    }
    Ok(Some(o))
}

/// Splits the options fragment off a URL, rejecting unknown options.
fn url_byte_options(input: &str, url: &mut Url) -> Result<ByteStreamOptions, Error> {
    let Some(fragment) = url.fragment().map(str::to_owned) else {
        return Ok(Default::default());
    };
    url.set_fragment(None);
    match parse_byte_options(&fragment) {
        Ok(Some(o)) => Ok(o),
        Ok(None) => Err(invalid(
            input,
            format!("unknown option in #{fragment}; known: fps, realtime"),
        )),
        Err(e) => Err(invalid(input, e)),
    }
}

fn parse_v4l2(input: &str, url: &Url) -> Result<V4l2Params, Error> {
    let device = PathBuf::from(url.path());
    if url.path().is_empty() || url.path() == "/" {
        return Err(invalid(input, "expected a device path: v4l2:///dev/video0"));
    }
    let mut p = V4l2Params {
        device,
        width: 1920,
        height: 1080,
        fps: 30,
        controls: Vec::new(),
    };
    for (k, v) in url.query_pairs() {
        let num = |max: u32| -> Result<u32, Error> {
            v.parse::<u32>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| invalid(input, format!("{k}={v} must be a whole number 1..={max}")))
        };
        match k.as_ref() {
            "width" => p.width = num(8192)?,
            "height" => p.height = num(8192)?,
            "fps" => p.fps = num(240)?,
            name => {
                let value = v
                    .parse::<i64>()
                    .ok()
                    .or_else(|| parse_bool(&v).map(i64::from))
                    .ok_or_else(|| {
                        invalid(
                            input,
                            format!(
                                "control {name}={v}: the value must be an integer or a boolean"
                            ),
                        )
                    })?;
                p.controls.push((name.to_owned(), value));
            }
        }
    }
    Ok(p)
}

impl FromStr for SourceSpec {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        let s = input.trim();
        if s.is_empty() {
            return Err(invalid(
                input,
                "empty; expected rtsp://, v4l2://, http(s)://, tcp://, a file path, -, exec: or demo:",
            ));
        }
        if s == "demo:" || s == "demo" {
            return Ok(Self::Demo);
        }
        if s == "-" {
            return Ok(Self::Stdin {
                options: Default::default(),
            });
        }
        if let Some(cmd) = s.strip_prefix("exec:") {
            let (command, options) = match cmd.rsplit_once('#') {
                Some((c, o)) => match parse_byte_options(o) {
                    Ok(Some(opts)) => (c.trim().to_owned(), opts),
                    Ok(None) => (cmd.trim().to_owned(), Default::default()),
                    Err(e) => return Err(invalid(input, e)),
                },
                None => (cmd.trim().to_owned(), Default::default()),
            };
            if command.is_empty() {
                return Err(invalid(
                    input,
                    "exec: needs a command, e.g. exec:libcamera-vid -t 0 -o -",
                ));
            }
            return Ok(Self::Exec { command, options });
        }
        if s.starts_with('/') || s.starts_with("./") || s.starts_with("../") || !s.contains(':') {
            return Ok(Self::File {
                path: PathBuf::from(s),
                options: Default::default(),
            });
        }
        let mut url = Url::parse(s).map_err(|e| invalid(input, format!("not a URL: {e}")))?;
        match url.scheme() {
            "rtsp" | "rtsps" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(invalid(input, "missing host"));
                }
                let mut transport = RtspTransport::Tcp;
                if let Some(fragment) = url.fragment().map(str::to_owned) {
                    url.set_fragment(None);
                    for item in fragment.split('&').filter(|i| !i.is_empty()) {
                        transport = match item {
                            "transport=tcp" => RtspTransport::Tcp,
                            "transport=udp" => RtspTransport::Udp,
                            other => {
                                return Err(invalid(
                                    input,
                                    format!("unknown option #{other}; known: transport=tcp|udp"),
                                ));
                            }
                        };
                    }
                }
                Ok(Self::Rtsp { url, transport })
            }
            "v4l2" => Ok(Self::V4l2(parse_v4l2(input, &url)?)),
            "http" | "https" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(invalid(input, "missing host"));
                }
                let options = url_byte_options(input, &mut url)?;
                Ok(Self::Http { url, options })
            }
            "tcp" => {
                let options = url_byte_options(input, &mut url)?;
                let host = url
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| invalid(input, "missing host: tcp://host:port"))?;
                let port = url
                    .port()
                    .ok_or_else(|| invalid(input, "missing port: tcp://host:port"))?;
                Ok(Self::Tcp {
                    host: host.trim_matches(['[', ']']).to_owned(),
                    port,
                    options,
                })
            }
            "file" => {
                let options = url_byte_options(input, &mut url)?;
                let path = url
                    .to_file_path()
                    .map_err(|()| invalid(input, "not a local file path"))?;
                Ok(Self::File { path, options })
            }
            "demo" => Ok(Self::Demo),
            other => Err(invalid(
                input,
                format!(
                    "unknown scheme {other}:; expected rtsp://, v4l2://, http(s)://, tcp://, file://, exec:, demo: or -"
                ),
            )),
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rtsp { url, transport } => {
                f.write_str(&redact_url(url))?;
                if *transport == RtspTransport::Udp {
                    f.write_str("#transport=udp")?;
                }
                Ok(())
            }
            Self::V4l2(p) => write!(
                f,
                "v4l2://{}?width={}&height={}&fps={}",
                p.device.display(),
                p.width,
                p.height,
                p.fps
            ),
            Self::Http { url, .. } => f.write_str(&redact_url(url)),
            Self::Tcp { host, port, .. } if host.contains(':') => {
                write!(f, "tcp://[{host}]:{port}")
            }
            Self::Tcp { host, port, .. } => write!(f, "tcp://{host}:{port}"),
            Self::File { path, .. } => write!(f, "{}", path.display()),
            Self::Stdin { .. } => f.write_str("-"),
            Self::Exec { command, .. } => write!(f, "exec:{}", redact_str(command)),
            Self::Demo => f.write_str("demo:"),
        }
    }
}

impl fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceSpec({self})")
    }
}

impl SourceSpec {
    /// Checks what can be known before connecting: a scheme this build can serve, and that a
    /// file or V4L2 device exists. Network sources are only checked when they connect (a camera
    /// may boot after the bridge); `exec:` commands when they run.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for `rtsps://` or V4L2 in a build without it;
    /// [`Error::InvalidSpec`] naming a missing file or device.
    pub fn preflight(&self) -> Result<(), Error> {
        match self {
            Self::Rtsp { url, .. } if url.scheme() == "rtsps" => Err(Error::Unsupported {
                camera: redact_url(url),
                detail: "rtsps:// (RTSP over TLS) is not supported by the RTSP client (retina 0.4); use the camera's rtsp:// URL on the LAN".into(),
            }),
            Self::File { path, .. } => match std::fs::metadata(path) {
                Ok(m) if m.is_dir() => Err(invalid(
                    &path.display().to_string(),
                    "is a directory, not a video file",
                )),
                Ok(_) => Ok(()),
                Err(e) => Err(invalid(&path.display().to_string(), format!("cannot open: {e}"))),
            },
            Self::V4l2(p) => {
                if cfg!(not(feature = "v4l2")) {
                    return Err(Error::Unsupported {
                        camera: self.to_string(),
                        detail: "this build has no V4L2 support (cargo feature `v4l2`)".into(),
                    });
                }
                match std::fs::metadata(&p.device) {
                    Ok(_) => Ok(()),
                    Err(e) => Err(invalid(
                        &p.device.display().to_string(),
                        format!("no such V4L2 device ({e}); `ls /dev/video*` lists the cameras"),
                    )),
                }
            }
            _ => Ok(()),
        }
    }

    /// The byte-stream options, for byte-stream sources.
    pub fn byte_options(&self) -> Option<ByteStreamOptions> {
        match self {
            Self::Http { options, .. }
            | Self::Tcp { options, .. }
            | Self::File { options, .. }
            | Self::Stdin { options }
            | Self::Exec { options, .. } => Some(*options),
            _ => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn preflight_refuses_what_can_never_connect() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clip.mp4");
        std::fs::write(&file, b"x").unwrap();
        let ok: SourceSpec = file.to_str().unwrap().parse().unwrap();
        assert!(ok.preflight().is_ok());
        let missing: SourceSpec = dir
            .path()
            .join("nope.mp4")
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let e = missing.preflight().unwrap_err().to_string();
        assert!(e.contains("nope.mp4") && e.contains("cannot open"), "{e}");
        let d: SourceSpec = dir.path().to_str().unwrap().parse().unwrap();
        assert!(d.preflight().unwrap_err().to_string().contains("directory"));
        let tls: SourceSpec = "rtsps://u:secret@cam/s".parse().unwrap();
        let e = tls.preflight().unwrap_err().to_string();
        assert!(e.contains("rtsps://") && !e.contains("secret"), "{e}");
        let dev: SourceSpec = "v4l2:///dev/video-none".parse().unwrap();
        assert!(
            dev.preflight()
                .unwrap_err()
                .to_string()
                .contains("/dev/video-none")
        );
        // Network sources are checked when they connect.
        for s in ["rtsp://cam/s", "http://cam/s.ts", "tcp://cam:9000", "demo:"] {
            assert!(s.parse::<SourceSpec>().unwrap().preflight().is_ok(), "{s}");
        }
    }

    #[test]
    fn rtsp_credentials_are_redacted_in_display_and_debug() {
        let s: SourceSpec = "rtsp://admin:s3cret@10.0.0.5:554/Streaming/101"
            .parse()
            .unwrap();
        assert_eq!(s.to_string(), "rtsp://admin:***@10.0.0.5:554/Streaming/101");
        assert!(!format!("{s:?}").contains("s3cret"));
        let SourceSpec::Rtsp { url, transport } = &s else {
            panic!()
        };
        assert_eq!(url.password(), Some("s3cret"));
        assert_eq!(*transport, RtspTransport::Tcp);
    }

    #[test]
    fn rtsp_transport_option_and_errors() {
        let s: SourceSpec = "rtsp://cam/x?channel=1#transport=udp".parse().unwrap();
        let SourceSpec::Rtsp { url, transport } = &s else {
            panic!()
        };
        assert_eq!(
            (url.as_str(), *transport),
            ("rtsp://cam/x?channel=1", RtspTransport::Udp)
        );
        let e = "rtsp://u:pw@cam/x#bogus=1"
            .parse::<SourceSpec>()
            .unwrap_err();
        assert!(
            e.to_string().contains("unknown option") && !e.to_string().contains("pw@"),
            "{e}"
        );
        assert!("rtsp:///nohost".parse::<SourceSpec>().is_err());
    }

    #[test]
    fn byte_streams_and_options() {
        let s: SourceSpec = "http://cam/live.h264?res=hi#fps=25".parse().unwrap();
        let SourceSpec::Http { url, options } = &s else {
            panic!()
        };
        assert_eq!(url.as_str(), "http://cam/live.h264?res=hi");
        assert_eq!(options.fps, Some(25.0));
        let s: SourceSpec = "tcp://127.0.0.1:8888".parse().unwrap();
        assert_eq!(
            s,
            SourceSpec::Tcp {
                host: "127.0.0.1".into(),
                port: 8888,
                options: Default::default()
            }
        );
        assert!(
            "tcp://host"
                .parse::<SourceSpec>()
                .unwrap_err()
                .to_string()
                .contains("port")
        );
        assert!(matches!("-".parse().unwrap(), SourceSpec::Stdin { .. }));
        assert!(matches!(
            "./clip.h264".parse().unwrap(),
            SourceSpec::File { .. }
        ));
        let s: SourceSpec = "file:///tmp/a.mp4#realtime=false".parse().unwrap();
        assert_eq!(s.byte_options().unwrap().realtime, Some(false));
        assert!("http://cam/x#fps=0".parse::<SourceSpec>().is_err());
        assert!(
            "gopher://x"
                .parse::<SourceSpec>()
                .unwrap_err()
                .to_string()
                .contains("unknown scheme")
        );
        assert!(matches!("demo:".parse().unwrap(), SourceSpec::Demo));
    }

    #[test]
    fn exec_options_and_redaction() {
        let s: SourceSpec = "exec:libcamera-vid -t 0 -o - #fps=30".parse().unwrap();
        assert_eq!(
            s,
            SourceSpec::Exec {
                command: "libcamera-vid -t 0 -o -".into(),
                options: ByteStreamOptions {
                    fps: Some(30.0),
                    realtime: None
                }
            }
        );
        // A '#' that is not options stays in the command.
        let s: SourceSpec = "exec:echo a#b".parse().unwrap();
        assert_eq!(
            s,
            SourceSpec::Exec {
                command: "echo a#b".into(),
                options: Default::default()
            }
        );
        let s: SourceSpec = "exec:ffmpeg -i rtsp://u:topsecret@cam/x -f h264 -"
            .parse()
            .unwrap();
        assert_eq!(s.to_string(), "exec:ffmpeg -i rtsp://u:***@cam/x -f h264 -");
        assert!("exec:".parse::<SourceSpec>().is_err());
    }

    #[test]
    fn v4l2_parameters() {
        let s: SourceSpec = "v4l2:///dev/video0?width=1280&height=720&fps=25&rotate=180&hflip=true"
            .parse()
            .unwrap();
        let SourceSpec::V4l2(p) = s else { panic!() };
        assert_eq!(
            (p.device.to_str().unwrap(), p.width, p.height, p.fps),
            ("/dev/video0", 1280, 720, 25)
        );
        assert_eq!(
            p.controls,
            vec![("rotate".to_owned(), 180), ("hflip".to_owned(), 1)]
        );
        let d: SourceSpec = "v4l2:///dev/video2".parse().unwrap();
        let SourceSpec::V4l2(d) = d else { panic!() };
        assert_eq!((d.width, d.height, d.fps), (1920, 1080, 30));
        assert!("v4l2:///dev/video0?fps=0".parse::<SourceSpec>().is_err());
        assert!(
            "v4l2:///dev/video0?brightness=high"
                .parse::<SourceSpec>()
                .is_err()
        );
        assert!("v4l2://".parse::<SourceSpec>().is_err());
    }
}
