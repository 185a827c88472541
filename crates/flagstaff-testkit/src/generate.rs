//! A deterministic generator of random flag data and contexts, shared by the differential test
//! and the property tests. It aims at the places evaluators get wrong: every operator with values
//! of the right and wrong types, nested attributes, multi-kind contexts, legacy users, rollouts
//! and experiments with seeds and `bucketBy`, prerequisites (including cycles), segments that
//! nest (including cycles), and clauses that are malformed on purpose.
//!
//! `Shape::Common` keeps to data on which LaunchDarkly's engines agree with each other; the few
//! documented divergences between the Go reference and LaunchDarkly's Rust crate
//! (`ld-protocol.md` §3.3, §3.4, §3.7) are avoided there, and exercised by `Shape::Anything`.

use serde_json::{Map, Value, json};

/// SplitMix64: tiny, fast, and good enough to explore.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// How adventurous the generated data is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Only data on which the Go and Rust reference engines agree.
    Common,
    /// Anything, including deliberately broken data.
    Anything,
}

const KINDS: [&str; 3] = ["user", "org", "device"];
const KEYS: [&str; 6] = ["alice", "bob", "carol", "acme", "d-1", "x"];
const STRINGS: [&str; 16] = [
    "alice",
    "bob",
    "gold",
    "free",
    "NZ",
    "US",
    "ann@example.com",
    "bob@mail.test",
    "@example.com",
    "a",
    "1.2.3",
    "2.0.0-rc.1",
    "2",
    "2017-12-06T00:00:00Z",
    "2020-01-01T12:30:00.5+02:00",
    "",
];
const ATTRIBUTES: [&str; 11] = [
    "key",
    "name",
    "email",
    "country",
    "plan",
    "age",
    "score",
    "version",
    "created",
    "tags",
    "anonymous",
];
const OPS: [&str; 17] = [
    "in",
    "in",
    "startsWith",
    "endsWith",
    "contains",
    "matches",
    "lessThan",
    "lessThanOrEqual",
    "greaterThan",
    "greaterThanOrEqual",
    "before",
    "after",
    "semVerEqual",
    "semVerLessThan",
    "semVerGreaterThan",
    "segmentMatch",
    "notAnOperator",
];
const PATTERNS: [&str; 5] = ["^a", "example\\.com$", "[0-9]+", "(", "o{2,}"];
const VERSIONS: [&str; 7] = [
    "1.2.3",
    "2.0.0",
    "2.0.0-rc.1",
    "2",
    "1.2",
    "2.0.0+build",
    "v1.0.0",
];
const DATES: [&str; 3] = [
    "2017-12-06T00:00:00Z",
    "2020-01-01T10:30:00.5Z",
    "2030-06-01T00:00:00+02:00",
];

fn scalar(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0..=4 => json!(rng.pick(&STRINGS)),
        5 => json!(rng.below(100)),
        6 => json!(rng.below(1000) as f64 / 8.0),
        7 => json!(rng.chance(50)),
        8 => json!(1_512_543_600_000_u64 + rng.below(3) as u64 * 86_400_000),
        _ => json!(*rng.pick(&VERSIONS)),
    }
}

fn attribute_value(rng: &mut Rng, name: &str) -> Value {
    match name {
        "email" => json!(rng.pick(&["ann@example.com", "bob@mail.test", "c@example.com"])),
        "country" => json!(rng.pick(&["NZ", "US", "DE"])),
        "plan" => json!(rng.pick(&["gold", "free", "team"])),
        "age" | "score" => {
            if rng.chance(80) {
                json!(rng.below(100))
            } else {
                json!(rng.below(100) as f64 + 0.5)
            }
        }
        "version" => json!(rng.pick(&VERSIONS)),
        "created" => {
            if rng.chance(50) {
                json!(rng.pick(&DATES))
            } else {
                json!(1_512_543_600_000_u64 + rng.below(5) as u64 * 3_600_000)
            }
        }
        "tags" => Value::Array(
            (0..rng.below(3))
                .map(|_| json!(rng.pick(&STRINGS)))
                .collect(),
        ),
        _ => scalar(rng),
    }
}

