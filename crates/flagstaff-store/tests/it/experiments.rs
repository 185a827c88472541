//! Experiment moments on every backend: after many flushes of exposures and metric events in
//! random order, the incrementally kept sums equal the sums recomputed from scratch over the
//! raw events, and closing an iteration removes its per-context rows but not its totals.

use std::collections::{BTreeMap, HashMap};

use flagstaff_store::EventStore;
use flagstaff_store::events::{
    EventWrite, ExperimentWrite, ExposureRow, OutcomeRow, PENDING_EVENTS, Transform,
    TransformMoments,
};

use crate::backends::on_every_backend;

/// A small deterministic generator (SplitMix64), enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const ITERATION: &str = "it-1";
const EVENTS: [&str; 2] = ["purchase", "latency"];

/// `count` flushes of `events` over `units` contexts: each a mix of exposures (some repeated,
/// some to a second variation later) and metric events before and after exposure, some for
/// contexts never exposed.
fn flushes(rng: &mut Rng, count: i64, events: usize, units: u64) -> Vec<ExperimentWrite> {
    let mut out = Vec::new();
    let start = 1_800_000_000_000_i64;
    for flush in 0..count {
        let mut write = ExperimentWrite::default();
        for _ in 0..events {
            let unit = format!("u{}", rng.below(units));
            let at = start + flush * 1_000 + rng.below(3_000) as i64 - 1_500;
            if rng.below(3) == 0 {
                write.exposures.push(ExposureRow {
                    iteration: ITERATION.into(),
                    unit_key: unit,
                    variation: rng.below(2) as u32,
                    at,
                });
            } else {
                let event = EVENTS[rng.below(2) as usize];
                write.outcomes.push(OutcomeRow {
                    iteration: ITERATION.into(),
                    unit_key: unit,
                    event_key: event.into(),
                    value: (rng.below(4) != 0).then(|| rng.below(1000) as f64 / 10.0),
                    at,
                });
            }
        }
        out.push(write);
    }
    out
}

#[derive(Clone, Copy, Default)]
struct Counts {
    pre: (i64, f64),
    post: (i64, f64),
}

/// The expected state, computed the slow way with the writer's documented rules: a context's
/// first stored exposure wins (the earliest of its first flush); an event counts after
/// exposure when the exposure is not later than the event, whichever flush brought either,
/// except that of the events arriving before their context's exposure only the first
/// `PENDING_EVENTS` per event key keep their time (the rest count as before exposure).
type Moments = BTreeMap<(u32, String, Transform), TransformMoments>;

fn expected(flushes: &[ExperimentWrite]) -> (BTreeMap<u32, u64>, Moments) {
    let mut exposure: HashMap<String, (u32, i64)> = HashMap::new();
    let mut counts: BTreeMap<(String, String), Counts> = BTreeMap::new();
    // Events that arrived before their context's exposure: (time, value), in arrival order.
    let mut early: BTreeMap<(String, String), Vec<(i64, f64)>> = BTreeMap::new();
    let count = |c: &mut Counts, after: bool, value: f64| {
        let side = if after { &mut c.post } else { &mut c.pre };
        side.0 += 1;
        side.1 += value;
    };
    for write in flushes {
        let mut first: HashMap<&str, (u32, i64)> = HashMap::new();
        for e in &write.exposures {
            let entry = first.entry(&e.unit_key).or_insert((e.variation, e.at));
            if e.at < entry.1 {
                *entry = (e.variation, e.at);
            }
        }
        for (unit, v) in first {
            if exposure.contains_key(unit) {
                continue;
            }
            exposure.insert(unit.to_owned(), v);
            let waiting: Vec<(String, String)> =
                early.keys().filter(|(u, _)| u == unit).cloned().collect();
            for key in waiting {
                let events = early.remove(&key).unwrap_or_default();
                let c = counts.entry(key).or_default();
                for (i, (at, value)) in events.into_iter().enumerate() {
                    count(c, i < PENDING_EVENTS && at >= v.1, value);
                }
            }
        }
        for o in &write.outcomes {
            let key = (o.unit_key.clone(), o.event_key.clone());
            let value = o.value.unwrap_or(0.0);
            match exposure.get(&o.unit_key) {
                Some((_, at)) => count(counts.entry(key).or_default(), o.at >= *at, value),
                None => early.entry(key).or_default().push((o.at, value)),
            }
        }
    }
    let mut exposures = BTreeMap::new();
    for (variation, _) in exposure.values() {
        *exposures.entry(*variation).or_default() += 1;
    }
    let mut moments = Moments::new();
    for ((unit, event), c) in &counts {
        let Some((variation, _)) = exposure.get(unit) else {
            continue;
        };
        for transform in Transform::ALL {
            let (y, x) = match transform {
                Transform::Conversion => (
                    f64::from(u8::from(c.post.0 > 0)),
                    f64::from(u8::from(c.pre.0 > 0)),
                ),
                Transform::Count => (c.post.0 as f64, c.pre.0 as f64),
                Transform::Sum => (c.post.1, c.pre.1),
                Transform::Mean => {
                    if c.post.0 == 0 {
                        continue;
                    }
                    (c.post.1 / c.post.0 as f64, 0.0)
                }
            };
            let m = moments
                .entry((*variation, event.clone(), transform))
                .or_default();
            m.n += u64::from(c.post.0 > 0);
            m.sum_y += y;
            m.sum_y2 += y * y;
            m.sum_x += x;
            m.sum_x2 += x * x;
            m.sum_xy += x * y;
        }
    }
    (exposures, moments)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()))
}

