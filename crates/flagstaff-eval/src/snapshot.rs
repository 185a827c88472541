//! A compiled, immutable view of one environment's flags and segments.
//!
//! [`Snapshot::compile`] does every piece of work that does not depend on the context: it
//! resolves prerequisite and segment keys to indexes, parses clause values, hashes long key
//! lists, precomputes bucketing prefixes and cumulative rollout weights. Compilation never fails:
//! data that cannot be evaluated compiles to something that yields `MALFORMED_FLAG` at evaluation
//! time, exactly when and where a LaunchDarkly SDK would report it.

use std::collections::HashMap;
use std::sync::Arc;

use flagstaff_protocol::{
    AttrRef, ByKey, Flag, FlagData, Kind, RolloutKind, Segment, VariationOrRollout,
};
use foldhash::fast::RandomState;

use crate::bucket::BucketPrefix;
use crate::clause::CompiledClause;
use crate::keyset::KeySet;

/// Index of a flag in a [`Snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlagId(pub(crate) u32);

/// Index of a segment in a [`Snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SegmentId(pub(crate) u32);

/// Options that change evaluation results; fixed per snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvalOptions {
    /// Append a legacy user's `secondary` key to the bucketing input of rollouts and weighted
    /// segment rules (never experiments). LaunchDarkly does this only when it evaluates flags for
    /// client-side SDKs (`ld-protocol.md` §3.8.4); server-side SDKs ignore `secondary`.
    pub secondary_key_bucketing: bool,
}

/// One environment's flags and segments, compiled for evaluation.
#[derive(Debug)]
pub struct Snapshot {
    /// Shared between snapshots: [`Snapshot::with_flag`] makes a snapshot that differs in one
    /// flag and shares every other compiled flag.
    pub(crate) flags: Vec<Arc<CompiledFlag>>,
    flag_ids: HashMap<ByKey<Flag>, FlagId, RandomState>,
    pub(crate) segments: Vec<Arc<CompiledSegment>>,
    segment_ids: HashMap<ByKey<Segment>, SegmentId, RandomState>,
    pub(crate) options: EvalOptions,
}

/// A flag compiled for evaluation. Deleted flags are not compiled: they do not exist.
#[derive(Debug)]
pub struct CompiledFlag {
    /// Shared with whoever holds the flag data (an SDK's store), not copied.
    pub(crate) source: Arc<Flag>,
    /// Parallel to `source.prerequisites`; `None` where the prerequisite flag does not exist.
    pub(crate) prerequisites: Box<[Option<FlagId>]>,
    pub(crate) targets: Box<[CompiledTarget]>,
    /// Parallel to `source.rules`.
    pub(crate) rules: Box<[CompiledRule]>,
    pub(crate) fallthrough: Outcome,
    /// Set when the result cannot depend on the context.
    pub(crate) constant: Option<Constant>,
}

/// The shape of a flag whose result is the same for every context.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Constant {
    /// Off: the off variation (or none) with reason `OFF`.
    Off,
    /// On with no prerequisites, targets or rules and a fixed fallthrough variation.
    Fallthrough(i64),
}

impl CompiledFlag {
    /// The flag as it was delivered (for events and client-side payloads).
    pub fn source(&self) -> &Flag {
        &self.source
    }

    /// The flag key.
    pub fn key(&self) -> &str {
        &self.source.key
    }
}

/// An individual-target check, in evaluation order (§3.4).
#[derive(Debug)]
pub(crate) struct CompiledTarget {
    pub(crate) kind: Box<str>,
    pub(crate) keys: KeySet,
    pub(crate) variation: i64,
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) clauses: Box<[CompiledClause]>,
    pub(crate) outcome: Outcome,
}

/// What a rule or the fallthrough serves.
#[derive(Debug)]
pub(crate) enum Outcome {
    Variation(i64),
    Rollout(CompiledRollout),
    /// Neither a variation nor a non-empty rollout: `MALFORMED_FLAG` when reached.
    Malformed,
}

#[derive(Debug)]
pub(crate) struct CompiledRollout {
    pub(crate) experiment: bool,
    pub(crate) context_kind: Box<str>,
    /// The attribute bucketed by; for experiments always `key`. May be invalid (→ malformed).
    pub(crate) bucket_by: AttrRef,
    /// `bucket_by` is the context key, which is read directly.
    pub(crate) by_key: bool,
    /// The hash prefix: the seed in decimal if present, else `flagKey.salt`.
    pub(crate) prefix: BucketPrefix,
    pub(crate) buckets: Box<[Bucket]>,
}

