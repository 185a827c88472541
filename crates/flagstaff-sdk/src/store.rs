//! The in-memory data store: the last flag data received and the compiled snapshot evaluations
//! read.
//!
//! Evaluations never lock: they load the current `Arc<Snapshot>` from an [`ArcSwap`] (a few
//! nanoseconds) and evaluate against it, so an update that arrives mid-evaluation cannot tear a
//! result. Updates (stream `put`/`patch`/`delete`, a poll, a file reload) are serialised by a
//! mutex and applied to the data with LaunchDarkly's version rules (§2.6, §4.2); a new snapshot
//! is swapped in.
//!
//! Each flag and segment exists once in memory: the data keeps them in `Arc`s that the snapshot
//! shares (`Snapshot::compile_shared`). A `put` compiles everything; a `patch` to an existing
//! flag or segment recompiles only that item (`Snapshot::with_flag`), and only a new key or a
//! deletion recompiles the environment.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use flagstaff_eval::{EvalOptions, Snapshot};
use flagstaff_protocol::{ByKey, Clause, Flag, FlagData, Segment};

/// Flags and segments in key order, tombstones included, shared with the snapshot.
#[derive(Debug, Default)]
pub(crate) struct Data {
    pub(crate) flags: Items<Flag>,
    pub(crate) segments: Items<Segment>,
}

/// Items ordered and found by their own key, which is not copied into the set (a copied key
/// costs about 40 bytes per flag).
pub(crate) type Items<T> = BTreeSet<ByKey<T>>;

impl From<FlagData> for Data {
    /// Moves a payload's items into `Arc`s, copying nothing. (The payload's map keys equal the
    /// items' keys: `FlagData` reading guarantees it.)
    fn from(data: FlagData) -> Data {
        Data {
            flags: data
                .flags
                .into_values()
                .map(|f| ByKey(Arc::new(f)))
                .collect(),
            segments: data
                .segments
                .into_values()
                .map(|s| ByKey(Arc::new(s)))
                .collect(),
        }
    }
}

impl Data {
    fn compile(&self) -> Snapshot {
        Snapshot::compile_shared(
            self.flags.iter().map(|f| &f.0),
            self.segments.iter().map(|s| &s.0),
            EvalOptions::default(),
        )
    }
}

/// The store.
#[derive(Debug)]
pub(crate) struct Store {
    snapshot: ArcSwap<Snapshot>,
    data: Mutex<Data>,
}

/// One item update from a stream `patch` or `delete`.
#[derive(Debug)]
pub(crate) enum Update {
    /// Upsert a flag if newer.
    Flag(Flag),
    /// Upsert a segment if newer.
    Segment(Segment),
}

impl Store {
    pub(crate) fn new() -> Store {
        Store {
            snapshot: ArcSwap::from_pointee(Snapshot::compile(&FlagData::default())),
            data: Mutex::new(Data::default()),
        }
    }

