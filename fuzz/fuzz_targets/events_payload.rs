//! The events intake's payload reader (`ld-protocol.md` §6): arbitrary bytes as an analytics
//! payload and as a diagnostic event, the way `POST /bulk` and the browser and mobile paths
//! hand them over after reading and inflating them. Every refusal must be an `Err`; a panic,
//! an abort or a hang is a bug. An accepted payload must account for each of its events.
#![no_main]

use std::sync::Arc;

use flagstaff_events::{KINDS, SdkIdentity, Source, parse_analytics, parse_diagnostic};
use libfuzzer_sys::fuzz_target;

fn source(schema: u32) -> Source {
    Source {
        environment: Arc::from("fuzz/production"),
        sdk: SdkIdentity::from_headers(Some("PythonClient/9.1.0"), None, None),
        schema,
        unsummarized: schema < 3,
        received_at: 1_800_000_000_000,
    }
}

fuzz_target!(|input: &[u8]| {
    let schema = input.first().map_or(4, |b| u32::from(b % 5));
    if let Ok(batch) = parse_analytics(source(schema), input) {
        let counted: u64 = batch.kinds.iter().sum();
        assert_eq!(counted, batch.events, "every event is counted under one kind");
        assert_eq!(batch.kinds.len(), KINDS.len());
    }
    let _ = parse_diagnostic(source(schema), input);
});
