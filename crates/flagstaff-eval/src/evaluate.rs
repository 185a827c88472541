//! The flag evaluation algorithm (`ld-protocol.md` §3.2–3.8).
//!
//! Evaluation walks a compiled [`Snapshot`] for one context. It never allocates on the common
//! path: values and reasons borrow from the snapshot, the prerequisite and segment chains used
//! for cycle detection live on the stack, and bucketing hashes incrementally.
//!
//! Two kinds of failure exist, as in the Go reference engine:
//! - a *result* error (a variation index out of range, an empty rollout) makes that flag's result
//!   `ERROR / MALFORMED_FLAG`; inside a prerequisite it only makes the prerequisite unsatisfied;
//! - a *hard* error (a clause with an undefined or invalid attribute, a prerequisite or segment
//!   cycle) aborts the whole top-level evaluation with `ERROR / MALFORMED_FLAG`.

use std::fmt;

use flagstaff_protocol::{
    AttrValue, BigSegmentsStatus, Clause, Context, ErrorKind, Kind, Reason, ReasonKind,
};
use serde_json::Value;

use crate::big_segments::BigSegmentMembership;
use crate::bucket::bucket;
use crate::clause::{ClauseTest, CompiledClause};
use crate::keyset::KeySet;
use crate::snapshot::{
    CompiledFlag, CompiledRollout, Constant, FlagId, Outcome, SegmentId, Snapshot,
};

/// The result of evaluating a flag: the value, its variation index and the reason, all borrowed
/// from the snapshot. `value` is `None` when there is no variation (off with no off variation,
/// or an error); the caller then uses its default, as SDKs do.
#[derive(Clone, Debug, PartialEq)]
pub struct Detail<'a> {
    /// The variation value.
    pub value: Option<&'a Value>,
    /// The variation index.
    pub variation_index: Option<usize>,
    /// Why this result.
    pub reason: Reason<&'a str>,
}

impl<'a> Detail<'a> {
    /// A result with no value.
    pub const fn error(kind: ErrorKind) -> Detail<'a> {
        Detail {
            value: None,
            variation_index: None,
            reason: Reason::error(kind),
        }
    }
}

/// Receives what happens during an evaluation. The unit type `()` ignores everything and costs
/// nothing; [`Trace`] records a human-readable explanation.
pub trait Observer {
    /// Whether [`Observer::explain`] wants to be called. Checked before formatting anything, so
    /// the no-op observer compiles the whole trace away.
    const EXPLAINS: bool = false;

    /// A prerequisite was evaluated on the way to `parent`'s result (§3.3 step 5). SDKs count
    /// these in summaries and may send feature events with `prereqOf`.
    fn prerequisite_evaluated(
        &mut self,
        parent: &CompiledFlag,
        prerequisite: &CompiledFlag,
        result: &Detail<'_>,
    ) {
        let _ = (parent, prerequisite, result);
    }

    /// One step of the explanation; `depth` is the nesting level (prerequisites, segments).
    fn explain(&mut self, depth: usize, message: fmt::Arguments<'_>) {
        let _ = (depth, message);
    }
}

impl Observer for () {}

/// An observer that records the explanation as indented lines.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// The explanation, one step per line.
    pub lines: Vec<String>,
}

impl Observer for Trace {
    const EXPLAINS: bool = true;

    fn explain(&mut self, depth: usize, message: fmt::Arguments<'_>) {
        self.lines
            .push(format!("{:indent$}{message}", "", indent = depth * 2));
    }
}

/// How deep prerequisites and nested segments may go before evaluation gives up with
/// `MALFORMED_FLAG`. LaunchDarkly sets no limit, but evaluation recurses, and a chain thousands
/// deep would overflow the thread's stack and abort the process. Real chains are a few levels.
pub const MAX_DEPTH: usize = 100;

/// A small stack of ids for cycle detection. Chains deeper than the inline capacity spill to the
/// heap; real data almost never nests that deep.
struct Chain {
    inline: [u32; 8],
    len: usize,
    spill: Vec<u32>,
}