#[tokio::test]
async fn incremental_moments_equal_a_recomputation_from_the_raw_events() {
    on_every_backend(|t| async move {
        let events = EventStore::open(&t.url).await.unwrap();
        // Small flushes over few contexts (many changes per context), and large ones whose
        // rows span several batched statements.
        for (seed, count, per_flush, units) in [
            (1_u64, 12, 60, 80),
            (2, 12, 60, 80),
            (3, 12, 60, 80),
            (4, 3, 3_000, 2_500),
        ] {
            let iteration = format!("{ITERATION}-{seed}");
            let mut flushes = flushes(&mut Rng(seed), count, per_flush, units);
            for write in &mut flushes {
                for e in &mut write.exposures {
                    e.iteration.clone_from(&iteration);
                }
                for o in &mut write.outcomes {
                    o.iteration.clone_from(&iteration);
                }
            }
            for write in &flushes {
                events
                    .write(&EventWrite {
                        experiments: write.clone(),
                        ..EventWrite::default()
                    })
                    .await
                    .unwrap();
            }
            let (exposures, moments) = expected(&flushes);
            let totals = events.iteration_totals(&iteration).await.unwrap();
            assert_eq!(totals.exposures, exposures, "seed {seed}");
            assert!(!moments.is_empty());
            for (key, want) in &moments {
                let got = totals.moments.get(key).copied().unwrap_or_default();
                assert_eq!(got.n, want.n, "n of {key:?}, seed {seed}");
                for (name, g, w) in [
                    ("sum_y", got.sum_y, want.sum_y),
                    ("sum_y2", got.sum_y2, want.sum_y2),
                    ("sum_x", got.sum_x, want.sum_x),
                    ("sum_x2", got.sum_x2, want.sum_x2),
                    ("sum_xy", got.sum_xy, want.sum_xy),
                ] {
                    assert!(close(g, w), "{name} of {key:?}: {g} != {w}, seed {seed}");
                }
            }
            // Moments the slow way has not (contexts whose contributions cancelled) are zero.
            for (key, got) in &totals.moments {
                if !moments.contains_key(key) {
                    assert_eq!(got.n, 0, "{key:?}");
                    assert!(close(got.sum_y, 0.0) && close(got.sum_x, 0.0), "{key:?}");
                }
            }

            // Closing the iteration drops per-context rows and keeps the totals.
            let removed = events.forget_iteration_contexts(&iteration).await.unwrap();
            assert!(removed > 0);
            assert_eq!(events.iteration_totals(&iteration).await.unwrap(), totals);
        }
        t
    })
    .await;
}

/// SDK payloads are parsed in parallel and retried, so a context's conversion can arrive a flush
/// before the exposure that preceded it: it still counts after the exposure, by its own time.
#[tokio::test]
async fn a_conversion_that_arrives_before_its_exposure_counts_after_it() {
    on_every_backend(|t| async move {
        let events = EventStore::open(&t.url).await.unwrap();
        let iteration = "it-early";
        let outcome = |unit: &str, at: i64| OutcomeRow {
            iteration: iteration.into(),
            unit_key: unit.into(),
            event_key: "purchase".into(),
            value: Some(5.0),
            at,
        };
        let exposure = |unit: &str, at: i64| ExposureRow {
            iteration: iteration.into(),
            unit_key: unit.into(),
            variation: 1,
            at,
        };
        let write = |experiments: ExperimentWrite| EventWrite {
            experiments,
            ..EventWrite::default()
        };
        // Flush 1: ann's purchase (at 2,000) and bob's earlier one (at 500).
        events
            .write(&write(ExperimentWrite {
                outcomes: vec![outcome("ann", 2_000), outcome("bob", 500)],
                ..ExperimentWrite::default()
            }))
            .await
            .unwrap();
        // Flush 2: both exposures, at 1,000: ann bought after it, bob before it.
        events
            .write(&write(ExperimentWrite {
                exposures: vec![exposure("ann", 1_000), exposure("bob", 1_000)],
                ..ExperimentWrite::default()
            }))
            .await
            .unwrap();
        let totals = events.iteration_totals(iteration).await.unwrap();
        let conversion = totals
            .moments
            .get(&(1, "purchase".to_owned(), Transform::Conversion))
            .copied()
            .unwrap_or_default();
        assert_eq!(conversion.n, 1, "only ann converted after exposure");
        assert!(close(conversion.sum_y, 1.0), "{conversion:?}");
        assert!(
            close(conversion.sum_x, 1.0),
            "bob's purchase is his covariate"
        );
        t
    })
    .await;
}