#[derive(Debug)]
pub(crate) struct Bucket {
    pub(crate) variation: i64,
    /// Cumulative upper bound in [0, 1], summed in `f32` as the reference engines do.
    pub(crate) upper: f32,
    pub(crate) untracked: bool,
}

/// A segment compiled for evaluation.
#[derive(Debug)]
pub(crate) struct CompiledSegment {
    pub(crate) source: Arc<Segment>,
    pub(crate) included: KeySet,
    pub(crate) excluded: KeySet,
    pub(crate) included_contexts: Box<[(Box<str>, KeySet)]>,
    pub(crate) excluded_contexts: Box<[(Box<str>, KeySet)]>,
    pub(crate) rules: Box<[CompiledSegmentRule]>,
    /// `segmentKey.salt`, the bucketing prefix for weighted rules.
    pub(crate) prefix: BucketPrefix,
}

#[derive(Debug)]
pub(crate) struct CompiledSegmentRule {
    pub(crate) clauses: Box<[CompiledClause]>,
    pub(crate) weight: Option<i64>,
    pub(crate) bucket_by: AttrRef,
    pub(crate) rollout_context_kind: Box<str>,
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// `bucketBy` is an attribute reference only when the sibling context kind is present (§2.8).
fn bucket_by_ref(bucket_by: Option<&str>, context_kind: Option<&str>) -> AttrRef {
    match (non_empty(bucket_by), non_empty(context_kind)) {
        (None, _) => AttrRef::new("key"),
        (Some(attr), Some(_)) => AttrRef::new(attr),
        (Some(attr), None) => AttrRef::literal(attr),
    }
}

impl Snapshot {
    /// Compiles a payload with default options.
    pub fn compile(data: &FlagData) -> Snapshot {
        Snapshot::compile_with(data, EvalOptions::default())
    }

    /// Compiles a payload.
    pub fn compile_with(data: &FlagData, options: EvalOptions) -> Snapshot {
        Snapshot::compile_live(
            data.flags
                .values()
                .filter(|f| !f.deleted)
                .map(|f| Arc::new(f.clone()))
                .collect(),
            data.segments
                .values()
                .filter(|s| !s.deleted)
                .map(|s| Arc::new(s.clone()))
                .collect(),
            options,
        )
    }

    /// Compiles flags and segments held in `Arc`s (tombstones included, each list in key
    /// order, as a payload's maps give them), sharing them instead of copying: for an SDK that
    /// keeps the data to apply later patches, the flags then exist once in memory, not twice.
    pub fn compile_shared<'a>(
        flags: impl IntoIterator<Item = &'a Arc<Flag>>,
        segments: impl IntoIterator<Item = &'a Arc<Segment>>,
        options: EvalOptions,
    ) -> Snapshot {
        Snapshot::compile_live(
            flags.into_iter().filter(|f| !f.deleted).cloned().collect(),
            segments
                .into_iter()
                .filter(|s| !s.deleted)
                .cloned()
                .collect(),
            options,
        )
    }

    /// Compiles live (not deleted) flags and segments, each list in key order.
    fn compile_live(
        live_flags: Vec<Arc<Flag>>,
        live_segments: Vec<Arc<Segment>>,
        options: EvalOptions,
    ) -> Snapshot {
        let segment_ids: HashMap<ByKey<Segment>, SegmentId, RandomState> = live_segments
            .iter()
            .enumerate()
            .map(|(i, s)| (ByKey(Arc::clone(s)), SegmentId(i as u32)))
            .collect();
        let flag_ids: HashMap<ByKey<Flag>, FlagId, RandomState> = live_flags
            .iter()
            .enumerate()
            .map(|(i, f)| (ByKey(Arc::clone(f)), FlagId(i as u32)))
            .collect();
        let segment_id = |key: &str| segment_ids.get(key).copied();
        let segments = live_segments
            .into_iter()
            .map(|s| Arc::new(compile_segment(s, &segment_id)))
            .collect();
        let flags = live_flags
            .into_iter()
            .map(|f| {
                Arc::new(compile_flag(
                    f,
                    |key| flag_ids.get(key).copied(),
                    &segment_id,
                ))
            })
            .collect();
        Snapshot {
            flags,
            flag_ids,
            segments,
            segment_ids,
            options,
        }
    }

