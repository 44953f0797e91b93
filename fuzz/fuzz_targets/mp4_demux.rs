//! The MP4 demuxer on arbitrary bytes: never panics, and every sample range it reports lies
//! inside the file; the same for the moov-only index of regular files (`demux::index`), with
//! the bytes taken as a `moov` body.
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
    let file_len = 1u64 << 20;
    let _ = recorder::demux::moov_is_fragmented(data);
    if let Ok(tracks) = recorder::demux::index(data, file_len) {
        for t in &tracks {
            for s in &t.samples {
                assert!(s.range.end as u64 <= file_len && s.range.start <= s.range.end);
            }
        }
    }
});