fn individual(rng: &mut Rng) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("key".into(), json!(rng.pick(&KEYS)));
    for name in ATTRIBUTES {
        if name == "key" || rng.chance(40) {
            continue;
        }
        let value = match name {
            "name" => json!(rng.pick(&["Ann", "Bob"])),
            "anonymous" => json!(rng.chance(50)),
            _ => attribute_value(rng, name),
        };
        object.insert(name.into(), value);
    }
    if rng.chance(20) {
        object.insert(
            "address".into(),
            json!({"city": rng.pick(&["Wellington", "Berlin"]), "zip": rng.below(3)}),
        );
    }
    object
}

/// A random context: single-kind, multi-kind or legacy user.
pub fn context(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0..=4 => {
            let mut object = individual(rng);
            object.insert("kind".into(), json!(rng.pick(&KINDS)));
            Value::Object(object)
        }
        5..=7 => {
            let mut object = Map::new();
            object.insert("kind".into(), json!("multi"));
            for kind in KINDS {
                if rng.chance(70) {
                    object.insert(kind.into(), Value::Object(individual(rng)));
                }
            }
            if object.len() == 1 {
                object.insert("user".into(), Value::Object(individual(rng)));
            }
            Value::Object(object)
        }
        _ => {
            let mut legacy = Map::new();
            legacy.insert("key".into(), json!(rng.pick(&KEYS)));
            if rng.chance(50) {
                legacy.insert(
                    "email".into(),
                    json!(rng.pick(&["ann@example.com", "bob@mail.test"])),
                );
            }
            if rng.chance(50) {
                legacy.insert("country".into(), json!(rng.pick(&["NZ", "US"])));
            }
            let mut custom = Map::new();
            for name in ["plan", "age", "version", "tags"] {
                if rng.chance(50) {
                    custom.insert(name.into(), attribute_value(rng, name));
                }
            }
            legacy.insert("custom".into(), Value::Object(custom));
            Value::Object(legacy)
        }
    }
}

fn clause_values(rng: &mut Rng, op: &str, segment_keys: &[String]) -> Vec<Value> {
    let n = 1 + rng.below(3);
    (0..n)
        .map(|_| {
            if rng.chance(15) {
                return scalar(rng);
            }
            match op {
                "segmentMatch" => json!(if segment_keys.is_empty() || rng.chance(10) {
                    "no-such-segment".to_owned()
                } else {
                    rng.pick(segment_keys).clone()
                }),
                "matches" => json!(rng.pick(&PATTERNS)),
                "lessThan" | "lessThanOrEqual" | "greaterThan" | "greaterThanOrEqual" => {
                    json!(rng.below(100))
                }
                "before" | "after" => {
                    if rng.chance(50) {
                        json!(rng.pick(&DATES))
                    } else {
                        json!(1_512_543_600_000_u64 + rng.below(5) as u64 * 3_600_000)
                    }
                }
                "semVerEqual" | "semVerLessThan" | "semVerGreaterThan" => {
                    json!(rng.pick(&VERSIONS))
                }
                _ => json!(rng.pick(&STRINGS)),
            }
        })
        .collect()
}

fn clause(rng: &mut Rng, shape: Shape, segment_keys: &[String], kind: Option<&str>) -> Value {
    let op = *rng.pick(&OPS);
    let mut object = Map::new();
    let kind = kind
        .map(str::to_owned)
        .or_else(|| rng.chance(60).then(|| rng.pick(&KINDS).to_string()));
    let attribute = if op == "segmentMatch" {
        String::new()
    } else if shape == Shape::Anything && rng.chance(3) {
        rng.pick(&["", "/a~2", "//"]).to_string()
    } else if rng.chance(8) {
        "kind".to_owned()
    } else if kind.is_some() && rng.chance(15) {
        "/address/city".to_owned()
    } else {
        rng.pick(&ATTRIBUTES).to_string()
    };
    if let Some(kind) = &kind {
        object.insert("contextKind".into(), json!(kind));
    }
    object.insert("attribute".into(), json!(attribute));
    object.insert("op".into(), json!(op));
    let values = if attribute == "kind" {
        (0..1 + rng.below(2))
            .map(|_| json!(rng.pick(&KINDS)))
            .collect()
    } else {
        clause_values(rng, op, segment_keys)
    };
    object.insert("values".into(), Value::Array(values));
    object.insert("negate".into(), json!(rng.chance(25)));
    Value::Object(object)
}

