//! Sets of context keys for individual targets, segment include/exclude lists and `in` clauses.
//!
//! Short lists are scanned (comparing a few strings beats hashing one); long lists are hashed with
//! foldhash, so a 10,000-key target list costs one hash and one probe.

use std::collections::HashSet;

use foldhash::fast::RandomState;

/// Lists longer than this are hashed.
const SCAN_LIMIT: usize = 12;

/// A set of strings optimised for `contains`.
#[derive(Debug)]
pub(crate) enum KeySet {
    Scan(Box<[Box<str>]>),
    Hash(HashSet<Box<str>, RandomState>),
}

impl Default for KeySet {
    fn default() -> Self {
        KeySet::Scan(Box::default())
    }
}

impl KeySet {
    pub(crate) fn new<'a>(keys: impl IntoIterator<Item = &'a str>) -> KeySet {
        let keys: Vec<Box<str>> = keys.into_iter().map(Box::from).collect();
        if keys.len() <= SCAN_LIMIT {
            KeySet::Scan(keys.into_boxed_slice())
        } else {
            KeySet::Hash(keys.into_iter().collect())
        }
    }

    #[inline]
    pub(crate) fn contains(&self, key: &str) -> bool {
        match self {
            KeySet::Scan(keys) => keys.iter().any(|k| **k == *key),
            KeySet::Hash(keys) => keys.contains(key),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        match self {
            KeySet::Scan(keys) => keys.is_empty(),
            KeySet::Hash(keys) => keys.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_sets_agree() {
        let keys: Vec<String> = (0..100).map(|i| format!("key-{i}")).collect();
        for n in [0, 1, SCAN_LIMIT, SCAN_LIMIT + 1, 100] {
            let set = KeySet::new(keys[..n].iter().map(String::as_str));
            assert_eq!(matches!(set, KeySet::Hash(_)), n > SCAN_LIMIT);
            for (i, key) in keys.iter().enumerate() {
                assert_eq!(set.contains(key), i < n);
            }
            assert!(!set.contains(""));
        }
    }
}
