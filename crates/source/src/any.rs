//! One connector type for every [`SourceSpec`], so the bridge can hold any camera in one
//! field: [`open`] returns a [`Source`].

use recorder::MediaUnit;

use crate::Error;
use crate::bytestream::{ByteConnector, ByteSession};
use crate::camera::{Connector, MediaSession, ReconnectPolicy, ReconnectingSource, StreamParams};
use crate::demo::{DemoConnector, DemoSession};
use crate::rtsp::{RtspConnector, RtspSession};
use crate::spec::SourceSpec;

/// A connector for any source kind.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyConnector {
    /// RTSP.
    Rtsp(RtspConnector),
    /// HTTP, TCP, file, stdin, exec.
    Bytes(ByteConnector),
    /// V4L2 capture.
    #[cfg(feature = "v4l2")]
    V4l2(crate::v4l2::V4l2Connector),
    /// The demo clip.
    Demo(DemoConnector),
}

/// A session of any source kind.
// One session per camera, held in place: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
#[non_exhaustive]
pub enum AnySession {
    /// RTSP.
    Rtsp(RtspSession),
    /// Byte stream.
    Bytes(ByteSession),
    /// V4L2 capture.
    #[cfg(feature = "v4l2")]
    V4l2(crate::v4l2::V4l2Session),
    /// The demo clip.
    Demo(DemoSession),
}

/// A live camera of any kind, reconnecting by itself.
pub type Source = ReconnectingSource<AnyConnector>;

impl AnyConnector {
    /// The connector for `spec`.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for V4L2 in a build without the `v4l2` feature; HTTP client
    /// construction errors.
    pub fn new(spec: &SourceSpec, policy: &ReconnectPolicy) -> Result<Self, Error> {
        Ok(match spec {
            SourceSpec::Rtsp { .. } => Self::Rtsp(RtspConnector::new(spec)?),
            SourceSpec::Demo => Self::Demo(DemoConnector),
            #[cfg(feature = "v4l2")]
            SourceSpec::V4l2(p) => {
                Self::V4l2(crate::v4l2::V4l2Connector::new(p.clone(), spec.to_string()))
            }
            #[cfg(not(feature = "v4l2"))]
            SourceSpec::V4l2(_) => {
                return Err(Error::Unsupported {
                    camera: spec.to_string(),
                    detail: "this build has no V4L2 support (cargo feature `v4l2`)".into(),
                });
            }
            _ => Self::Bytes(ByteConnector::new(spec.clone(), policy.stall_timeout)?),
        })
    }
}

/// Opens `spec` as a reconnecting [`Source`]. Nothing connects until the first
/// [`crate::CameraSource::next_event`].
///
/// # Errors
/// As [`AnyConnector::new`].
pub fn open(spec: &SourceSpec, policy: ReconnectPolicy) -> Result<Source, Error> {
    Ok(ReconnectingSource::new(
        AnyConnector::new(spec, &policy)?,
        policy,
    ))
}

impl Connector for AnyConnector {
    type Session = AnySession;

    fn camera(&self) -> String {
        match self {
            Self::Rtsp(c) => c.camera(),
            Self::Bytes(c) => c.camera(),
            #[cfg(feature = "v4l2")]
            Self::V4l2(c) => c.camera(),
            Self::Demo(c) => c.camera(),
        }
    }

    async fn connect(&mut self) -> Result<AnySession, Error> {
        Ok(match self {
            Self::Rtsp(c) => AnySession::Rtsp(c.connect().await?),
            Self::Bytes(c) => AnySession::Bytes(c.connect().await?),
            #[cfg(feature = "v4l2")]
            Self::V4l2(c) => AnySession::V4l2(c.connect().await?),
            Self::Demo(c) => AnySession::Demo(c.connect().await?),
        })
    }
}

impl MediaSession for AnySession {
    fn params(&self) -> &StreamParams {
        match self {
            Self::Rtsp(s) => s.params(),
            Self::Bytes(s) => s.params(),
            #[cfg(feature = "v4l2")]
            Self::V4l2(s) => s.params(),
            Self::Demo(s) => s.params(),
        }
    }

    async fn next_unit(&mut self) -> Result<Option<MediaUnit>, Error> {
        match self {
            Self::Rtsp(s) => s.next_unit().await,
            Self::Bytes(s) => s.next_unit().await,
            #[cfg(feature = "v4l2")]
            Self::V4l2(s) => s.next_unit().await,
            Self::Demo(s) => s.next_unit().await,
        }
    }
}
