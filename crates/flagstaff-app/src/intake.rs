//! Analytics and diagnostic events from SDKs (`ld-protocol.md` §6), as a use case: parse a
//! payload that delivery authorized and read, then hand it to the events pipeline, which queues
//! it with a bound and writes it in batches (ARCHITECTURE.md, invariant 16). Nothing here waits
//! for a database.

pub use flagstaff_events::{KINDS as EVENT_KINDS, SdkIdentity, Source as EventSource};

use crate::{App, AppError, ErrorCode};

/// How many events of each kind (in [`EVENT_KINDS`] order) a payload held.
pub type EventCounts = [u64; EVENT_KINDS.len()];

/// Parses an analytics payload (or, with `diagnostic`, one diagnostic event): what the server
/// queues and a relay forwards. A payload that is not JSON or not the shape the endpoint takes
/// is `invalid_json` or `invalid_payload`, the same answer wherever it was sent. At most
/// `samples` full events are kept as samples (a relay, which only counts, keeps none).
pub fn parse_events(
    source: EventSource,
    bytes: &[u8],
    diagnostic: bool,
    samples: usize,
) -> Result<flagstaff_events::Batch, AppError> {
    let parsed = if diagnostic {
        flagstaff_events::parse_diagnostic(source, bytes)
    } else {
        flagstaff_events::parse_analytics_sampling(source, bytes, samples)
    };
    parsed.map_err(|e| {
        let code = match e {
            flagstaff_events::PayloadError::NotJson(_) => ErrorCode::InvalidJson,
            flagstaff_events::PayloadError::NotArray
            | flagstaff_events::PayloadError::NotObject => ErrorCode::InvalidPayload,
        };
        AppError::invalid(code, "", e.to_string())
    })
}

impl App {
    /// Parses an analytics payload (or, with `diagnostic`, one diagnostic event) and queues it
    /// for insights when the pipeline is on. A payload that is not JSON or not the shape the
    /// endpoint takes is refused, and counted as rejected.
    pub fn ingest_events(
        &self,
        source: EventSource,
        bytes: &[u8],
        diagnostic: bool,
        payload_id: Option<&str>,
    ) -> Result<EventCounts, AppError> {
        let samples = self
            .pipeline
            .as_ref()
            .map_or(0, |pipeline| pipeline.samples_wanted(&source.environment));
        let batch = parse_events(source, bytes, diagnostic, samples).inspect_err(|_| {
            self.record_rejected_events();
        })?;
        let counts = batch.kinds;
        if let Some(pipeline) = &self.pipeline {
            pipeline.submit(batch, payload_id);
        }
        Ok(counts)
    }

    /// Counts a payload refused before it could be parsed (too large, bad gzip), for the
    /// ingestion health that insights show.
    pub fn record_rejected_events(&self) {
        if let Some(pipeline) = &self.pipeline {
            pipeline.record_rejected();
        }
    }
}
