//! Editing a flag's variations without changing what anyone is served.
//!
//! Targeting refers to variations by position (`ld-protocol.md` §2.2: `offVariation`,
//! `fallthrough.variation`, `targets[].variation`, `rules[].variation`, rollout buckets, and
//! other flags' `prerequisites[].variation`). Reordering or removing a variation therefore has
//! to rewrite every one of those positions in the same change, or a flag that served "blue"
//! silently starts serving "green". A [`VariationMap`] says where each variation of the new list
//! came from; [`VariationMap::remap`] rewrites one targeting with it and reports every place
//! that still serves a removed variation, so that the change can be refused with an explanation
//! instead.

use flagstaff_protocol::{Prerequisite, VariationOrRollout};

use crate::model::{Targeting, Variation};

/// Where each variation of a flag's new list came from: `origins[i]` is the position in the old
/// list of new variation `i`, or `None` for a variation added by the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariationMap {
    origins: Vec<Option<usize>>,
    old_len: usize,
}

/// A place in one environment's targeting that serves a variation being removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Use {
    /// The variation's position in the old list (from 0).
    pub variation: usize,
    /// Where, in words: "the off variation", "the default rule", "rule 2", "individual targets",
    /// or "flag checkout's prerequisite".
    pub place: String,
}

impl VariationMap {
    /// The map the caller states. Every origin must name an old position at most once.
    pub fn explicit(origins: Vec<Option<usize>>, old_len: usize) -> Result<VariationMap, String> {
        let mut seen = vec![false; old_len];
        for (i, origin) in origins.iter().enumerate() {
            if let Some(o) = *origin {
                match seen.get_mut(o) {
                    None => {
                        return Err(format!(
                            "variation {} says it was variation {}, but there were only {old_len}",
                            i + 1,
                            o + 1
                        ));
                    }
                    Some(true) => {
                        return Err(format!(
                            "variation {} was variation {}, which is already taken",
                            i + 1,
                            o + 1
                        ));
                    }
                    Some(s) => *s = true,
                }
            }
        }
        Ok(VariationMap { origins, old_len })
    }

