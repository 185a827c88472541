//! Properties that must hold for any data: bucketing is deterministic, spreads contexts as the
//! weights say, and never moves a context out of a variation when its percentage grows; reading
//! our own canonical output gives the same data back; and no input, however broken, panics.

use flagstaff_eval::{Snapshot, Trace};
use flagstaff_protocol::{Context, FlagData};
use proptest::prelude::*;
use serde_json::{Value, json};

use flagstaff_testkit::generate::{self, Rng, Shape};

/// A boolean flag whose fallthrough serves `true` to `percent_true` thousandths of a percent.
fn rollout_flag(key: &str, salt: &str, weight_true: u32, seed: Option<u32>) -> FlagData {
    let mut rollout = json!({"variations": [
        {"variation": 1, "weight": weight_true}, {"variation": 0, "weight": 100_000 - weight_true}]});
    if let Some(seed) = seed {
        rollout["seed"] = json!(seed);
    }
    let data = json!({"flags": {key: {"key": key, "on": true, "salt": salt, "variations": [false, true],
        "fallthrough": {"rollout": rollout}}}});
    FlagData::from_json(data).expect("rollout flag")
}

fn user(key: &str) -> Context {
    Context::from_json(&json!({"kind": "user", "key": key})).expect("user context")
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z/~0-9.]{0,8}".prop_map(Value::from),
        prop_oneof![
            Just("in"),
            Just("segmentMatch"),
            Just("matches"),
            Just("semVerEqual"),
            Just("before"),
            Just("/a/b"),
            Just("user")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    "[a-z]{1,6}",
                    Just("key".to_owned()),
                    Just("kind".to_owned()),
                    Just("variation".to_owned()),
                    Just("rollout".to_owned()),
                    Just("clauses".to_owned()),
                    Just("values".to_owned()),
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replaces the `index`-th node (pre-order, modulo the node count) of `value` with `replacement`.
fn mutate(value: &mut Value, index: usize, replacement: Value) {
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Array(items) => items.iter().map(count).sum(),
            Value::Object(map) => map.values().map(count).sum(),
            _ => 0,
        }
    }
    fn walk(v: &mut Value, target: &mut usize, replacement: &mut Option<Value>) {
        if *target == 0 {
            if let Some(r) = replacement.take() {
                *v = r;
            }
            return;
        }
        *target -= 1;
        match v {
            Value::Array(items) => items
                .iter_mut()
                .for_each(|item| walk(item, target, replacement)),
            Value::Object(map) => map
                .values_mut()
                .for_each(|item| walk(item, target, replacement)),
            _ => {}
        }
    }
    let mut target = index % count(value);
    walk(value, &mut target, &mut Some(replacement));
}