fn clauses(rng: &mut Rng, shape: Shape, segment_keys: &[String]) -> Vec<Value> {
    (0..rng.below(4))
        .map(|_| clause(rng, shape, segment_keys, None))
        .collect()
}

fn rollout(rng: &mut Rng, variations: usize) -> Value {
    let buckets = 1 + rng.below(3);
    let mut remaining = 100_000usize;
    let mut weighted = Vec::new();
    for i in 0..buckets {
        let weight = if i + 1 == buckets && rng.chance(80) {
            remaining
        } else {
            rng.below(remaining + 1)
        };
        remaining -= weight;
        let mut wv = json!({"variation": rng.below(variations), "weight": weight});
        if rng.chance(15) {
            wv["untracked"] = json!(true);
        }
        weighted.push(wv);
    }
    let mut object = json!({"variations": weighted});
    if rng.chance(30) {
        object["kind"] = json!("experiment");
    }
    if rng.chance(40) {
        object["seed"] = json!(1 + rng.below(1000));
    }
    if rng.chance(40) {
        object["contextKind"] = json!(rng.pick(&KINDS));
    }
    if rng.chance(40) {
        object["bucketBy"] = json!(rng.pick(&["key", "age", "plan", "email", "name", "score"]));
    }
    object
}

fn variation_or_rollout(rng: &mut Rng, variations: usize) -> Value {
    if rng.chance(60) {
        json!({"variation": rng.below(variations)})
    } else {
        json!({"rollout": rollout(rng, variations)})
    }
}

fn segment(rng: &mut Rng, shape: Shape, key: &str, segment_keys: &[String]) -> Value {
    let keys = |rng: &mut Rng| -> Vec<Value> {
        (0..rng.below(3)).map(|_| json!(rng.pick(&KEYS))).collect()
    };
    // Per-kind lists for the user kind are one of the Go/Rust divergences (§3.7).
    let other_kinds: &[&str] = if shape == Shape::Common {
        &KINDS[1..]
    } else {
        &KINDS
    };
    let by_kind = |rng: &mut Rng| -> Vec<Value> {
        (0..rng.below(2))
            .map(|_| json!({"contextKind": rng.pick(other_kinds), "values": keys(rng)}))
            .collect()
    };
    let rules: Vec<Value> = (0..rng.below(3))
        .map(|i| {
            let mut rule = json!({"id": format!("{key}-rule-{i}")});
            if rng.chance(35) {
                // A context without the rollout kind is a Go/Rust divergence for weighted rules
                // (§3.7); a first clause on that kind keeps such contexts out in `Common` data.
                let kind = *rng.pick(&KINDS);
                let mut cs = vec![json!({"contextKind": kind, "attribute": "key", "op": "in", "values": KEYS, "negate": false})];
                cs.extend(clauses(rng, shape, segment_keys));
                rule["clauses"] = Value::Array(cs);
                rule["weight"] = json!(rng.below(100_001));
                rule["rolloutContextKind"] = json!(kind);
                if rng.chance(50) {
                    rule["bucketBy"] = json!(rng.pick(&["key", "age", "email"]));
                }
            } else {
                rule["clauses"] = Value::Array(clauses(rng, shape, segment_keys));
            }
            rule
        })
        .collect();
    json!({
        "key": key, "version": 1 + rng.below(5), "salt": format!("salt-{}", rng.below(3)),
        "included": keys(rng), "excluded": keys(rng),
        "includedContexts": by_kind(rng), "excludedContexts": by_kind(rng),
        "rules": rules,
    })
}

