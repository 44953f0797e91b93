//! The MP4 demuxer on arbitrary bytes: never panics, and every sample range it reports lies
//! inside the file.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = recorder::demux::demux(Bytes::copy_from_slice(data)) {
        for t in &file.tracks {
            for s in &t.samples {
                assert!(s.range.end <= data.len() && s.range.start <= s.range.end);
            }
        }
        let _ = file.media_units();
    }
});
