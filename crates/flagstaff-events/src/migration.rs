//! `migration_op` events (`ld-protocol.md` §6.4): one per read or write an SDK migrator ran
//! through a migration flag, with what it measured. Read leniently like every other event:
//! a measurement that is missing or malformed is simply not counted.

use std::collections::HashMap;
use std::sync::Arc;

use flagstaff_protocol::MIGRATION_STAGES;
use flagstaff_store::events::{MigrationOpCount, MigrationTotals, Resolution, Retention};
use serde_json::{Map, Value};

/// A latency above this (ms), about eleven days, is not a measurement but noise, and would
/// make a mean meaningless.
const MAX_LATENCY_MS: f64 = 1e9;

/// One migration operation as an SDK reported it.
#[derive(Clone, Debug, PartialEq)]
pub struct MigrationOp {
    /// The migration flag's key.
    pub flag: String,
    /// `read` or `write`.
    pub operation: &'static str,
    /// The stage the flag served, one of [`MIGRATION_STAGES`], or `unknown` for any other
    /// value (a flag that is not a migration flag, or a wrong default).
    pub stage: &'static str,
    /// What it adds: one operation and its measurements.
    pub totals: MigrationTotals,
    /// When (Unix ms).
    pub at: i64,
}

/// Reads a `migration_op` event's flag, operation, stage and measurements; `None` when it names
/// no flag or no operation.
pub(crate) fn read(event: &Map<String, Value>, at: i64, max_key_len: usize) -> Option<MigrationOp> {
    let operation = match event.get("operation").and_then(Value::as_str)? {
        "read" => "read",
        "write" => "write",
        _ => return None,
    };
    let evaluation = event.get("evaluation")?.as_object()?;
    let flag = evaluation
        .get("key")
        .and_then(Value::as_str)
        .filter(|key| !key.is_empty() && key.len() <= max_key_len)?
        .to_owned();
    let stage = evaluation
        .get("value")
        .and_then(Value::as_str)
        .and_then(|value| MIGRATION_STAGES.iter().find(|stage| **stage == value))
        .copied()
        .unwrap_or("unknown");
    let mut totals = MigrationTotals {
        operations: 1,
        ..MigrationTotals::default()
    };
    let measurements = event.get("measurements").and_then(Value::as_array);
    for measurement in measurements.into_iter().flatten() {
        let Some(measurement) = measurement.as_object() else {
            continue;
        };
        let values = measurement.get("values").and_then(Value::as_object);
        let origin = |name: &str| values.and_then(|values| values.get(name));
        let flagged = |name: &str| u64::from(origin(name) == Some(&Value::Bool(true)));
        match measurement.get("key").and_then(Value::as_str) {
            Some("invoked") => {
                totals.old.invoked = flagged("old");
                totals.new.invoked = flagged("new");
            }
            Some("error") => {
                totals.old.errors = flagged("old");
                totals.new.errors = flagged("new");
            }
            Some("consistent") => {
                if let Some(consistent) = measurement.get("value").and_then(Value::as_bool) {
                    totals.checks = 1;
                    totals.inconsistent = u64::from(!consistent);
                }
            }
            Some("latency_ms") => {
                let latency = |name: &str| {
                    origin(name)
                        .and_then(Value::as_f64)
                        .filter(|ms| (0.0..=MAX_LATENCY_MS).contains(ms))
                };
                if let Some(ms) = latency("old") {
                    totals.old.measure(ms);
                }
                if let Some(ms) = latency("new") {
                    totals.new.measure(ms);
                }
            }
            _ => {}
        }
    }
    Some(MigrationOp {
        flag,
        operation,
        stage,
        totals,
        at,
    })
}

/// Migration operations gathered since the last write, summed per environment, flag,
/// operation, stage and minute.
#[derive(Debug, Default)]
pub(crate) struct MigrationAggregate {
    minutes: HashMap<(Arc<str>, String, &'static str, &'static str, i64), MigrationTotals>,
    flags: HashMap<Arc<str>, std::collections::HashSet<String>>,
    /// Operations dropped because their environment had too many distinct flags this flush.
    pub over_limit: u64,
}

impl MigrationAggregate {
    /// Folds operations in; at most `flags_per_environment` distinct flags per environment are
    /// counted in one flush, as for evaluations.
    pub(crate) fn add(
        &mut self,
        environment: &Arc<str>,
        ops: Vec<MigrationOp>,
        flags_per_environment: usize,
    ) {
        for op in ops {
            let flags = self.flags.entry(Arc::clone(environment)).or_default();
            if !flags.contains(&op.flag) {
                if flags.len() >= flags_per_environment {
                    self.over_limit += 1;
                    continue;
                }
                flags.insert(op.flag.clone());
            }
            let minute = Resolution::Minute.bucket(op.at);
            self.minutes
                .entry((
                    Arc::clone(environment),
                    op.flag,
                    op.operation,
                    op.stage,
                    minute,
                ))
                .or_default()
                .add(&op.totals);
        }
    }

