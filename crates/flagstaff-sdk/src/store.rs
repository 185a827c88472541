//! The in-memory data store: the last flag data received and the compiled snapshot evaluations
//! read.
//!
//! Evaluations never lock: they load the current `Arc<Snapshot>` from an [`ArcSwap`] (a few
//! nanoseconds) and evaluate against it, so an update that arrives mid-evaluation cannot tear a
//! result. Updates (stream `put`/`patch`/`delete`, a poll, a file reload) are serialised by a
//! mutex, applied to the payload with LaunchDarkly's version rules (§2.6, §4.2), recompiled
//! into a new snapshot and swapped in. Recompiling the whole environment per patch is simple and
//! fast enough (milliseconds for thousands of flags; patches are rare next to evaluations).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use flagstaff_eval::Snapshot;
use flagstaff_protocol::{Clause, Flag, FlagData, Segment};

/// The store.
#[derive(Debug)]
pub(crate) struct Store {
    snapshot: ArcSwap<Snapshot>,
    data: Mutex<FlagData>,
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
            data: Mutex::new(FlagData::default()),
        }
    }

    /// The snapshot evaluations use now.
    #[inline]
    pub(crate) fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// A copy of the raw data (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn data(&self) -> FlagData {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FlagData> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces everything (a stream `put`, a poll, a file read). Returns the keys of the flags
    /// whose result may have changed.
    pub(crate) fn replace(&self, new: FlagData) -> BTreeSet<String> {
        let mut data = self.lock();
        let changed = changed_flags(&data, &new);
        *data = new;
        self.snapshot.store(Arc::new(Snapshot::compile(&data)));
        changed
    }

    /// Applies one update if its version is greater than what is stored (a deletion is an update
    /// to a tombstone). Returns the affected flag keys; empty when the update was stale.
    pub(crate) fn apply(&self, update: Update) -> BTreeSet<String> {
        let mut data = self.lock();
        // Whether a result can change: a tombstone replacing a tombstone (or nothing) cannot.
        let (changed, key, is_flag) = match update {
            Update::Flag(flag) => {
                let old = data.flags.get(&flag.key);
                if old.is_some_and(|f| f.version >= flag.version) {
                    return BTreeSet::new();
                }
                let changed = old.is_some_and(|f| !f.deleted) || !flag.deleted;
                let key = flag.key.clone();
                data.flags.insert(key.clone(), flag);
                (changed, key, true)
            }
            Update::Segment(segment) => {
                let old = data.segments.get(&segment.key);
                if old.is_some_and(|s| s.version >= segment.version) {
                    return BTreeSet::new();
                }
                let changed = old.is_some_and(|s| !s.deleted) || !segment.deleted;
                let key = segment.key.clone();
                data.segments.insert(key.clone(), segment);
                (changed, key, false)
            }
        };
        self.snapshot.store(Arc::new(Snapshot::compile(&data)));
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
pub(crate) fn changed_flags(old: &FlagData, new: &FlagData) -> BTreeSet<String> {
    fn live_flag<'a>(d: &'a FlagData, k: &str) -> Option<&'a Flag> {
        d.flags.get(k).filter(|f| !f.deleted)
    }
    fn live_segment<'a>(d: &'a FlagData, k: &str) -> Option<&'a Segment> {
        d.segments.get(k).filter(|s| !s.deleted)
    }
    let changed_flags: BTreeSet<String> = old
        .flags
        .keys()
        .chain(new.flags.keys())
        .filter(|key| live_flag(old, key) != live_flag(new, key))
        .cloned()
        .collect();
    let changed_segments: BTreeSet<String> = old
        .segments
        .keys()
        .chain(new.segments.keys())
        .filter(|key| live_segment(old, key) != live_segment(new, key))
        .cloned()
        .collect();
    // Dependencies are read from both versions, so that a dependency that was just removed
    // still counts.
    spread(&[old, new], changed_flags, changed_segments)
}

/// Adds to `changed_flags` every flag that uses a changed flag (as a prerequisite) or a changed
/// segment (in a `segmentMatch` clause, also through segments that include it), transitively,
/// with the references read from `sources`.
fn spread(
    sources: &[&FlagData],
    mut changed_flags: BTreeSet<String>,
    mut changed_segments: BTreeSet<String>,
) -> BTreeSet<String> {
    if changed_segments.is_empty() && changed_flags.is_empty() {
        return changed_flags;
    }
    let mut segment_users: BTreeMap<&str, Vec<User<'_>>> = BTreeMap::new();
    let mut flag_users: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for data in sources {
        for segment in data.segments.values() {
            for rule in &segment.rules {
                for key in segment_refs(&rule.clauses) {
                    segment_users
                        .entry(key)
                        .or_default()
                        .push(User::Segment(&segment.key));
                }
            }
        }
        for flag in data.flags.values() {
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
        assert_eq!(keys(&changed_flags(&before, &after)), ["a", "b", "c"]);
        let mut after = before.clone();
        after.segments.get_mut("inner").unwrap().version = 2;
        assert_eq!(keys(&changed_flags(&before, &after)), ["s"]);
        assert!(changed_flags(&before, &before).is_empty());
        // A deletion is a change; a tombstone replacing a tombstone is not.
        let mut after = before.clone();
        after.flags.insert("z".into(), Flag::tombstone("z", 2));
        assert_eq!(keys(&changed_flags(&before, &after)), ["z"]);
        let mut later = after.clone();
        later.flags.insert("z".into(), Flag::tombstone("z", 3));
        assert!(changed_flags(&after, &later).is_empty());
    }

    #[test]
    fn updates_apply_only_when_newer() {
        let store = Store::new();
        store.replace(data(json!({"flags": {"f": {"version": 5, "on": true, "variations": [true], "fallthrough": {"variation": 0}}}})));
        let stale = Flag {
            version: 5,
            ..store.data().flags["f"].clone()
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