    /// The snapshot evaluations use now.
    #[inline]
    pub(crate) fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// A copy of one flag as stored (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn flag(&self, key: &str) -> Option<Flag> {
        self.lock().flags.get(key).map(|f| (*f.0).clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces everything (a stream `put`, a poll, a file read). Returns the keys of the flags
    /// whose result may have changed.
    pub(crate) fn replace(&self, new: FlagData) -> BTreeSet<String> {
        let new = Data::from(new);
        let mut data = self.lock();
        let changed = changed_flags(&data, &new);
        *data = new;
        self.snapshot.store(Arc::new(data.compile()));
        changed
    }

    /// Applies one update if its version is greater than what is stored (a deletion is an update
    /// to a tombstone). Returns the affected flag keys; empty when the update was stale.
    pub(crate) fn apply(&self, update: Update) -> BTreeSet<String> {
        let mut data = self.lock();
        // Whether a result can change: a tombstone replacing a tombstone (or nothing) cannot.
        let current = self.snapshot.load();
        let (changed, key, is_flag, patched) = match update {
            Update::Flag(flag) => {
                let old = data.flags.get(flag.key.as_str()).map(|f| &f.0);
                if old.is_some_and(|f| f.version >= flag.version) {
                    return BTreeSet::new();
                }
                let changed = old.is_some_and(|f| !f.deleted) || !flag.deleted;
                let key = flag.key.clone();
                let flag = Arc::new(flag);
                data.flags.replace(ByKey(Arc::clone(&flag)));
                (changed, key, true, current.with_flag(flag))
            }
            Update::Segment(segment) => {
                let old = data.segments.get(segment.key.as_str()).map(|s| &s.0);
                if old.is_some_and(|s| s.version >= segment.version) {
                    return BTreeSet::new();
                }
                let changed = old.is_some_and(|s| !s.deleted) || !segment.deleted;
                let key = segment.key.clone();
                let segment = Arc::new(segment);
                data.segments.replace(ByKey(Arc::clone(&segment)));
                (changed, key, false, current.with_segment(segment))
            }
        };
        let next = patched.unwrap_or_else(|| data.compile());
        self.snapshot.store(Arc::new(next));
        if !changed {
            return BTreeSet::new();
        }
        // Who refers to the changed item is read from the current data alone: the item's own
        // old references only matter for the item itself, which is already counted.
        let (flags, segments) = if is_flag {
            (BTreeSet::from([key]), BTreeSet::new())
        } else {
            (BTreeSet::new(), BTreeSet::from([key]))
        };
        spread(&[&data], flags, segments)
    }
}

/// The flags whose configuration differs between `old` and `new`, directly or through a
/// prerequisite or a segment they use (transitively), which is what LaunchDarkly's flag-change
/// listeners report.
pub(crate) fn changed_flags(old: &Data, new: &Data) -> BTreeSet<String> {
    fn live_flag<'a>(d: &'a Data, k: &str) -> Option<&'a Flag> {
        d.flags.get(k).map(|f| &*f.0).filter(|f| !f.deleted)
    }
    fn live_segment<'a>(d: &'a Data, k: &str) -> Option<&'a Segment> {
        d.segments.get(k).map(|s| &*s.0).filter(|s| !s.deleted)
    }
    let changed_flags: BTreeSet<String> = old
        .flags
        .iter()
        .chain(&new.flags)
        .map(|f| f.0.key.as_str())
        .filter(|key| live_flag(old, key) != live_flag(new, key))
        .map(str::to_owned)
        .collect();
    let changed_segments: BTreeSet<String> = old
        .segments
        .iter()
        .chain(&new.segments)
        .map(|s| s.0.key.as_str())
        .filter(|key| live_segment(old, key) != live_segment(new, key))
        .map(str::to_owned)
        .collect();
    // Dependencies are read from both versions, so that a dependency that was just removed
    // still counts.
    spread(&[old, new], changed_flags, changed_segments)
}

/// Adds to `changed_flags` every flag that uses a changed flag (as a prerequisite) or a changed
/// segment (in a `segmentMatch` clause, also through segments that include it), transitively,
/// with the references read from `sources`.
fn spread(
    sources: &[&Data],
    mut changed_flags: BTreeSet<String>,
    mut changed_segments: BTreeSet<String>,
) -> BTreeSet<String> {
    if changed_segments.is_empty() && changed_flags.is_empty() {
        return changed_flags;
    }
    let mut segment_users: BTreeMap<&str, Vec<User<'_>>> = BTreeMap::new();
    let mut flag_users: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for data in sources {
        for segment in data.segments.iter().map(|s| &s.0) {
            for rule in &segment.rules {
                for key in segment_refs(&rule.clauses) {
                    segment_users
                        .entry(key)
                        .or_default()
                        .push(User::Segment(&segment.key));
                }
            }
        }
        for flag in data.flags.iter().map(|f| &f.0) {
            for prerequisite in &flag.prerequisites {
                flag_users
                    .entry(&prerequisite.key)
                    .or_default()
                    .push(&flag.key);
            }
            for rule in &flag.rules {
                for key in segment_refs(&rule.clauses) {
                    segment_users
                        .entry(key)
                        .or_default()
                        .push(User::Flag(&flag.key));
                }
            }
        }
    }
    // Segments that include changed segments have changed too, and so have the flags using any
    // of them.
    let mut pending: Vec<String> = changed_segments.iter().cloned().collect();
    while let Some(segment) = pending.pop() {
        for user in segment_users.get(segment.as_str()).into_iter().flatten() {
            match *user {
                User::Flag(flag) => {
                    changed_flags.insert(flag.to_owned());
                }
                User::Segment(other) => {
                    if changed_segments.insert(other.to_owned()) {
                        pending.push(other.to_owned());
                    }
                }
            }
        }
    }
    let mut pending: Vec<String> = changed_flags.iter().cloned().collect();
    while let Some(flag) = pending.pop() {
        for user in flag_users.get(flag.as_str()).into_iter().flatten() {
            if changed_flags.insert((*user).to_owned()) {
                pending.push((*user).to_owned());
            }
        }
    }
    changed_flags
}