impl Chain {
    const fn new() -> Chain {
        Chain {
            inline: [0; 8],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn contains(&self, id: u32) -> bool {
        self.inline[..self.len.min(8)].contains(&id) || self.spill.contains(&id)
    }

    fn push(&mut self, id: u32) {
        if self.len < 8 {
            self.inline[self.len] = id;
        } else {
            self.spill.push(id);
        }
        self.len += 1;
    }

    fn pop(&mut self) {
        self.len -= 1;
        if self.len >= 8 {
            self.spill.pop();
        }
    }
}

/// A hard error: abort the whole evaluation with `MALFORMED_FLAG`.
struct Abort;

struct Evaluation<'a, 'c, 'o, O: Observer> {
    snapshot: &'a Snapshot,
    context: &'c Context,
    observer: &'o mut O,
    prerequisites: Chain,
    segments: Chain,
    big_segments_status: Option<BigSegmentsStatus>,
    /// Big-segment membership looked up for this context, when the caller has a store.
    big_segments: Option<&'c BigSegmentMembership>,
    /// Nesting of the explanation: one level per prerequisite and per segment being evaluated.
    depth: usize,
}

/// Reports one explanation step. The check on `O::EXPLAINS` is a constant, so with the no-op
/// observer neither the arguments nor the call survive compilation.
macro_rules! explain {
    ($eval:expr, $($arg:tt)*) => {
        if O::EXPLAINS {
            $eval.observer.explain($eval.depth, format_args!($($arg)*));
        }
    };
}

impl Snapshot {
    /// Evaluates the flag `key` for `context`. A missing or deleted flag is `FLAG_NOT_FOUND`.
    pub fn evaluate<'a>(&'a self, key: &str, context: &Context) -> Detail<'a> {
        match self.flag_id(key) {
            Some(id) => self.evaluate_observed(id, context, &mut ()),
            None => Detail::error(ErrorKind::FlagNotFound),
        }
    }

    /// Evaluates the flag `id` for `context`.
    #[inline]
    pub fn evaluate_id<'a>(&'a self, id: FlagId, context: &Context) -> Detail<'a> {
        self.evaluate_observed(id, context, &mut ())
    }

    /// Evaluates the flag `id` for `context`, reporting prerequisite evaluations and explanation
    /// steps to `observer`.
    #[inline]
    pub fn evaluate_observed<'a, O: Observer>(
        &'a self,
        id: FlagId,
        context: &Context,
        observer: &mut O,
    ) -> Detail<'a> {
        self.evaluate_observed_with(id, context, observer, None)
    }

    /// [`Snapshot::evaluate_observed`] with the context's big-segment membership (§3.7.1).
    #[inline]
    pub fn evaluate_observed_with<'a, O: Observer>(
        &'a self,
        id: FlagId,
        context: &Context,
        observer: &mut O,
        big_segments: Option<&BigSegmentMembership>,
    ) -> Detail<'a> {
        let flag = self.flag(id);
        // A flag whose result cannot depend on the context (off, or on with nothing but a fixed
        // fallthrough) is answered without walking the algorithm, and inline at the call site,
        // so the result is built where the caller wants it. Explaining observers still take the
        // full path so that they see every step.
        if !O::EXPLAINS {
            match flag.constant {
                Some(Constant::Off) => return off_result(flag, Reason::off()),
                Some(Constant::Fallthrough(index)) => {
                    let reason = ReasonKind::Fallthrough {
                        in_experiment: false,
                    };
                    return variation(flag, index, Reason::new(reason));
                }
                None => {}
            }
        }
        self.evaluate_walk(flag, id, context, observer, big_segments)
    }

    /// The full algorithm, for flags whose result depends on the context.
    fn evaluate_walk<'a, O: Observer>(
        &'a self,
        flag: &'a CompiledFlag,
        id: FlagId,
        context: &Context,
        observer: &mut O,
        big_segments: Option<&BigSegmentMembership>,
    ) -> Detail<'a> {
        let mut evaluation = Evaluation {
            snapshot: self,
            context,
            observer,
            prerequisites: Chain::new(),
            segments: Chain::new(),
            big_segments_status: None,
            big_segments,
            depth: 0,
        };
        // `flag_inner` rather than `flag`: the top level is not recursive, so it can be inlined
        // here and the result built where it is returned.
        let result = evaluation.flag_inner(flag, id);
        if let Ok(detail) = &result {
            explain!(
                evaluation,
                "flag {:?} -> {}",
                flag.source.key,
                describe_result(detail)
            );
        }
        let mut detail = match result {
            Ok(detail) => detail,
            Err(Abort) => {
                explain!(evaluation, "evaluation aborted: MALFORMED_FLAG");
                Detail::error(ErrorKind::MalformedFlag)
            }
        };
        // Written only when set: an unconditional one-byte store into the finished result
        // stalls the copy that returns it (store-to-load forwarding), measurably on every call.
        if evaluation.big_segments_status.is_some() {
            detail.reason.big_segments_status = evaluation.big_segments_status;
        }
        detail
    }
}

