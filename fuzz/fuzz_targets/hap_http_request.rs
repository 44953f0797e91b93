//! HAP HTTP request parser: never panics, and feeding the same bytes in two pieces (split at a
//! fuzzed offset, as TCP may deliver them) gives the same request as parsing them at once.
#![no_main]

use hap_server::http::{Limits, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, input)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_head_bytes: 1024,
        max_body_bytes: 4096,
    };
    let whole = parse_request(input, &limits);
    if let Ok(Some((req, used))) = &whole {
        assert!(*used <= input.len());
        assert!(req.body.len() <= limits.max_body_bytes);
        let _ = req.query_pairs();
    }
    // Incremental delivery: a prefix is either incomplete, or already the same answer.
    let cut = usize::from(cut).min(input.len());
    let (head, _) = input.split_at(cut);
    match parse_request(head, &limits) {
        Ok(None) => {}
        Ok(Some(early)) => assert_eq!(Ok(Some(early)), whole),
        Err(e) => assert!(whole.is_err() || matches!(e, hap_server::http::HttpError::HeadTooLarge)),
    }
});
