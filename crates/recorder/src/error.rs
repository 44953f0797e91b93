//! The crate's error type, grouped by who is to blame: the camera's bitstream, the container
//! we were asked to demux, or the caller's configuration.

/// Why an access unit, audio frame, container or configuration was rejected.
///
/// The recorder never panics on bad input: the offending unit is dropped, this error says why,
/// and the next good keyframe resynchronises the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// H.264 bytes that are not a valid NAL unit sequence (ITU-T H.264 Annex B / ISO/IEC
    /// 14496-15 §5.3.3 length prefixes).
    #[error("malformed H.264 access unit: {0}")]
    MalformedVideo(&'static str),
    /// An SPS that h264-reader could not parse (ITU-T H.264 §7.3.2.1).
    #[error("unparseable SPS: {0}")]
    BadSps(String),
    /// An IDR arrived but no SPS/PPS has been seen in band or set out of band.
    #[error("IDR without SPS/PPS; set them out of band or send them in band before the IDR")]
    MissingParameterSets,
    /// A timestamp went backwards (or repeated) by less than the discontinuity threshold.
    #[error("non-monotonic {track} timestamp: {got} after {previous}")]
    NonMonotonic {
        /// `"video"` (90 kHz decode time) or `"audio"` (sample-rate ticks).
        track: &'static str,
        /// The previous timestamp.
        previous: i64,
        /// The rejected timestamp.
        got: i64,
    },
    /// A fragment grew past the byte or duration bound without a keyframe; its samples were
    /// dropped and the fragmenter waits for the next IDR.
    #[error("no keyframe for {duration_ms} ms / {bytes} bytes; dropped the pending fragment")]
    FragmentTooLong {
        /// Duration accumulated since the fragment's keyframe.
        duration_ms: u64,
        /// Bytes accumulated since the fragment's keyframe.
        bytes: usize,
    },
    /// A raw AAC frame arrived but no AudioSpecificConfig is known (ISO/IEC 14496-3 §1.6.2.1).
    #[error("raw AAC frame without an AudioSpecificConfig")]
    AudioWithoutConfig,
    /// Malformed AAC: bad ADTS header (ISO/IEC 13818-7 §6.2) or AudioSpecificConfig.
    #[error("malformed AAC: {0}")]
    MalformedAudio(&'static str),
    /// An MP4 file that the demuxer cannot read (ISO/IEC 14496-12).
    #[error("malformed MP4: {0}")]
    MalformedMp4(String),
    /// A configuration value out of its documented range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
}

/// Why a prebuffer reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReaderError {
    /// The reader did not keep up: its bounded queue overflowed and it was dropped.
    #[error("reader fell behind by more than {queue_len} fragments and was dropped")]
    Lagged {
        /// The queue bound that was exceeded.
        queue_len: usize,
    },
    /// The camera's parameter sets changed; a new init segment started a new recording.
    #[error("the init segment changed; start a new recording")]
    InitChanged,
    /// The ring was closed (the camera source ended).
    #[error("the prebuffer ring was closed")]
    Closed,
}
