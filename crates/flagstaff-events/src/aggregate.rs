//! Folding batches into what one write adds: counters summed per key, contexts de-duplicated,
//! samples capped. Pure and synchronous, so that it can be benchmarked and tested alone.

use std::collections::HashMap;
use std::sync::Arc;

use flagstaff_store::events::{
    CustomEventCount, EvaluationCount, EventSample, EventWrite, FlagSdk, FlagUsage, Resolution,
    Retention, SdkReport, SeenContext,
};
use serde_json::Value;

use crate::payload::{Batch, ContextSeen};

/// Caps on what one flush keeps per environment, so that a flood of distinct flag keys,
/// custom event keys, contexts or tracked events (the browser paths need only the public
/// client-side ID) cannot make one write, or the database, grow without bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Full events kept as samples per environment per flush.
    pub samples_per_environment: usize,
    /// Distinct contexts recorded per environment per flush.
    pub contexts_per_environment: usize,
    /// Distinct flag keys counted per environment per flush (a real environment has hundreds
    /// to a few thousand flags; counters of further keys are dropped).
    pub flags_per_environment: usize,
    /// Distinct custom event keys counted per environment per flush.
    pub custom_keys_per_environment: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            samples_per_environment: 100,
            contexts_per_environment: 5_000,
            flags_per_environment: 5_000,
            custom_keys_per_environment: 1_000,
        }
    }
}

type Env = Arc<str>;
/// (environment, SDK name, SDK version, wrapper).
type SdkKey = (Env, String, String, String);
/// First seen, last seen, platform.
type SdkSeen = (i64, i64, String);
/// Count, count with a metric, metric sum.
type CustomTotals = (u64, u64, f64);

#[derive(Debug, PartialEq, Eq, Hash)]
struct EvaluationKey {
    environment: Env,
    flag: String,
    minute: i64,
    variation: Option<u32>,
    version: Option<u64>,
}

/// Everything gathered since the last write.
#[derive(Debug, Default)]
pub struct Aggregate {
    evaluations: HashMap<EvaluationKey, (u64, Value)>,
    usage: HashMap<(Env, String), (i64, i64, u64)>,
    flag_sdks: HashMap<(Env, String, String, String), (i64, u64)>,
    sdks: HashMap<SdkKey, SdkSeen>,
    contexts: HashMap<(Env, String, String), ContextSeen>,
    contexts_per_environment: HashMap<Env, usize>,
    custom: HashMap<(Env, String, i64), CustomTotals>,
    flags_per_environment: HashMap<Env, usize>,
    custom_keys: std::collections::HashSet<(Env, String)>,
    custom_keys_per_environment: HashMap<Env, usize>,
    samples: Vec<EventSample>,
    samples_per_environment: HashMap<Env, usize>,
    migration: crate::migration::MigrationAggregate,
    /// Summary counters (and unsummarised feature events) folded in.
    pub counters: u64,
    /// Events of the batches folded in.
    pub events: u64,
    /// Contexts not recorded because of [`Limits::contexts_per_environment`].
    pub contexts_over_limit: u64,
    /// Events not sampled because of [`Limits::samples_per_environment`].
    pub samples_over_limit: u64,
    /// Counters dropped because of [`Limits::flags_per_environment`].
    pub flags_over_limit: u64,
    /// Custom events dropped because of [`Limits::custom_keys_per_environment`].
    pub custom_over_limit: u64,
}

impl Aggregate {
    /// Migration operations dropped because of [`Limits::flags_per_environment`] (distinct
    /// migration flags, counted apart from evaluated flags).
    pub fn migration_over_limit(&self) -> u64 {
        self.migration.over_limit
    }
}

