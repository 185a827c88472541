//! Wire types shared by everything that speaks the LaunchDarkly SDK protocols.
//!
//! This crate holds data, not behaviour: the flag and segment model (`ld-protocol.md` §2.2–2.6),
//! evaluation contexts (§2.7), attribute references (§2.8) and evaluation reasons (§3.9). Every
//! type here is what goes onto the wire to an SDK, so changing one is a compatibility decision
//! (ARCHITECTURE.md, invariant 2). It depends on serde only: no I/O, no runtime.
//!
//! Deserialisation is lenient where the LaunchDarkly SDKs are lenient (unknown properties are
//! ignored, absent arrays are empty) and strict where they are strict (a `version` must be an
//! integer). Problems that only show at evaluation time, such as an out-of-range variation index,
//! are not rejected here; the evaluator reports them as `MALFORMED_FLAG`.
#![forbid(unsafe_code)]

mod attr_ref;
mod context;
mod credential;
mod data;
mod evaluated;
mod flag;
mod keyed;
mod reason;
mod segment;

pub use attr_ref::{AttrRef, AttrRefError};
pub use context::{AttrValue, Attributes, Context, ContextError, IndividualContext, Kind};
pub use credential::CredentialKind;
pub use data::{DataError, FlagData};
pub use evaluated::{EvaluatedFlag, FlagState};
pub use flag::{
    Clause, ClientSideAvailability, Flag, FlagRule, MIGRATION_STAGES, Migration, Prerequisite,
    Rollout, RolloutKind, Target, VariationOrRollout, WeightedVariation,
};
pub use keyed::{ByKey, Keyed};
pub use reason::{BigSegmentsStatus, ErrorKind, Reason, ReasonKind};
pub use segment::{Segment, SegmentRule, SegmentTarget};
