//! What an experiment's results cost once its exposures and metrics are sufficient statistics
//! (issue 21: results for 1,000,000 exposed contexts in under a second): two variations of
//! 500,000 exposed contexts each, a conversion metric (Beta posteriors, the costly part) and a
//! numeric one with CUPED.

use criterion::{Criterion, criterion_group, criterion_main};
use flagstaff_stats::experiment::{Correction, Experiment, MetricData, MetricKind, results};
use flagstaff_stats::{CovariateMoments, Moments};

fn experiment() -> Experiment {
    let n = 500_000.0;
    let covariates: Vec<CovariateMoments> = (0..2)
        .map(|v| {
            let mut m = CovariateMoments::default();
            for i in 0..1_000 {
                let x = f64::from(i % 50);
                m.add(x + 0.01 * f64::from(v) + f64::from(i % 7) / 7.0, x);
            }
            // Scale the thousand contexts up to half a million.
            let scale = n / 1_000.0;
            m.y.n *= scale;
            m.y.sum *= scale;
            m.y.sum_squares *= scale;
            m.x.n *= scale;
            m.x.sum *= scale;
            m.x.sum_squares *= scale;
            m.sum_products *= scale;
            m
        })
        .collect();
    Experiment {
        exposures: vec![n, n],
        weights: vec![1.0, 1.0],
        control: 0,
        metrics: vec![
            MetricData {
                key: "purchase".into(),
                kind: MetricKind::Conversion,
                higher_is_better: true,
                moments: vec![
                    Moments::conversions(50_000.0, n),
                    Moments::conversions(50_900.0, n),
                ],
                covariates: None,
            },
            MetricData {
                key: "revenue".into(),
                kind: MetricKind::Numeric,
                higher_is_better: true,
                moments: covariates.iter().map(|c| c.y).collect(),
                covariates: Some(covariates),
            },
        ],
        alpha: 0.05,
        tuning_sample: 5_000.0,
        correction: Correction::Holm,
    }
}

fn bench(c: &mut Criterion) {
    let experiment = experiment();
    c.bench_function("results, 1,000,000 exposed contexts, 2 metrics", |b| {
        b.iter(|| results(std::hint::black_box(&experiment)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