impl Aggregate {
    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Folds a batch in.
    pub fn add(&mut self, batch: Batch, limits: Limits) {
        let environment = batch.source.environment;
        let sdk = batch.source.sdk;
        let received_at = batch.source.received_at;
        self.events += batch.events;
        if batch.events > 0 && batch.diagnostic.is_none() {
            let report = self
                .sdks
                .entry((
                    Arc::clone(&environment),
                    sdk.name.clone(),
                    sdk.version.clone(),
                    sdk.wrapper.clone(),
                ))
                .or_insert((received_at, received_at, String::new()));
            report.0 = report.0.min(received_at);
            report.1 = report.1.max(received_at);
        }
        if let Some((identity, platform)) = batch.diagnostic {
            let report = self
                .sdks
                .entry((
                    Arc::clone(&environment),
                    identity.name,
                    identity.version,
                    identity.wrapper,
                ))
                .or_insert((received_at, received_at, String::new()));
            report.1 = report.1.max(received_at);
            if !platform.is_empty() {
                report.2 = platform;
            }
        }
        let mut counters = batch.counters;
        counters.retain(|counter| {
            let key = (Arc::clone(&environment), counter.flag.clone());
            if self.usage.contains_key(&key) {
                return true;
            }
            let flags = self
                .flags_per_environment
                .entry(Arc::clone(&environment))
                .or_default();
            if *flags >= limits.flags_per_environment {
                self.flags_over_limit += 1;
                return false;
            }
            // Counted here and entered in `usage` below, so the next counter of this flag
            // finds it known.
            *flags += 1;
            self.usage.insert(key, (counter.at, counter.at, 0));
            true
        });
        let mut per_flag_sdk: HashMap<&str, (i64, u64)> = HashMap::new();
        for counter in &counters {
            let entry = per_flag_sdk.entry(&counter.flag).or_insert((counter.at, 0));
            entry.0 = entry.0.max(counter.at);
            entry.1 = entry.1.saturating_add(counter.count);
        }
        for (flag, (at, count)) in per_flag_sdk {
            let entry = self
                .flag_sdks
                .entry((
                    Arc::clone(&environment),
                    flag.to_owned(),
                    sdk.name.clone(),
                    sdk.version.clone(),
                ))
                .or_insert((at, 0));
            entry.0 = entry.0.max(at);
            entry.1 = entry.1.saturating_add(count);
        }
        for counter in counters {
            self.counters += 1;
            let usage = self
                .usage
                .entry((Arc::clone(&environment), counter.flag.clone()))
                .or_insert((counter.at, counter.at, 0));
            usage.0 = usage.0.min(counter.at);
            usage.1 = usage.1.max(counter.at);
            usage.2 = usage.2.saturating_add(counter.count);
            let key = EvaluationKey {
                environment: Arc::clone(&environment),
                flag: counter.flag,
                minute: Resolution::Minute.bucket(counter.at),
                variation: counter.variation,
                version: counter.version,
            };
            let entry = self.evaluations.entry(key).or_insert((0, Value::Null));
            entry.0 = entry.0.saturating_add(counter.count);
            entry.1 = counter.value;
        }
        for custom in batch.custom {
            let key = (Arc::clone(&environment), custom.key.clone());
            if !self.custom_keys.contains(&key) {
                let keys = self
                    .custom_keys_per_environment
                    .entry(Arc::clone(&environment))
                    .or_default();
                if *keys >= limits.custom_keys_per_environment {
                    self.custom_over_limit += 1;
                    continue;
                }
                *keys += 1;
                self.custom_keys.insert(key);
            }
            let entry = self
                .custom
                .entry((
                    Arc::clone(&environment),
                    custom.key,
                    Resolution::Minute.bucket(custom.at),
                ))
                .or_insert((0, 0, 0.0));
            entry.0 = entry.0.saturating_add(1);
            if let Some(metric) = custom.metric {
                entry.1 += 1;
                entry.2 += metric;
            }
        }
        for context in batch.contexts {
            let key = (
                Arc::clone(&environment),
                context.kind.clone(),
                context.key.clone(),
            );
            if let Some(known) = self.contexts.get_mut(&key) {
                known.at = known.at.max(context.at);
                if context.attributes.is_some() {
                    known.attributes = context.attributes;
                    known.redacted = context.redacted;
                }
                continue;
            }
            let count = self
                .contexts_per_environment
                .entry(Arc::clone(&environment))
                .or_default();
            if *count >= limits.contexts_per_environment {
                self.contexts_over_limit += 1;
                continue;
            }
            *count += 1;
            self.contexts.insert(key, context);
        }
        self.migration.add(
            &environment,
            batch.migration_ops,
            limits.flags_per_environment,
        );
        for sample in batch.samples {
            let count = self
                .samples_per_environment
                .entry(Arc::clone(&environment))
                .or_default();
            if *count >= limits.samples_per_environment {
                self.samples_over_limit += 1;
                continue;
            }
            *count += 1;
            self.samples.push(EventSample {
                environment: environment.to_string(),
                kind: sample.kind.to_owned(),
                key: sample.key,
                at: sample.at,
                body: sample.body,
            });
        }
    }

