//! The file data source: flag data from local JSON files, for tests and air-gapped use.
//!
//! Each file is a JSON object with any of:
//! - `"flags"`: full flag objects by key, exactly as `/sdk/latest-all` serves them (what
//!   `curl -H "Authorization: $SDK_KEY" $FLAGSTAFF/sdk/latest-all > flags.json` saves);
//! - `"segments"`: segment objects by key;
//! - `"flagValues"`: `key → value` shorthands for flags that always return that value.
//!
//! Files are merged in order; a key defined in two files (or twice in one) is an error, so that
//! which definition wins never depends on file order. With `reload`, the files' modification
//! times are checked that often and the data re-read when one changes; a file that fails to read
//! leaves the previous data in place.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flagstaff_protocol::{Flag, FlagData, VariationOrRollout};
use serde_json::Value;

use super::{DataSourceState, Shared};

/// Reads and merges the files.
pub fn load(paths: &[PathBuf]) -> Result<FlagData, String> {
    let mut merged = FlagData::default();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut value: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let values = value
            .as_object_mut()
            .and_then(|o| o.remove("flagValues"))
            .unwrap_or(Value::Null);
        let data = FlagData::from_json(value).map_err(|e| format!("{}: {e}", path.display()))?;
        for (key, flag) in data.flags {
            insert_flag(&mut merged, key, flag, path)?;
        }
        for (key, segment) in data.segments {
            if merged.segments.insert(key.clone(), segment).is_some() {
                return Err(format!(
                    "{}: segment {key:?} is defined twice",
                    path.display()
                ));
            }
        }
        match values {
            Value::Null => {}
            Value::Object(values) => {
                for (key, value) in values {
                    let flag = Flag {
                        key: key.clone(),
                        on: true,
                        version: 1,
                        variations: vec![value],
                        fallthrough: VariationOrRollout {
                            variation: Some(0),
                            rollout: None,
                        },
                        ..Flag::default()
                    };
                    insert_flag(&mut merged, key, flag, path)?;
                }
            }
            _ => return Err(format!("{}: flagValues must be an object", path.display())),
        }
    }
    Ok(merged)
}

fn insert_flag(data: &mut FlagData, key: String, flag: Flag, path: &Path) -> Result<(), String> {
    if data.flags.contains_key(&key) {
        return Err(format!("{}: flag {key:?} is defined twice", path.display()));
    }
    data.flags.insert(key, flag);
    Ok(())
}

fn modified(paths: &[PathBuf]) -> Vec<Option<SystemTime>> {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// Loads the files once, then (with `reload`) watches them.
pub(crate) async fn run(shared: Arc<Shared>, paths: Vec<PathBuf>, reload: Option<Duration>) {
    let mut seen = modified(&paths);
    read_into(&shared, &paths);
    let Some(every) = reload else {
        return;
    };
    loop {
        tokio::time::sleep(every).await;
        let now = modified(&paths);
        if now != seen {
            seen = now;
            read_into(&shared, &paths);
        }
    }
}

fn read_into(shared: &Shared, paths: &[PathBuf]) {
    match load(paths) {
        Ok(data) => shared.replace(data),
        Err(why) => {
            tracing::error!(reason = %why, "could not read the flag files");
            shared.set_state(DataSourceState::Interrupted, Some(why));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn files_merge_full_flags_segments_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let b = dir.path().join("b.json");
        std::fs::write(
            &a,
            json!({"flags": {"full": {"on": false, "variations": ["x", "y"], "offVariation": 1, "version": 4}},
                   "segments": {"beta": {"included": ["u1"], "version": 1}}})
            .to_string(),
        )
        .unwrap();
        std::fs::write(&b, json!({"flagValues": {"limit": 25}}).to_string()).unwrap();
        let data = load(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(data.flags["full"].version, 4);
        assert_eq!(data.flags["limit"].variations, vec![json!(25)]);
        assert!(data.segments.contains_key("beta"));
        let snapshot = flagstaff_eval::Snapshot::compile(&data);
        let context = flagstaff_protocol::Context::from_json(&json!({"key": "u"})).unwrap();
        assert_eq!(snapshot.evaluate("limit", &context).value, Some(&json!(25)));
        assert_eq!(snapshot.evaluate("full", &context).value, Some(&json!("y")));

        let error = load(&[a.clone(), a.clone()]).unwrap_err();
        assert!(error.contains("defined twice"), "{error}");
        std::fs::write(&b, "{\"flags\": ").unwrap();
        assert!(load(&[b]).unwrap_err().contains("b.json"));
        assert!(load(&[dir.path().join("missing.json")]).is_err());
    }
}