#[inline]
fn variation<'a>(flag: &'a CompiledFlag, index: i64, reason: Reason<&'a str>) -> Detail<'a> {
    match usize::try_from(index)
        .ok()
        .and_then(|i| Some((i, flag.source.variations.get(i)?)))
    {
        Some((i, value)) => Detail {
            value: Some(value),
            variation_index: Some(i),
            reason,
        },
        None => Detail::error(ErrorKind::MalformedFlag),
    }
}

#[inline]
fn off_result<'a>(flag: &'a CompiledFlag, reason: Reason<&'a str>) -> Detail<'a> {
    match flag.source.off_variation {
        Some(index) => variation(flag, index, reason),
        None => Detail {
            value: None,
            variation_index: None,
            reason,
        },
    }
}

/// Describes a result for the explanation: `variation 1 (true)`, or why there is no value.
fn describe_result(detail: &Detail<'_>) -> String {
    match (
        detail.variation_index,
        detail.value,
        detail.reason.error_kind(),
    ) {
        (Some(i), Some(value), _) => format!("variation {i} ({value})"),
        (_, _, Some(kind)) => format!("error {kind:?}: the caller's default"),
        _ => "no variation: the caller's default".to_owned(),
    }
}

/// Describes a clause for the explanation, in the words of the flag data.
fn describe_clause(clause: &Clause) -> String {
    let values = serde_json::to_string(&clause.values).unwrap_or_default();
    let not = if clause.negate { "not " } else { "" };
    if clause.op == "segmentMatch" {
        return format!("{not}segmentMatch {values}");
    }
    let kind = clause.context_kind.as_deref().unwrap_or(Kind::USER);
    format!("{kind} {:?} {not}{} {values}", clause.attribute, clause.op)
}