    /// What to write, as of `now`: every counter in its minute, hour and day bucket, except
    /// buckets already older than their retention.
    pub fn into_write(self, retention: &Retention, now: i64) -> EventWrite {
        let kept = |resolution: Resolution, bucket: i64| bucket >= now - retention.of(resolution);
        let mut write = EventWrite::default();
        // Each minute bucket lies in exactly one hour and one day bucket: sum them there.
        type Coarse<'a> = (Resolution, &'a Env, &'a str, i64, Option<u32>, Option<u64>);
        let mut merged: HashMap<Coarse<'_>, (u64, &Value)> = HashMap::new();
        for (key, (count, value)) in &self.evaluations {
            for resolution in [Resolution::Hour, Resolution::Day] {
                let entry = merged
                    .entry((
                        resolution,
                        &key.environment,
                        key.flag.as_str(),
                        resolution.bucket(key.minute),
                        key.variation,
                        key.version,
                    ))
                    .or_insert((0, value));
                entry.0 = entry.0.saturating_add(*count);
            }
        }
        for (key, (count, value)) in &self.evaluations {
            if kept(Resolution::Minute, key.minute) {
                write.evaluations.push(EvaluationCount {
                    environment: key.environment.to_string(),
                    flag: key.flag.clone(),
                    resolution: Resolution::Minute,
                    bucket: key.minute,
                    variation: key.variation,
                    version: key.version,
                    value: value.to_string(),
                    count: *count,
                });
            }
        }
        for ((resolution, environment, flag, bucket, variation, version), (count, value)) in merged
        {
            if kept(resolution, bucket) {
                write.evaluations.push(EvaluationCount {
                    environment: environment.to_string(),
                    flag: flag.to_owned(),
                    resolution,
                    bucket,
                    variation,
                    version,
                    value: value.to_string(),
                    count,
                });
            }
        }
        write.usage = self
            .usage
            .into_iter()
            .map(|((environment, flag), (first, last, count))| FlagUsage {
                environment: environment.to_string(),
                flag,
                first_evaluated: first,
                last_evaluated: last,
                evaluations: count,
            })
            .collect();
        write.flag_sdks = self
            .flag_sdks
            .into_iter()
            .map(
                |((environment, flag, sdk, version), (last, count))| FlagSdk {
                    environment: environment.to_string(),
                    flag,
                    sdk,
                    sdk_version: version,
                    last_seen: last,
                    evaluations: count,
                },
            )
            .collect();
        write.sdks = self
            .sdks
            .into_iter()
            .map(
                |((environment, sdk, version, wrapper), (first, last, platform))| SdkReport {
                    environment: environment.to_string(),
                    sdk,
                    sdk_version: version,
                    wrapper,
                    platform,
                    first_seen: first,
                    last_seen: last,
                },
            )
            .collect();
        write.contexts = self
            .contexts
            .into_iter()
            .map(|((environment, kind, key), seen)| SeenContext {
                environment: environment.to_string(),
                kind,
                key,
                attributes: seen.attributes.map_or(Value::Null, Value::Object),
                redacted: seen.redacted,
                first_seen: seen.at,
                last_seen: seen.at,
            })
            .collect();
        let mut custom: HashMap<(Resolution, &Env, &str, i64), CustomTotals> = HashMap::new();
        for ((environment, key, minute), (count, metric_count, metric_sum)) in &self.custom {
            for resolution in Resolution::ALL {
                let entry = custom
                    .entry((resolution, environment, key, resolution.bucket(*minute)))
                    .or_insert((0, 0, 0.0));
                entry.0 = entry.0.saturating_add(*count);
                entry.1 += metric_count;
                entry.2 += metric_sum;
            }
        }
        write.custom = custom
            .into_iter()
            .filter(|((resolution, _, _, bucket), _)| kept(*resolution, *bucket))
            .map(
                |((resolution, environment, key, bucket), (count, metric_count, metric_sum))| {
                    CustomEventCount {
                        environment: environment.to_string(),
                        event_key: key.to_owned(),
                        resolution,
                        bucket,
                        count,
                        metric_count,
                        metric_sum,
                    }
                },
            )
            .collect();
        write.samples = self.samples;
        write.migration_ops = self.migration.into_rows(retention, now);
        write
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::payload::{SdkIdentity, Source, parse_analytics};

    const NOW: i64 = 1_800_000_000_000;

    fn batch(environment: &str, events: serde_json::Value) -> Batch {
        let source = Source {
            environment: Arc::from(environment),
            sdk: SdkIdentity::default(),
            schema: 4,
            unsummarized: false,
            server_side: true,
            received_at: NOW,
        };
        parse_analytics(source, events.to_string().as_bytes()).unwrap()
    }

    fn summary(flags: impl IntoIterator<Item = String>) -> serde_json::Value {
        let features: serde_json::Map<String, serde_json::Value> = flags
            .into_iter()
            .map(|flag| {
                let counters = json!({"counters": [{"variation": 0, "version": 1, "value": true, "count": 2}]});
                (flag, counters)
            })
            .collect();
        json!([{"kind": "summary", "startDate": NOW - 1000, "endDate": NOW, "features": features}])
    }

    #[test]
    fn distinct_flag_keys_are_capped_per_environment_and_known_ones_still_count() {
        let limits = Limits {
            flags_per_environment: 3,
            ..Limits::default()
        };
        let mut aggregate = Aggregate::default();
        aggregate.add(
            batch("p/a", summary((0..5).map(|i| format!("f{i}")))),
            limits,
        );
        // Flags already counted in this flush keep counting; other environments have their
        // own allowance.
        aggregate.add(
            batch("p/a", summary(["f0".to_owned(), "f9".to_owned()])),
            limits,
        );
        aggregate.add(batch("p/b", summary(["g".to_owned()])), limits);
        assert_eq!(aggregate.flags_over_limit, 2 + 1);
        let write = aggregate.into_write(&Retention::default(), NOW);
        let mut usage: Vec<(String, String, u64)> = write
            .usage
            .iter()
            .map(|u| (u.environment.clone(), u.flag.clone(), u.evaluations))
            .collect();
        usage.sort();
        let count = |env: &str, flag: &str, n| (env.to_owned(), flag.to_owned(), n);
        assert_eq!(
            usage,
            [
                count("p/a", "f0", 4),
                count("p/a", "f1", 2),
                count("p/a", "f2", 2),
                count("p/b", "g", 2)
            ]
        );
    }

    #[test]
    fn distinct_custom_event_keys_are_capped_per_environment() {
        let limits = Limits {
            custom_keys_per_environment: 2,
            ..Limits::default()
        };
        let events: Vec<serde_json::Value> = ["a", "b", "c", "a"]
            .iter()
            .map(|key| json!({"kind": "custom", "creationDate": NOW, "key": key, "contextKeys": {"user": "u"}}))
            .collect();
        let mut aggregate = Aggregate::default();
        aggregate.add(batch("p/a", json!(events)), limits);
        assert_eq!(aggregate.custom_over_limit, 1);
        let write = aggregate.into_write(&Retention::default(), NOW);
        let mut minutes: Vec<(String, u64)> = write
            .custom
            .iter()
            .filter(|c| c.resolution == Resolution::Minute)
            .map(|c| (c.event_key.clone(), c.count))
            .collect();
        minutes.sort();
        assert_eq!(minutes, [("a".to_owned(), 2), ("b".to_owned(), 1)]);
    }
}