    /// The map a whole-definition replacement implies, matching variations by value: a new
    /// variation whose value was in the old list (once) came from there; otherwise one that sits
    /// where an old variation whose value is gone sat is that variation edited in place; the
    /// rest are new. So a reorder or removal through `PUT` keeps what everyone is served, and
    /// editing a value in place keeps the position people targeted.
    pub fn infer(old: &[Variation], new: &[Variation]) -> VariationMap {
        let unique_old = |value: &serde_json::Value| {
            let mut at = old.iter().enumerate().filter(|(_, v)| &v.value == value);
            match (at.next(), at.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        };
        let mut taken = vec![false; old.len()];
        let mut origins: Vec<Option<usize>> = new
            .iter()
            .map(|v| {
                let origin = unique_old(&v.value).filter(|&i| !taken[i]);
                if let Some(i) = origin {
                    taken[i] = true;
                }
                origin
            })
            .collect();
        for (i, origin) in origins.iter_mut().enumerate() {
            let edited_in_place = origin.is_none()
                && i < old.len()
                && !taken[i]
                && !new.iter().any(|v| v.value == old[i].value);
            if edited_in_place {
                *origin = Some(i);
                taken[i] = true;
            }
        }
        VariationMap {
            origins,
            old_len: old.len(),
        }
    }

    /// Whether every old variation keeps its position (nothing to rewrite anywhere).
    pub fn is_identity(&self) -> bool {
        (0..self.old_len).all(|old| self.new_position(old) == Some(old))
    }

    /// The new position of old variation `old`, or `None` when it is removed.
    pub fn new_position(&self, old: usize) -> Option<usize> {
        self.origins.iter().position(|o| *o == Some(old))
    }

    fn map_index(&self, index: i64, place: &str, uses: &mut Vec<Use>) -> i64 {
        let Ok(old) = usize::try_from(index) else {
            return index;
        };
        if old >= self.old_len {
            // Already out of range: validation reports it as before.
            return index;
        }
        match self.new_position(old) {
            Some(new) => new as i64,
            None => {
                uses.push(Use {
                    variation: old,
                    place: place.to_owned(),
                });
                index
            }
        }
    }

    fn map_serve(&self, serve: &mut VariationOrRollout, place: &str, uses: &mut Vec<Use>) {
        if let Some(v) = serve.variation.as_mut() {
            *v = self.map_index(*v, place, uses);
        }
        if let Some(rollout) = serve.rollout.as_mut() {
            // A bucket of weight 0 serves nobody: it goes with its variation.
            rollout.variations.retain(|b| {
                b.weight != 0
                    || usize::try_from(b.variation)
                        .ok()
                        .filter(|&v| v < self.old_len)
                        .is_none_or(|v| self.new_position(v).is_some())
            });
            for bucket in &mut rollout.variations {
                bucket.variation = self.map_index(bucket.variation, place, uses);
            }
        }
    }

    /// Rewrites one environment's targeting of the flag. Places that still serve a removed
    /// variation are added to `uses` (and left as they were).
    pub fn remap(&self, targeting: &Targeting, uses: &mut Vec<Use>) -> Targeting {
        let mut t = targeting.clone();
        if let Some(v) = t.off_variation.as_mut() {
            *v = self.map_index(*v, "the off variation", uses);
        }
        self.map_serve(&mut t.fallthrough, "the default rule", uses);
        for target in t.targets.iter_mut().chain(t.context_targets.iter_mut()) {
            let kind = target.context_kind.as_deref().unwrap_or("user");
            let place = format!("individual {kind} targets");
            target.variation = self.map_index(target.variation, &place, uses);
        }
        for (i, rule) in t.rules.iter_mut().enumerate() {
            self.map_serve(
                &mut rule.variation_or_rollout,
                &format!("rule {}", i + 1),
                uses,
            );
        }
        t
    }

    /// Rewrites another flag's prerequisites on flag `key`.
    pub fn remap_prerequisites(
        &self,
        key: &str,
        dependent: &str,
        prerequisites: &mut [Prerequisite],
        uses: &mut Vec<Use>,
    ) {
        for p in prerequisites.iter_mut().filter(|p| p.key == key) {
            p.variation = self.map_index(
                p.variation,
                &format!("flag {dependent}'s prerequisite"),
                uses,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use flagstaff_protocol::{FlagRule, Rollout, Target, WeightedVariation};
    use serde_json::{Value, json};

    use super::*;

    fn vars(values: &[Value]) -> Vec<Variation> {
        values
            .iter()
            .map(|v| Variation {
                value: v.clone(),
                name: None,
                description: None,
            })
            .collect()
    }

    fn targeting() -> Targeting {
        Targeting {
            on: true,
            off_variation: Some(0),
            fallthrough: VariationOrRollout {
                variation: None,
                rollout: Some(Rollout {
                    variations: vec![
                        WeightedVariation {
                            variation: 0,
                            weight: 50_000,
                            untracked: false,
                        },
                        WeightedVariation {
                            variation: 1,
                            weight: 0,
                            untracked: false,
                        },
                        WeightedVariation {
                            variation: 2,
                            weight: 50_000,
                            untracked: false,
                        },
                    ],
                    ..Rollout::default()
                }),
            },
            targets: vec![Target {
                context_kind: None,
                values: vec!["ada".into()],
                variation: 2,
            }],
            context_targets: vec![],
            rules: vec![FlagRule {
                variation_or_rollout: VariationOrRollout {
                    variation: Some(2),
                    rollout: None,
                },
                ..FlagRule::default()
            }],
            prerequisites: vec![],
            track_events: false,
            track_events_fallthrough: false,
            salt: "s".into(),
        }
    }

    #[test]
    fn values_that_moved_are_found_and_edits_in_place_keep_their_position() {
        let old = vars(&[json!("red"), json!("green"), json!("blue")]);
        // Reordered and one removed.
        let map = VariationMap::infer(&old, &vars(&[json!("blue"), json!("red")]));
        assert_eq!(map.origins, vec![Some(2), Some(0)]);
        assert!(!map.is_identity());
        // "green" edited into "lime" in place, and a new value appended.
        let map = VariationMap::infer(
            &old,
            &vars(&[json!("red"), json!("lime"), json!("blue"), json!("pink")]),
        );
        assert_eq!(map.origins, vec![Some(0), Some(1), Some(2), None]);
        assert!(map.is_identity());
        // Swapping two values is a swap, not two edits.
        let map = VariationMap::infer(&old[..2], &vars(&[json!("green"), json!("red")]));
        assert_eq!(map.origins, vec![Some(1), Some(0)]);
    }

    #[test]
    fn explicit_maps_refuse_unknown_and_repeated_origins() {
        assert!(VariationMap::explicit(vec![Some(0), Some(0)], 2).is_err());
        assert!(VariationMap::explicit(vec![Some(3)], 2).is_err());
        assert!(VariationMap::explicit(vec![None, Some(1), Some(0)], 2).is_ok());
    }

    #[test]
    fn a_reorder_rewrites_every_position() {
        // blue, red, green: old 2 -> 0, old 0 -> 1, old 1 -> 2.
        let map = VariationMap::explicit(vec![Some(2), Some(0), Some(1)], 3).unwrap();
        let mut uses = Vec::new();
        let t = map.remap(&targeting(), &mut uses);
        assert!(uses.is_empty(), "{uses:?}");
        assert_eq!(t.off_variation, Some(1));
        assert_eq!(t.targets[0].variation, 0);
        assert_eq!(t.rules[0].variation_or_rollout.variation, Some(0));
        let buckets: Vec<(i64, i64)> = t
            .fallthrough
            .rollout
            .unwrap()
            .variations
            .iter()
            .map(|b| (b.variation, b.weight))
            .collect();
        assert_eq!(buckets, vec![(1, 50_000), (2, 0), (0, 50_000)]);
    }

    #[test]
    fn removing_a_served_variation_names_every_place_and_an_empty_bucket_is_dropped() {
        // Remove "blue" (old 2), which the targets, rule 1 and half the default rule serve.
        let map = VariationMap::explicit(vec![Some(0), Some(1)], 3).unwrap();
        let mut uses = Vec::new();
        map.remap(&targeting(), &mut uses);
        let places: Vec<&str> = uses.iter().map(|u| u.place.as_str()).collect();
        assert_eq!(
            places,
            vec!["the default rule", "individual user targets", "rule 1"]
        );
        assert!(uses.iter().all(|u| u.variation == 2));
        // Remove "green" (old 1), served by nobody (a bucket of weight 0): allowed, and the
        // bucket goes.
        let map = VariationMap::explicit(vec![Some(0), Some(2)], 3).unwrap();
        let mut uses = Vec::new();
        let t = map.remap(&targeting(), &mut uses);
        assert!(uses.is_empty(), "{uses:?}");
        let buckets: Vec<i64> = t
            .fallthrough
            .rollout
            .unwrap()
            .variations
            .iter()
            .map(|b| b.variation)
            .collect();
        assert_eq!(buckets, vec![0, 1]);
        assert_eq!(t.targets[0].variation, 1);
    }

    #[test]
    fn prerequisites_on_the_flag_follow_it() {
        let map = VariationMap::explicit(vec![Some(1), Some(0)], 2).unwrap();
        let mut prerequisites = vec![
            Prerequisite {
                key: "colour".into(),
                variation: 0,
            },
            Prerequisite {
                key: "other".into(),
                variation: 0,
            },
        ];
        let mut uses = Vec::new();
        map.remap_prerequisites("colour", "checkout", &mut prerequisites, &mut uses);
        assert_eq!(prerequisites[0].variation, 1);
        assert_eq!(prerequisites[1].variation, 0);
        // Removing the variation the prerequisite now names (1) is a use.
        let map = VariationMap::explicit(vec![Some(0)], 2).unwrap();
        map.remap_prerequisites("colour", "checkout", &mut prerequisites, &mut uses);
        assert_eq!(uses[0].place, "flag checkout's prerequisite");
    }
}