    /// This snapshot with one flag replaced by a newer version of it, compiling only that flag
    /// and sharing every other one (a stream `patch`: milliseconds saved per patch on large
    /// environments, and no second copy of every compiled flag while the new snapshot is
    /// built). `None` when the change affects more than that flag's own compilation: a new
    /// key or a deletion (other flags' prerequisite references and the key order change);
    /// compile the whole data then.
    pub fn with_flag(&self, flag: Arc<Flag>) -> Option<Snapshot> {
        if flag.deleted {
            return None;
        }
        let id = self.flag_id(&flag.key)?;
        // The index is keyed by the flag itself: it must hold the new version, or the old one
        // would stay in memory as long as this snapshot (`insert` keeps an equal old key).
        let mut flag_ids = self.flag_ids.clone();
        flag_ids.remove(flag.key.as_str());
        flag_ids.insert(ByKey(Arc::clone(&flag)), id);
        let segment_id = |key: &str| self.segment_ids.get(key).copied();
        let compiled = compile_flag(flag, |key| self.flag_id(key), &segment_id);
        let mut flags = self.flags.clone();
        flags[id.0 as usize] = Arc::new(compiled);
        Some(Snapshot {
            flags,
            flag_ids,
            segments: self.segments.clone(),
            segment_ids: self.segment_ids.clone(),
            options: self.options,
        })
    }

    /// This snapshot with one segment replaced by a newer version of it (see
    /// [`Snapshot::with_flag`]). Flags refer to segments by id, so no flag is recompiled.
    /// `None` for a new key or a deletion.
    pub fn with_segment(&self, segment: Arc<Segment>) -> Option<Snapshot> {
        if segment.deleted {
            return None;
        }
        let id = *self.segment_ids.get(segment.key.as_str())?;
        let mut segment_ids = self.segment_ids.clone();
        segment_ids.remove(segment.key.as_str());
        segment_ids.insert(ByKey(Arc::clone(&segment)), id);
        let segment_id = |key: &str| segment_ids.get(key).copied();
        let compiled = compile_segment(segment, &segment_id);
        let mut segments = self.segments.clone();
        segments[id.0 as usize] = Arc::new(compiled);
        Some(Snapshot {
            flags: self.flags.clone(),
            flag_ids: self.flag_ids.clone(),
            segments,
            segment_ids,
            options: self.options,
        })
    }

    /// The id of the flag with `key`, if it exists (and is not deleted).
    #[inline]
    pub fn flag_id(&self, key: &str) -> Option<FlagId> {
        self.flag_ids.get(key).copied()
    }

    /// The flag with `id`.
    #[inline]
    pub fn flag(&self, id: FlagId) -> &CompiledFlag {
        &self.flags[id.0 as usize]
    }

    /// The flag with `key`, if it exists.
    pub fn flag_by_key(&self, key: &str) -> Option<&CompiledFlag> {
        self.flag_id(key).map(|id| self.flag(id))
    }

    /// Every flag, in key order.
    pub fn flags(&self) -> impl ExactSizeIterator<Item = &CompiledFlag> {
        self.flags.iter().map(|flag| &**flag)
    }

    /// Every flag with its id, in key order.
    pub fn flag_ids(&self) -> impl ExactSizeIterator<Item = (FlagId, &CompiledFlag)> {
        self.flags
            .iter()
            .enumerate()
            .map(|(i, flag)| (FlagId(i as u32), &**flag))
    }

    /// The options the snapshot was compiled with.
    pub fn options(&self) -> EvalOptions {
        self.options
    }

    pub(crate) fn segment(&self, id: SegmentId) -> &CompiledSegment {
        &self.segments[id.0 as usize]
    }
}

fn compile_outcome(vr: &VariationOrRollout, flag: &Flag) -> Outcome {
    if let Some(variation) = vr.variation {
        return Outcome::Variation(variation);
    }
    let Some(rollout) = vr.rollout.as_ref().filter(|r| !r.variations.is_empty()) else {
        return Outcome::Malformed;
    };
    let experiment = rollout.kind == Some(RolloutKind::Experiment);
    let context_kind = non_empty(rollout.context_kind.as_deref());
    let bucket_by = if experiment {
        AttrRef::new("key")
    } else {
        bucket_by_ref(rollout.bucket_by.as_deref(), context_kind)
    };
    let prefix = match rollout.seed {
        Some(seed) => seed.to_string(),
        None => format!("{}.{}", flag.key, flag.salt),
    };
    let mut sum = 0f32;
    let buckets = rollout
        .variations
        .iter()
        .map(|wv| {
            sum += wv.weight as f32 / 100_000.0;
            Bucket {
                variation: wv.variation,
                upper: sum,
                untracked: wv.untracked,
            }
        })
        .collect();
    Outcome::Rollout(CompiledRollout {
        by_key: bucket_by.is_name("key"),
        experiment,
        context_kind: context_kind.unwrap_or(Kind::USER).into(),
        bucket_by,
        prefix: BucketPrefix::new(&prefix),
        buckets,
    })
}

