//! The methods' error rates, by simulation (no I/O; seeded, so a failure reproduces):
//! - 2,000 A/A experiments looked at every day for 14 days: stopping at the first look whose
//!   confidence sequence excludes zero is wrong at most α of the time (plus simulation noise),
//!   while stopping at the first fixed-horizon p < α is wrong far more often;
//! - a known effect is inside the 95 % Welch interval about 95 % of the time;
//! - CUPED with a covariate of correlation ρ removes about ρ² of the variance, so intervals
//!   shrink by about √(1 − ρ²).

use flagstaff_stats::checks::cuped;
use flagstaff_stats::frequentist::{DEFAULT_TUNING_SAMPLE, confidence_sequence, welch};
use flagstaff_stats::{CovariateMoments, Moments};

use crate::{Draws as _, Rng};

const ALPHA: f64 = 0.05;
const EXPERIMENTS: usize = 2_000;
/// Three standard errors of a proportion near 5 % estimated from 2,000 runs (0.49 % each).
const NOISE: f64 = 0.015;

#[test]
fn daily_peeking_keeps_the_sequential_false_positive_rate_and_inflates_the_naive_one() {
    let mut rng = Rng::new(2026);
    let (days, per_day) = (14, 150);
    let (mut naive, mut sequential) = (0usize, 0usize);
    for _ in 0..EXPERIMENTS {
        let (mut control, mut treatment) = (Moments::default(), Moments::default());
        let (mut naive_hit, mut sequential_hit) = (false, false);
        for _ in 0..days {
            for _ in 0..per_day {
                control.add(rng.normal());
                treatment.add(rng.normal());
            }
            let fixed = welch(&control, &treatment, ALPHA).unwrap();
            naive_hit |= fixed.p_value < ALPHA;
            let interval =
                confidence_sequence(&control, &treatment, ALPHA, DEFAULT_TUNING_SAMPLE).unwrap();
            sequential_hit |= interval.excludes_zero();
        }
        naive += usize::from(naive_hit);
        sequential += usize::from(sequential_hit);
    }
    let naive = naive as f64 / EXPERIMENTS as f64;
    let sequential = sequential as f64 / EXPERIMENTS as f64;
    println!(
        "A/A, {EXPERIMENTS} experiments looked at daily for {days} days: false positives \
         {:.1} % naive (p < 0.05 at any look), {:.1} % with the confidence sequence",
        naive * 100.0,
        sequential * 100.0
    );
    assert!(sequential <= ALPHA + NOISE, "sequential {sequential}");
    assert!(
        naive > 2.0 * ALPHA,
        "naive peeking should inflate false positives: {naive}"
    );
}

#[test]
fn a_known_effect_is_covered_at_the_stated_rate() {
    let mut rng = Rng::new(99);
    let effect = 0.25;
    let mut covered = 0usize;
    for _ in 0..EXPERIMENTS {
        let (mut control, mut treatment) = (Moments::default(), Moments::default());
        for _ in 0..200 {
            control.add(10.0 + 2.0 * rng.normal());
            treatment.add(10.0 + effect + 3.0 * rng.normal());
        }
        let result = welch(&control, &treatment, ALPHA).unwrap();
        covered += usize::from(result.interval.low <= effect && effect <= result.interval.high);
    }
    let coverage = covered as f64 / EXPERIMENTS as f64;
    println!(
        "coverage of a known effect by the 95 % Welch interval: {:.1} %",
        coverage * 100.0
    );
    assert!(
        (coverage - (1.0 - ALPHA)).abs() <= NOISE,
        "coverage {coverage}"
    );
}

#[test]
fn cuped_with_a_correlated_covariate_shrinks_intervals_by_the_expected_factor() {
    let mut rng = Rng::new(11);
    let rho: f64 = 0.7;
    let (mut reductions, mut ratios) = (0.0, 0.0);
    let runs = 200;
    for _ in 0..runs {
        let (mut control, mut treatment) =
            (CovariateMoments::default(), CovariateMoments::default());
        for arm in [&mut control, &mut treatment] {
            for _ in 0..1_000 {
                let x = rng.normal();
                let y = rho * x + (1.0 - rho * rho).sqrt() * rng.normal();
                arm.add(y, x);
            }
        }
        let adjusted = cuped(&control, &treatment).unwrap();
        let plain = welch(&control.y, &treatment.y, ALPHA).unwrap();
        let reduced = welch(&adjusted.control, &adjusted.treatment, ALPHA).unwrap();
        reductions += adjusted.variance_reduction;
        ratios += (reduced.interval.high - reduced.interval.low)
            / (plain.interval.high - plain.interval.low);
    }
    let (reduction, ratio) = (reductions / runs as f64, ratios / runs as f64);
    println!(
        "CUPED, ρ = {rho}: variance reduced by {:.1} % (expected {:.1} %), intervals {:.3} as wide (expected {:.3})",
        reduction * 100.0,
        rho * rho * 100.0,
        ratio,
        (1.0 - rho * rho).sqrt()
    );
    assert!(
        (reduction - rho * rho).abs() < 0.02,
        "reduction {reduction}"
    );
    assert!(
        (ratio - (1.0 - rho * rho).sqrt()).abs() < 0.01,
        "ratio {ratio}"
    );
}