/// Something that refers to a segment in a `segmentMatch` clause.
#[derive(Clone, Copy)]
enum User<'a> {
    Flag(&'a str),
    Segment(&'a str),
}

fn segment_refs(clauses: &[Clause]) -> impl Iterator<Item = &str> {
    clauses
        .iter()
        .filter(|c| c.op == "segmentMatch")
        .flat_map(|c| c.values.iter().filter_map(|v| v.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(value: serde_json::Value) -> FlagData {
        FlagData::from_json(value).unwrap()
    }

    fn shared(data: &FlagData) -> Data {
        Data::from(data.clone())
    }

    fn keys(set: &BTreeSet<String>) -> Vec<&str> {
        set.iter().map(String::as_str).collect()
    }

    #[test]
    fn changes_spread_through_prerequisites_and_segments() {
        let before = data(json!({
            "flags": {
                "a": {"version": 1, "on": true},
                "b": {"version": 1, "prerequisites": [{"key": "a", "variation": 0}]},
                "c": {"version": 1, "prerequisites": [{"key": "b", "variation": 0}]},
                "s": {"version": 1, "rules": [{"clauses": [{"attribute": "", "op": "segmentMatch", "values": ["outer"]}]}]},
                "z": {"version": 1}
            },
            "segments": {
                "inner": {"version": 1},
                "outer": {"version": 1, "rules": [{"clauses": [{"attribute": "", "op": "segmentMatch", "values": ["inner"]}]}]}
            }
        }));
        let mut after = before.clone();
        after.flags.get_mut("a").unwrap().version = 2;
        let changed = |a: &FlagData, b: &FlagData| changed_flags(&shared(a), &shared(b));
        assert_eq!(keys(&changed(&before, &after)), ["a", "b", "c"]);
        let mut after = before.clone();
        after.segments.get_mut("inner").unwrap().version = 2;
        assert_eq!(keys(&changed(&before, &after)), ["s"]);
        assert!(changed(&before, &before).is_empty());
        // A deletion is a change; a tombstone replacing a tombstone is not.
        let mut after = before.clone();
        after.flags.insert("z".into(), Flag::tombstone("z", 2));
        assert_eq!(keys(&changed(&before, &after)), ["z"]);
        let mut later = after.clone();
        later.flags.insert("z".into(), Flag::tombstone("z", 3));
        assert!(changed(&after, &later).is_empty());
    }

    #[test]
    fn updates_apply_only_when_newer() {
        let store = Store::new();
        store.replace(data(json!({"flags": {"f": {"version": 5, "on": true, "variations": [true], "fallthrough": {"variation": 0}}}})));
        let stale = Flag {
            version: 5,
            ..store.flag("f").unwrap()
        };
        assert!(
            store
                .apply(Update::Flag(Flag { on: false, ..stale }))
                .is_empty()
        );
        assert!(store.snapshot().flag_by_key("f").unwrap().source().on);
        assert_eq!(
            keys(&store.apply(Update::Flag(Flag::tombstone("f", 6)))),
            ["f"]
        );
        assert!(store.snapshot().flag_by_key("f").is_none());
        // The tombstone blocks an older re-creation.
        let old = Flag {
            key: "f".into(),
            version: 6,
            ..Flag::default()
        };
        assert!(store.apply(Update::Flag(old)).is_empty());
        assert!(store.snapshot().flag_by_key("f").is_none());
    }
}
