//! Flags and segments as keys of maps and sets, by their own key and without a copy of it.
//!
//! Whoever indexes many flags by key (an SDK's store, a snapshot's index) would otherwise copy
//! every key: about 40 bytes per flag (the string and its allocation), 0.4 MB per index for
//! 10,000 flags.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::{Flag, Segment};

/// What has a key.
pub trait Keyed {
    /// The key.
    fn key(&self) -> &str;
}

impl Keyed for Flag {
    fn key(&self) -> &str {
        &self.key
    }
}

impl Keyed for Segment {
    fn key(&self) -> &str {
        &self.key
    }
}

/// A shared item that compares, orders, hashes and borrows as its key, so that a `HashMap`
/// or `BTreeSet` of them is looked up with a `&str`.
#[derive(Debug)]
pub struct ByKey<T>(pub Arc<T>);

impl<T> Clone for ByKey<T> {
    fn clone(&self) -> Self {
        ByKey(Arc::clone(&self.0))
    }
}

impl<T: Keyed> Borrow<str> for ByKey<T> {
    fn borrow(&self) -> &str {
        self.0.key()
    }
}

// Equality, order and hash are the key's, as `Borrow<str>` requires.
impl<T: Keyed> PartialEq for ByKey<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}

impl<T: Keyed> Eq for ByKey<T> {}

impl<T: Keyed> PartialOrd for ByKey<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: Keyed> Ord for ByKey<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.key().cmp(other.0.key())
    }
}

impl<T: Keyed> Hash for ByKey<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.key().hash(state);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use super::*;

    fn flag(key: &str, version: u64) -> ByKey<Flag> {
        ByKey(Arc::new(Flag {
            key: key.into(),
            version,
            ..Flag::default()
        }))
    }

    #[test]
    fn items_are_found_by_key_and_replaced_whole() {
        let mut set: BTreeSet<ByKey<Flag>> = [flag("b", 1), flag("a", 1)].into_iter().collect();
        assert_eq!(
            set.iter().map(|f| f.0.key.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        // `replace` swaps the stored item (a newer version), not just the value beside it.
        set.replace(flag("a", 2));
        assert_eq!(set.get("a").unwrap().0.version, 2);
        let mut map: HashMap<ByKey<Flag>, u32> = HashMap::new();
        map.insert(flag("x", 1), 7);
        assert_eq!(map.get("x"), Some(&7));
        assert_eq!(map.get("y"), None);
    }
}