/// Evaluates every flag for every context, plainly and with a trace. Panics are the failure.
fn evaluate_everything(data: &FlagData, contexts: &[Context]) {
    let snapshot = Snapshot::compile(data);
    for context in contexts {
        for flag in snapshot.flags() {
            let plain = snapshot.evaluate(flag.key(), context);
            let mut trace = Trace::default();
            let id = snapshot.flag_id(flag.key()).expect("listed flags exist");
            let traced = snapshot.evaluate_observed(id, context, &mut trace);
            assert_eq!(plain, traced, "explaining must not change the result");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn bucketing_is_deterministic(key in "[a-z-]{1,12}", salt in "[a-z0-9]{0,8}", context_key in "\\PC{1,20}", weight in 0u32..=100_000) {
        let data = rollout_flag(&key, &salt, weight, None);
        let first = Snapshot::compile(&data);
        let second = Snapshot::compile(&data);
        let context = user(&context_key);
        let a = first.evaluate(&key, &context);
        prop_assert_eq!(&a, &first.evaluate(&key, &context));
        prop_assert_eq!(&a, &second.evaluate(&key, &context));
    }

    #[test]
    fn ramping_up_never_moves_a_context_out(salt in "[a-z0-9]{0,8}", seed in proptest::option::of(1u32..10_000), low in 0u32..=100_000, extra in 0u32..=100_000) {
        // The promise of a progressive rollout: going from 5 % to 10 % keeps the first 5 %.
        let high = (low + extra).min(100_000);
        let before = Snapshot::compile(&rollout_flag("ramp", &salt, low, seed));
        let after = Snapshot::compile(&rollout_flag("ramp", &salt, high, seed));
        for i in 0..300 {
            let context = user(&format!("user-{i}"));
            if before.evaluate("ramp", &context).value == Some(&json!(true)) {
                prop_assert_eq!(after.evaluate("ramp", &context).value, Some(&json!(true)), "user-{} left the rollout going {} -> {}", i, low, high);
            }
        }
    }

    #[test]
    fn canonical_output_reads_back_identically(seed in any::<u64>()) {
        let data = FlagData::from_json(generate::data(&mut Rng::new(seed), Shape::Anything)).expect("generated data loads");
        let text = serde_json::to_string(&data).expect("serialises");
        prop_assert_eq!(FlagData::from_json_str(&text).expect("reads back"), data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn rollouts_spread_contexts_as_weighted(salt in "[a-z0-9]{0,8}", weight in 1_000u32..=99_000) {
        let snapshot = Snapshot::compile(&rollout_flag("spread", &salt, weight, None));
        let n = 20_000;
        let inside = (0..n).filter(|i| snapshot.evaluate("spread", &user(&format!("user-{i}"))).value == Some(&json!(true))).count();
        let p = f64::from(weight) / 100_000.0;
        let sigma = (p * (1.0 - p) / n as f64).sqrt();
        let observed = inside as f64 / n as f64;
        // Five standard deviations: a correct implementation fails this about once in 3.5 million runs.
        prop_assert!((observed - p).abs() < 5.0 * sigma, "weight {} gave {} of {} ({} expected)", weight, inside, n, p);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_panics_on_broken_data(seed in any::<u64>(), at in any::<usize>(), replacement in arbitrary_json(), context_at in any::<usize>(), context_replacement in arbitrary_json()) {
        let mut rng = Rng::new(seed);
        let mut data = generate::data(&mut rng, Shape::Anything);
        mutate(&mut data, at, replacement);
        let mut contexts: Vec<Value> = (0..4).map(|_| generate::context(&mut rng)).collect();
        mutate(&mut contexts[0], context_at, context_replacement);
        // Broken data may be rejected, with an error; it must never panic.
        if let Ok(data) = FlagData::from_json(data) {
            let contexts: Vec<Context> = contexts.iter().filter_map(|c| Context::from_json(c).ok()).collect();
            evaluate_everything(&data, &contexts);
        }
    }

    #[test]
    fn never_panics_on_arbitrary_json(flags in arbitrary_json(), context in arbitrary_json()) {
        let _ = Context::from_json(&context);
        if let Ok(data) = FlagData::from_json(json!({"flags": {"f": flags}})) {
            let contexts: Vec<Context> = Context::from_json(&context).into_iter().collect();
            evaluate_everything(&data, &contexts);
        }
    }
}

/// Every flag's result for every context, as text (reasons included).
fn results(snapshot: &Snapshot, keys: &[String], contexts: &[Context]) -> Vec<String> {
    let mut out = Vec::new();
    for key in keys {
        for context in contexts {
            out.push(format!("{key}: {:?}", snapshot.evaluate(key, context)));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A snapshot patched in place (`with_flag`, `with_segment`: one item recompiled, the rest
    /// shared) evaluates exactly as the whole data compiled afresh with that item replaced, for
    /// any data, including broken data.
    #[test]
    fn patching_one_item_equals_compiling_everything(seed in any::<u64>(), other in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let Ok(data) = FlagData::from_json(generate::data(&mut rng, Shape::Anything)) else {
            return Ok(());
        };
        let Ok(newer) = FlagData::from_json(generate::data(&mut Rng::new(other), Shape::Anything)) else {
            return Ok(());
        };
        let contexts: Vec<Context> = (0..6)
            .filter_map(|_| Context::from_json(&generate::context(&mut rng)).ok())
            .collect();
        let mut keys: Vec<String> = data.flags.keys().chain(newer.flags.keys()).cloned().collect();
        keys.push("no-such-flag".into());
        let base = Snapshot::compile(&data);
        for (key, flag) in &newer.flags {
            let mut expected = data.clone();
            expected.flags.insert(key.clone(), flag.clone());
            match base.with_flag(std::sync::Arc::new(flag.clone())) {
                Some(patched) => prop_assert_eq!(
                    results(&patched, &keys, &contexts),
                    results(&Snapshot::compile(&expected), &keys, &contexts)
                ),
                // Only a new key or a deletion needs the whole data.
                None => prop_assert!(flag.deleted || data.flags.get(key).is_none_or(|f| f.deleted)),
            }
        }
        for (key, segment) in &newer.segments {
            let mut expected = data.clone();
            expected.segments.insert(key.clone(), segment.clone());
            match base.with_segment(std::sync::Arc::new(segment.clone())) {
                Some(patched) => prop_assert_eq!(
                    results(&patched, &keys, &contexts),
                    results(&Snapshot::compile(&expected), &keys, &contexts)
                ),
                None => prop_assert!(segment.deleted || data.segments.get(key).is_none_or(|s| s.deleted)),
            }
        }
    }
}