/// Builds the ordered target checks of §3.4. User keys live in `targets`; when `contextTargets`
/// is present, an empty user-kind entry there stands for the first `targets` entry with the same
/// variation (Go reference behaviour; LaunchDarkly always emits that shape).
fn compile_targets(flag: &Flag) -> Box<[CompiledTarget]> {
    let user = |values: &[String], variation: i64| CompiledTarget {
        kind: Kind::USER.into(),
        keys: KeySet::new(values.iter().map(String::as_str)),
        variation,
    };
    if flag.context_targets.is_empty() {
        return flag
            .targets
            .iter()
            .map(|t| user(&t.values, t.variation))
            .collect();
    }
    flag.context_targets
        .iter()
        .filter_map(|t| {
            let kind = non_empty(t.context_kind.as_deref()).unwrap_or(Kind::USER);
            if kind == Kind::USER && t.values.is_empty() {
                let legacy = flag.targets.iter().find(|u| u.variation == t.variation)?;
                Some(user(&legacy.values, legacy.variation))
            } else {
                Some(CompiledTarget {
                    kind: kind.into(),
                    keys: KeySet::new(t.values.iter().map(String::as_str)),
                    variation: t.variation,
                })
            }
        })
        .filter(|t| !t.keys.is_empty())
        .collect()
}

fn compile_flag(
    flag: Arc<Flag>,
    flag_id: impl Fn(&str) -> Option<FlagId>,
    segment_id: &impl Fn(&str) -> Option<SegmentId>,
) -> CompiledFlag {
    let targets = compile_targets(&flag);
    let constant = if !flag.on {
        Some(Constant::Off)
    } else if flag.prerequisites.is_empty() && targets.is_empty() && flag.rules.is_empty() {
        flag.fallthrough.variation.map(Constant::Fallthrough)
    } else {
        None
    };
    CompiledFlag {
        constant,
        prerequisites: flag.prerequisites.iter().map(|p| flag_id(&p.key)).collect(),
        targets,
        rules: flag
            .rules
            .iter()
            .map(|rule| CompiledRule {
                clauses: rule
                    .clauses
                    .iter()
                    .map(|c| CompiledClause::compile(c, segment_id))
                    .collect(),
                outcome: compile_outcome(&rule.variation_or_rollout, &flag),
            })
            .collect(),
        fallthrough: compile_outcome(&flag.fallthrough, &flag),
        source: flag,
    }
}

fn compile_segment(
    segment: Arc<Segment>,
    segment_id: &impl Fn(&str) -> Option<SegmentId>,
) -> CompiledSegment {
    let by_kind = |targets: &[flagstaff_protocol::SegmentTarget]| {
        targets
            .iter()
            .map(|t| {
                let kind = non_empty(t.context_kind.as_deref()).unwrap_or(Kind::USER);
                (
                    Box::from(kind),
                    KeySet::new(t.values.iter().map(String::as_str)),
                )
            })
            .collect()
    };
    CompiledSegment {
        included: KeySet::new(segment.included.iter().map(String::as_str)),
        excluded: KeySet::new(segment.excluded.iter().map(String::as_str)),
        included_contexts: by_kind(&segment.included_contexts),
        excluded_contexts: by_kind(&segment.excluded_contexts),
        rules: segment
            .rules
            .iter()
            .map(|rule| CompiledSegmentRule {
                clauses: rule
                    .clauses
                    .iter()
                    .map(|c| CompiledClause::compile(c, segment_id))
                    .collect(),
                weight: rule.weight,
                bucket_by: bucket_by_ref(
                    rule.bucket_by.as_deref(),
                    rule.rollout_context_kind.as_deref(),
                ),
                rollout_context_kind: non_empty(rule.rollout_context_kind.as_deref())
                    .unwrap_or(Kind::USER)
                    .into(),
            })
            .collect(),
        prefix: BucketPrefix::new(&format!("{}.{}", segment.key, segment.salt)),
        source: segment,
    }
}
