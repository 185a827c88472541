//! The Rust SDK's Server-Sent Events parser: arbitrary bytes from a server, cut into arbitrary
//! chunks. The first byte chooses the chunk size. Whatever the bytes and however they are cut,
//! the parser must give the same events as when fed everything at once, and never panic.
#![no_main]

use flagstaff_sdk::sse::Parser;
use libfuzzer_sys::fuzz_target;

const MAX_LINE: usize = 4096;

fuzz_target!(|input: &[u8]| {
    let Some((&first, stream)) = input.split_first() else {
        return;
    };
    let chunk = usize::from(first % 17) + 1;
    let mut whole = Parser::new(MAX_LINE, String::new());
    let mut all_at_once = Vec::new();
    let whole_result = whole.push(stream, &mut all_at_once);

    let mut pieces = Parser::new(MAX_LINE, String::new());
    let mut chunked = Vec::new();
    let mut chunked_result = Ok(());
    for piece in stream.chunks(chunk) {
        chunked_result = pieces.push(piece, &mut chunked);
        if chunked_result.is_err() {
            break;
        }
    }
    assert_eq!(whole_result.is_err(), chunked_result.is_err());
    if whole_result.is_ok() {
        assert_eq!(all_at_once, chunked);
        assert_eq!(whole.last_event_id(), pieces.last_event_id());
    }
});
