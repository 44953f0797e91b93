//! The crate's error type, classified by blame: the configuration (`source` string), the
//! camera (refused, wrong password, unsupported codec), the network or process around it.

/// Why a source could not be opened or stopped delivering.
///
/// Every variant that concerns a camera carries `camera`: the source string with any
/// password replaced by `***`, so the message can be logged and shown as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `source` string could not be parsed.
    #[error("invalid source {input:?}: {reason}")]
    InvalidSpec {
        /// The string (credentials redacted).
        input: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// The camera or server could not be reached (refused, unreachable, name lookup failed).
    #[error("{camera}: cannot connect: {detail}")]
    Connect {
        /// The source, credentials redacted.
        camera: String,
        /// The underlying error.
        detail: String,
    },
    /// The camera rejected the credentials (RTSP/HTTP 401 or 403).
    #[error(
        "{camera}: the camera rejected the user name or password (status {status}); check the \
         credentials in the source URL"
    )]
    Auth {
        /// The source, credentials redacted.
        camera: String,
        /// The RTSP or HTTP status code.
        status: u16,
    },
    /// The camera sends video HKSV cannot record without transcoding.
    #[error(
        "{camera}: the camera sends {found} video; HomeKit Secure Video needs H.264 \
         (set the camera's video codec, or its substream, to H.264)"
    )]
    UnsupportedCodec {
        /// The source, credentials redacted.
        camera: String,
        /// What was found, e.g. `"H.265"`, `"MJPEG"`.
        found: String,
    },
    /// A feature of the source string that this build cannot serve.
    #[error("{camera}: {detail}")]
    Unsupported {
        /// The source, credentials redacted.
        camera: String,
        /// What is unsupported and what to do instead.
        detail: String,
    },
    /// No data for longer than the stall timeout (the watchdog fired).
    #[error("{camera}: no data for {waited_ms} ms; reconnecting")]
    Stalled {
        /// The source, credentials redacted.
        camera: String,
        /// How long the watchdog waited.
        waited_ms: u64,
    },
    /// The stream ended (EOF, child exit, server closed the session).
    #[error("{camera}: stream ended: {detail}")]
    Ended {
        /// The source, credentials redacted.
        camera: String,
        /// Why, with the child's exit status and last stderr lines when there was one.
        detail: String,
    },
    /// The stream delivered bytes we could not use (bad framing, broken container).
    #[error("{camera}: bad stream: {detail}")]
    Stream {
        /// The source, credentials redacted.
        camera: String,
        /// What was wrong.
        detail: String,
    },
    /// Writing the `check` output files failed.
    #[error("cannot write {path}: {detail}")]
    Output {
        /// The file.
        path: String,
        /// The IO error.
        detail: String,
    },
}

impl Error {
    /// Errors that retrying cannot fix: a bad source string, wrong credentials, an
    /// unsupported codec or feature. [`crate::ReconnectingSource`] returns these instead of
    /// reconnecting.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::InvalidSpec { .. }
                | Self::Auth { .. }
                | Self::UnsupportedCodec { .. }
                | Self::Unsupported { .. }
                | Self::Output { .. }
        )
    }
}
