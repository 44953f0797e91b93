//! Annex B byte streams: the access-unit splitter (fed in two pieces at a fuzzed split point)
//! and the fragmenter's NAL parsing must never panic, and the splitter must not lose or invent
//! bytes when it does not hit its size bound.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use recorder::fuzzing::AnnexBSplitter;
use recorder::{Fragmenter, FragmenterConfig, H264Framing, VideoAccessUnit};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(stream.len());
    let (a, b) = stream.split_at(cut);
    let mut splitter = AnnexBSplitter::new(1 << 20);
    let ok = splitter.push(a).is_ok() && splitter.push(b).is_ok();
    splitter.finish();
    let mut fragmenter = Fragmenter::new(FragmenterConfig::default()).unwrap();
    let mut total = 0;
    let mut t = 0;
    while let Some(au) = splitter.pull() {
        total += au.len();
        let _ = recorder::fuzzing::split_annexb(&au);
        t += 3000;
        let _ = fragmenter.push_video(VideoAccessUnit {
            pts_90k: t,
            dts_90k: None,
            data: au,
            framing: H264Framing::AnnexB,
        });
        while fragmenter.poll_event().is_some() {}
    }
    assert!(!ok || total <= stream.len());
    let _ = fragmenter.push_video(VideoAccessUnit {
        pts_90k: t + 3000,
        dts_90k: None,
        data: Bytes::copy_from_slice(stream),
        framing: H264Framing::Avcc {
            length_size_bytes: 4,
        },
    });
});