impl<'a, O: Observer> Evaluation<'a, '_, '_, O> {
    fn flag(&mut self, id: FlagId) -> Result<Detail<'a>, Abort> {
        let flag = self.snapshot.flag(id);
        let detail = self.flag_inner(flag, id)?;
        explain!(
            self,
            "flag {:?} -> {}",
            flag.source.key,
            describe_result(&detail)
        );
        Ok(detail)
    }

    #[inline]
    fn flag_inner(&mut self, flag: &'a CompiledFlag, id: FlagId) -> Result<Detail<'a>, Abort> {
        let source = &flag.source;
        if !source.on {
            explain!(
                self,
                "flag {:?} is off: serving the off variation",
                source.key
            );
            return Ok(off_result(flag, Reason::off()));
        }
        if !flag.prerequisites.is_empty() {
            self.prerequisites.push(id.0);
            let failed = self.check_prerequisites(flag);
            self.prerequisites.pop();
            if let Some(key) = failed? {
                explain!(
                    self,
                    "prerequisite {key:?} is not met: serving the off variation"
                );
                let reason = ReasonKind::PrerequisiteFailed {
                    prerequisite_key: key,
                };
                return Ok(off_result(flag, Reason::new(reason)));
            }
        }
        for target in flag.targets.iter() {
            if let Some(individual) = self.context.individual(&target.kind)
                && target.keys.contains(individual.key())
            {
                explain!(
                    self,
                    "individual target: {} key {:?} is targeted with variation {}",
                    target.kind,
                    individual.key(),
                    target.variation
                );
                let reason = Reason::new(ReasonKind::TargetMatch);
                return Ok(variation(flag, target.variation, reason));
            }
        }
        for (rule_index, (rule, rule_source)) in flag.rules.iter().zip(&source.rules).enumerate() {
            let rule_id = rule_source.id.as_str();
            explain!(self, "rule {rule_index} ({rule_id:?}):");
            if self.clauses_match(&rule.clauses, &rule_source.clauses)? {
                explain!(self, "rule {rule_index} matches");
                return Ok(self.serve(flag, &rule.outcome, |in_experiment| {
                    ReasonKind::RuleMatch {
                        rule_index,
                        rule_id,
                        in_experiment,
                    }
                }));
            }
        }
        explain!(self, "no target or rule matched: serving the fallthrough");
        Ok(self.serve(flag, &flag.fallthrough, |in_experiment| {
            ReasonKind::Fallthrough { in_experiment }
        }))
    }

    /// Returns the key of the first unmet prerequisite (§3.3).
    fn check_prerequisites(&mut self, flag: &'a CompiledFlag) -> Result<Option<&'a str>, Abort> {
        for (prerequisite, resolved) in flag
            .source
            .prerequisites
            .iter()
            .zip(flag.prerequisites.iter())
        {
            let Some(id) = *resolved else {
                explain!(self, "prerequisite {:?} does not exist", prerequisite.key);
                return Ok(Some(&prerequisite.key));
            };
            if self.prerequisites.contains(id.0) {
                explain!(self, "prerequisite {:?} closes a cycle", prerequisite.key);
                return Err(Abort);
            }
            if self.prerequisites.len >= MAX_DEPTH {
                explain!(self, "prerequisites nest deeper than {MAX_DEPTH} levels");
                return Err(Abort);
            }
            explain!(
                self,
                "prerequisite {:?} must be on and return variation {}:",
                prerequisite.key,
                prerequisite.variation
            );
            self.depth += 1;
            let result = self.flag(id);
            self.depth -= 1;
            let result = result?;
            let prerequisite_flag = self.snapshot.flag(id);
            self.observer
                .prerequisite_evaluated(flag, prerequisite_flag, &result);
            let met = prerequisite_flag.source.on
                && result
                    .variation_index
                    .is_some_and(|i| i64::try_from(i) == Ok(prerequisite.variation));
            if !met {
                return Ok(Some(&prerequisite.key));
            }
        }
        Ok(None)
    }

    /// Serves a rule's or the fallthrough's variation or rollout.
    #[inline]
    fn serve(
        &mut self,
        flag: &'a CompiledFlag,
        outcome: &'a Outcome,
        reason: impl FnOnce(bool) -> ReasonKind<&'a str>,
    ) -> Detail<'a> {
        match outcome {
            Outcome::Variation(index) => variation(flag, *index, Reason::new(reason(false))),
            Outcome::Rollout(rollout) => match self.roll(rollout) {
                Some((index, in_experiment)) => {
                    variation(flag, index, Reason::new(reason(in_experiment)))
                }
                None => Detail::error(ErrorKind::MalformedFlag),
            },
            Outcome::Malformed => {
                explain!(
                    self,
                    "neither a variation nor a non-empty rollout: malformed"
                );
                Detail::error(ErrorKind::MalformedFlag)
            }
        }
    }

    /// Picks a rollout bucket (§3.8.1); `None` for an invalid `bucketBy` reference.
    #[inline]
    fn roll(&mut self, rollout: &CompiledRollout) -> Option<(i64, bool)> {
        if rollout.bucket_by.error().is_some() {
            explain!(
                self,
                "rollout bucketBy {:?} is not a valid attribute reference: malformed",
                rollout.bucket_by.as_str()
            );
            return None;
        }
        let (value, kind_found) = match self.context.individual(&rollout.context_kind) {
            None => (0.0, false),
            Some(individual) => {
                let secondary = individual.secondary().filter(|_| {
                    self.snapshot.options.secondary_key_bucketing && !rollout.experiment
                });
                let attribute = if rollout.by_key {
                    Some(AttrValue::Str(individual.key()))
                } else {
                    individual.get(&rollout.bucket_by)
                };
                let value = attribute.and_then(|v| bucket(&rollout.prefix, v, secondary));
                (value.unwrap_or(0.0), true)
            }
        };
        let chosen = rollout
            .buckets
            .iter()
            .find(|b| value < b.upper)
            .or(rollout.buckets.last())?;
        let in_experiment = rollout.experiment && !chosen.untracked && kind_found;
        explain!(
            self,
            "{}: {} {:?} hashed with prefix {:?} is in bucket {value:.5} -> variation {}{}",
            if rollout.experiment {
                "experiment"
            } else {
                "rollout"
            },
            rollout.context_kind,
            rollout.bucket_by.as_str(),
            rollout.prefix.as_str(),
            chosen.variation,
            if in_experiment {
                " (in the experiment)"
            } else {
                ""
            }
        );
        Some((chosen.variation, in_experiment))
    }

    /// All clauses must match; `sources` are the same clauses as written in the flag data, used
    /// only to explain.
    fn clauses_match(
        &mut self,
        clauses: &[CompiledClause],
        sources: &[Clause],
    ) -> Result<bool, Abort> {
        for (i, (clause, source)) in clauses.iter().zip(sources).enumerate() {
            explain!(self, "  clause {i}: {}", describe_clause(source));
            let matched = self.clause(clause)?;
            explain!(self, "  clause {i} is {matched}");
            if !matched {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Matches one clause (§3.5). A missing context kind or attribute is false even if negated.
    fn clause(&mut self, clause: &CompiledClause) -> Result<bool, Abort> {
        match &clause.test {
            ClauseTest::Segments(ids) => {
                for id in ids.iter() {
                    if self.segment_contains(*id)? {
                        return Ok(!clause.negate);
                    }
                }
                Ok(clause.negate)
            }
            ClauseTest::Malformed(why) => {
                explain!(self, "  {why}: malformed");
                Err(Abort)
            }
            ClauseTest::Kind(matcher) => {
                let any = self
                    .context
                    .individuals()
                    .iter()
                    .any(|c| matcher.matches(AttrValue::Str(c.kind().as_str())));
                Ok(any != clause.negate)
            }
            ClauseTest::Attribute {
                kind,
                attribute,
                matcher,
            } => {
                let Some(individual) = self.context.individual(kind) else {
                    explain!(
                        self,
                        "  the context has no {kind:?} kind, so the clause is false"
                    );
                    return Ok(false);
                };
                let Some(value) = individual.get(attribute) else {
                    explain!(
                        self,
                        "  {kind} attribute {:?} is not set, so the clause is false",
                        attribute.as_str()
                    );
                    return Ok(false);
                };
                explain!(
                    self,
                    "  {kind} attribute {:?} is {}",
                    attribute.as_str(),
                    value.to_json()
                );
                let matched = match value.as_array() {
                    Some(items) => items
                        .iter()
                        .any(|item| matcher.matches(AttrValue::Json(item))),
                    None => matcher.matches(value),
                };
                Ok(matched != clause.negate)
            }
        }
    }

    fn segment_contains(&mut self, id: SegmentId) -> Result<bool, Abort> {
        let key = &self.snapshot.segment(id).source.key;
        if self.segments.contains(id.0) {
            explain!(self, "  segment {key:?} closes a cycle");
            return Err(Abort);
        }
        if self.segments.len >= MAX_DEPTH {
            explain!(self, "  segments nest deeper than {MAX_DEPTH} levels");
            return Err(Abort);
        }
        explain!(self, "  segment {key:?}:");
        self.segments.push(id.0);
        self.depth += 1;
        let contains = self.segment_contains_inner(id);
        self.depth -= 1;
        self.segments.pop();
        if let Ok(contains) = contains {
            let verdict = if contains { "a member" } else { "not a member" };
            explain!(self, "  segment {key:?}: the context is {verdict}");
        }
        contains
    }

    /// Segment membership (§3.7): explicit lists first (include beats exclude), then rules.
    fn segment_contains_inner(&mut self, id: SegmentId) -> Result<bool, Abort> {
        let segment = self.snapshot.segment(id);
        let context = self.context;
        if segment.source.unbounded {
            // §3.7.1. Big-segment membership lives in an external store. Without a generation
            // the segment cannot be looked up and cannot match.
            let kind = segment
                .source
                .unbounded_context_kind
                .as_deref()
                .filter(|k| !k.is_empty())
                .unwrap_or(Kind::USER);
            match self.big_segments {
                None => {
                    // No store connected to this evaluator: the membership is unknown and the
                    // rules decide.
                    self.big_segments_status = Some(BigSegmentsStatus::NotConfigured);
                    explain!(
                        self,
                        "big segment with no big-segment store: only its rules apply"
                    );
                    if segment.source.generation.is_none() || context.individual(kind).is_none() {
                        return Ok(false);
                    }
                }
                Some(_) if segment.source.generation.is_none() => {
                    self.big_segments_status = Some(BigSegmentsStatus::NotConfigured);
                    return Ok(false);
                }
                Some(membership) => {
                    self.big_segments_status
                        .get_or_insert(BigSegmentsStatus::Healthy);
                    let Some(member) = context.individual(kind) else {
                        return Ok(false);
                    };
                    match membership.get(member.key(), &segment.source.key) {
                        Some(true) => {
                            explain!(self, "included in the big segment");
                            return Ok(true);
                        }
                        Some(false) => {
                            explain!(self, "excluded from the big segment");
                            return Ok(false);
                        }
                        None => explain!(self, "not listed in the big segment: its rules decide"),
                    }
                }
            }
        } else {
            let user_key = context.individual(Kind::USER).map(|u| u.key());
            // §3.7: `included`/`excluded` hold user keys; the per-kind lists are consulted for
            // anything but a plain single-kind user context.
            let only_user = !context.is_multi() && user_key.is_some();
            let listed = |keys: &KeySet, by_kind: &[(Box<str>, KeySet)]| {
                user_key.is_some_and(|k| keys.contains(k))
                    || (!only_user
                        && by_kind.iter().any(|(kind, keys)| {
                            context
                                .individual(kind)
                                .is_some_and(|c| keys.contains(c.key()))
                        }))
            };
            if listed(&segment.included, &segment.included_contexts) {
                explain!(self, "included by key");
                return Ok(true);
            }
            if listed(&segment.excluded, &segment.excluded_contexts) {
                explain!(self, "excluded by key");
                return Ok(false);
            }
        }
        for (rule, rule_source) in segment.rules.iter().zip(&segment.source.rules) {
            explain!(self, "rule {:?}:", rule_source.id);
            if !self.clauses_match(&rule.clauses, &rule_source.clauses)? {
                continue;
            }
            let Some(weight) = rule.weight else {
                return Ok(true);
            };
            if rule.bucket_by.error().is_some() {
                explain!(
                    self,
                    "  bucketBy {:?} is not a valid attribute reference",
                    rule.bucket_by.as_str()
                );
                return Err(Abort);
            }
            // Go reference: a context without the rollout kind is not matched by a weighted rule
            // (§3.7); a missing or unbucketable attribute buckets at 0.
            let Some(individual) = context.individual(&rule.rollout_context_kind) else {
                continue;
            };
            let secondary = individual
                .secondary()
                .filter(|_| self.snapshot.options.secondary_key_bucketing);
            let value = individual
                .get(&rule.bucket_by)
                .and_then(|v| bucket(&segment.prefix, v, secondary))
                .unwrap_or(0.0);
            let inside = value < weight as f32 / 100_000.0;
            explain!(
                self,
                "  weighted rule: bucket {value:.5} against weight {weight}: {inside}"
            );
            if inside {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
