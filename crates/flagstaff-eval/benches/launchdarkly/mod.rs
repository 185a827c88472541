//! LaunchDarkly's own Rust evaluation crate behind our data, shared by the benchmark and the
//! differential test.

use std::collections::HashMap;

use flagstaff_protocol::FlagData;
use launchdarkly_server_sdk_evaluation as ld;

/// LaunchDarkly's evaluator reads flags and segments through its `Store` trait, by key, as owned
/// values, so each lookup clones.
pub struct LdStore {
    pub flags: HashMap<String, ld::Flag>,
    pub segments: HashMap<String, ld::Segment>,
}

impl ld::Store for LdStore {
    fn flag(&self, key: &str) -> Option<ld::Flag> {
        self.flags.get(key).cloned()
    }

    fn segment(&self, key: &str) -> Option<ld::Segment> {
        self.segments.get(key).cloned()
    }
}

/// Converts through our canonical JSON. LaunchDarkly's reader is strict about presence (every
/// array, `trackEvents`, …), so this also proves that output shape is acceptable to it.
fn convert<T: serde::Serialize, U: serde::de::DeserializeOwned>(item: &T) -> U {
    let json = serde_json::to_value(item).expect("our model serialises");
    serde_json::from_value(json).expect("LaunchDarkly's crate reads our canonical JSON")
}

/// The same flags and segments, as LaunchDarkly's crate models them.
pub fn store(data: &FlagData) -> LdStore {
    LdStore {
        flags: data
            .flags
            .iter()
            .map(|(k, f)| (k.clone(), convert(f)))
            .collect(),
        segments: data
            .segments
            .iter()
            .map(|(k, s)| (k.clone(), convert(s)))
            .collect(),
    }
}