/// Prerequisite keys for flag number `index`. In `Common` data the prerequisites form a tree
/// (later flags only, each flag a prerequisite at most once): LaunchDarkly's Rust crate leaves a
/// flag on its cycle-detection chain when that flag fails its own prerequisite, so reaching the
/// same flag twice in one evaluation makes it report a false cycle (`MALFORMED_FLAG`) where the
/// Go reference, and we, report `PREREQUISITE_FAILED`. Cycles are covered by the conformance
/// vectors and by `Anything` data.
fn prerequisite_keys(
    rng: &mut Rng,
    shape: Shape,
    index: usize,
    flag_keys: &[String],
    used: &mut Vec<String>,
) -> Vec<String> {
    let count = if rng.chance(30) { 1 + rng.below(2) } else { 0 };
    let mut keys = Vec::new();
    for _ in 0..count {
        if rng.chance(10) {
            keys.push("missing-flag".to_owned());
            continue;
        }
        match shape {
            Shape::Anything => keys.push(rng.pick(flag_keys).clone()),
            Shape::Common => {
                let free: Vec<&String> = flag_keys[index + 1..]
                    .iter()
                    .filter(|k| !used.contains(k))
                    .collect();
                if let Some(key) = free.get(rng.below(free.len().max(1))).copied() {
                    used.push(key.clone());
                    keys.push(key.clone());
                }
            }
        }
    }
    keys
}

fn flag(
    rng: &mut Rng,
    shape: Shape,
    key: &str,
    prerequisite_keys: Vec<String>,
    segment_keys: &[String],
) -> Value {
    let variations: Vec<Value> = match rng.below(4) {
        0 => vec![json!(false), json!(true)],
        1 => (0..2 + rng.below(3))
            .map(|i| json!(format!("v{i}")))
            .collect(),
        2 => vec![json!(1), json!(2.5), json!(-3)],
        _ => vec![json!({"a": 1}), json!([1, "x"]), Value::Null],
    };
    let n = variations.len();
    let prerequisites: Vec<Value> = prerequisite_keys
        .into_iter()
        .map(|key| json!({"key": key, "variation": rng.below(3)}))
        .collect();
    // User keys live in `targets` with distinct variations: LaunchDarkly's Rust crate reads every
    // `targets` entry of a variation where Go reads the first (§3.4).
    let mut targets = Vec::new();
    let mut context_targets = Vec::new();
    for variation in 0..n {
        if rng.chance(25) {
            targets.push(json!({"values": [rng.pick(&KEYS)], "variation": variation}));
        }
    }
    if rng.chance(40) {
        for t in &targets {
            context_targets
                .push(json!({"contextKind": "user", "values": [], "variation": t["variation"]}));
        }
        for _ in 0..rng.below(3) {
            context_targets.push(json!({"contextKind": rng.pick(&KINDS[1..]), "values": [rng.pick(&KEYS)], "variation": rng.below(n)}));
        }
    }
    let rules: Vec<Value> = (0..rng.below(4))
        .map(|i| {
            let mut rule = variation_or_rollout(rng, n);
            rule["id"] = json!(format!("rule-{i}"));
            rule["clauses"] = Value::Array(clauses(rng, shape, segment_keys));
            rule
        })
        .collect();
    let mut flag = json!({
        "key": key, "version": 1 + rng.below(9), "on": rng.chance(80), "salt": format!("s{}", rng.below(3)),
        "variations": variations, "prerequisites": prerequisites, "targets": targets,
        "contextTargets": context_targets, "rules": rules,
        "fallthrough": variation_or_rollout(rng, n),
    });
    if rng.chance(80) {
        flag["offVariation"] = json!(rng.below(n));
    }
    if shape == Shape::Anything && rng.chance(5) {
        flag["offVariation"] = json!(7);
    }
    flag
}

/// A random `{"flags": …, "segments": …}` payload.
pub fn data(rng: &mut Rng, shape: Shape) -> Value {
    let flag_keys: Vec<String> = (0..1 + rng.below(5)).map(|i| format!("flag-{i}")).collect();
    let segment_keys: Vec<String> = (0..rng.below(4)).map(|i| format!("segment-{i}")).collect();
    let segments: Map<String, Value> = segment_keys
        .iter()
        .map(|k| (k.clone(), segment(rng, shape, k, &segment_keys)))
        .collect();
    let mut used = Vec::new();
    let mut flags = Map::new();
    for (index, key) in flag_keys.iter().enumerate() {
        let prerequisites = prerequisite_keys(rng, shape, index, &flag_keys, &mut used);
        flags.insert(
            key.clone(),
            flag(rng, shape, key, prerequisites, &segment_keys),
        );
    }
    json!({"flags": flags, "segments": segments})
}