    /// The rows to write: every minute also summed into its hour and day, each kept only while
    /// its retention allows.
    pub(crate) fn into_rows(self, retention: &Retention, now: i64) -> Vec<MigrationOpCount> {
        let mut buckets: HashMap<_, MigrationTotals> = HashMap::new();
        for ((environment, flag, operation, stage, minute), totals) in &self.minutes {
            for resolution in Resolution::ALL {
                buckets
                    .entry((
                        resolution,
                        environment,
                        flag.as_str(),
                        *operation,
                        *stage,
                        resolution.bucket(*minute),
                    ))
                    .or_default()
                    .add(totals);
            }
        }
        buckets
            .into_iter()
            .filter(|((resolution, .., bucket), _)| *bucket >= now - retention.of(*resolution))
            .map(
                |((resolution, environment, flag, operation, stage, bucket), totals)| {
                    MigrationOpCount {
                        environment: environment.to_string(),
                        flag: flag.to_owned(),
                        resolution,
                        bucket,
                        operation: operation.to_owned(),
                        stage: stage.to_owned(),
                        totals,
                    }
                },
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn op(event: Value) -> Option<MigrationOp> {
        read(event.as_object().unwrap(), 1_000, 512)
    }

    #[test]
    fn a_shadow_read_counts_both_origins_the_check_and_the_error() {
        // The shape the Python SDK writes (event_processor_common.py).
        let op = op(json!({
            "kind": "migration_op", "creationDate": 1, "operation": "read",
            "context": {"kind": "user", "key": "u"},
            "evaluation": {"key": "db", "value": "shadow", "default": "off", "variation": 2, "version": 4},
            "measurements": [
                {"key": "invoked", "values": {"old": true, "new": true}},
                {"key": "consistent", "value": false, "samplingRatio": 2},
                {"key": "latency_ms", "values": {"old": 12.5, "new": 3}},
                {"key": "error", "values": {"new": true}}
            ]
        }))
        .unwrap();
        assert_eq!(
            (op.flag.as_str(), op.operation, op.stage),
            ("db", "read", "shadow")
        );
        let t = op.totals;
        assert_eq!((t.operations, t.checks, t.inconsistent), (1, 1, 1));
        assert_eq!((t.old.invoked, t.new.invoked), (1, 1));
        assert_eq!((t.old.errors, t.new.errors), (0, 1));
        assert_eq!((t.old.latency_sum_ms, t.new.latency_max_ms), (12.5, 3.0));
    }

    #[test]
    fn nonsense_is_skipped_or_not_counted_never_trusted() {
        assert_eq!(
            op(json!({"operation": "delete", "evaluation": {"key": "f"}})),
            None
        );
        assert_eq!(op(json!({"operation": "read"})), None);
        assert_eq!(
            op(json!({"operation": "read", "evaluation": {"key": ""}})),
            None
        );
        let odd = op(json!({
            "operation": "write", "evaluation": {"key": "f", "value": "sideways"},
            "measurements": [7, {"key": "latency_ms", "values": {"old": -1, "new": 1e300}},
                             {"key": "consistent", "value": "yes"}, {"key": "invoked", "values": []}]
        }))
        .unwrap();
        assert_eq!(odd.stage, "unknown");
        assert_eq!(
            odd.totals.old.latency_count + odd.totals.new.latency_count,
            0
        );
        assert_eq!((odd.totals.checks, odd.totals.old.invoked), (0, 0));
    }

    #[test]
    fn minutes_sum_into_hours_and_days_and_flags_are_capped() {
        let environment: Arc<str> = Arc::from("p/e");
        let at = 7_200_000;
        let one = |flag: &str, minute: i64| MigrationOp {
            flag: flag.into(),
            operation: "read",
            stage: "live",
            totals: MigrationTotals {
                operations: 1,
                ..MigrationTotals::default()
            },
            at: at + minute * 60_000,
        };
        let mut aggregate = MigrationAggregate::default();
        aggregate.add(&environment, vec![one("a", 0), one("a", 1), one("b", 0)], 1);
        assert_eq!(aggregate.over_limit, 1);
        let retention = Retention::default();
        let rows = aggregate.into_rows(&retention, at);
        let operations = |resolution| -> Vec<u64> {
            rows.iter()
                .filter(|r| r.resolution == resolution)
                .map(|r| r.totals.operations)
                .collect()
        };
        assert_eq!(operations(Resolution::Minute).iter().sum::<u64>(), 2);
        assert_eq!(operations(Resolution::Minute).len(), 2);
        assert_eq!(operations(Resolution::Hour), [2]);
        assert_eq!(operations(Resolution::Day), [2]);
    }
}
