//! What guards the other numbers: the sample-ratio mismatch check, corrections for testing
//! several treatments and metrics at once, and CUPED variance reduction.

use crate::moments::{CovariateMoments, Moments};
use crate::special::chi_squared_sf;

/// A sample ratio mismatch is declared below this p-value: strict, because a false alarm
/// discards an experiment, and a real mismatch (a bug in assignment or in event delivery) is
/// usually far below it.
pub const SRM_THRESHOLD: f64 = 0.001;

/// The sample-ratio mismatch check.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleRatio {
    /// Pearson's χ² statistic.
    pub chi_squared: f64,
    /// Its p-value (k − 1 degrees of freedom).
    pub p_value: f64,
    /// `p_value < SRM_THRESHOLD`: the exposures do not fit the configured weights, so every
    /// other result of the experiment is suspect.
    pub detected: bool,
}

/// χ² goodness of fit of `exposures` per variation against the configured `weights` (any
/// scale). `None` with fewer than two variations, no exposures or a non-positive weight.
pub fn sample_ratio(exposures: &[f64], weights: &[f64]) -> Option<SampleRatio> {
    let total: f64 = exposures.iter().sum();
    let weight_total: f64 = weights.iter().sum();
    if exposures.len() < 2
        || exposures.len() != weights.len()
        || total <= 0.0
        || weights.iter().any(|w| *w <= 0.0)
    {
        return None;
    }
    let chi_squared: f64 = exposures
        .iter()
        .zip(weights)
        .map(|(observed, weight)| {
            let expected = total * weight / weight_total;
            (observed - expected) * (observed - expected) / expected
        })
        .sum();
    let p_value = chi_squared_sf(chi_squared, (exposures.len() - 1) as f64);
    Some(SampleRatio {
        chi_squared,
        p_value,
        detected: p_value < SRM_THRESHOLD,
    })
}

/// Holm's step-down adjustment of p-values (family-wise error rate), in the input's order.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|a, b| p_values[*a].total_cmp(&p_values[*b]));
    let mut adjusted = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p_values[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// Benjamini–Hochberg adjustment (false discovery rate), in the input's order.
pub fn benjamini_hochberg(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|a, b| p_values[*a].total_cmp(&p_values[*b]));
    let mut adjusted = vec![0.0; m];
    let mut running: f64 = 1.0;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running
            .min(m as f64 * p_values[i] / (rank + 1) as f64)
            .min(1.0);
        adjusted[i] = running;
    }
    adjusted
}

/// A metric's moments per variation after CUPED, and how much variance it removed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cuped {
    /// The control's adjusted moments.
    pub control: Moments,
    /// The treatment's adjusted moments.
    pub treatment: Moments,
    /// θ = Cov(x, y) / Var(x), pooled over both variations.
    pub theta: f64,
    /// 1 − Var(adjusted) / Var(y), pooled: the share of variance removed (ρ² of x and y).
    pub variance_reduction: f64,
}

/// CUPED (Deng, Xu, Kohavi and Walker, 2013): each context's value y becomes
/// y − θ(x − x̄), x being its value before exposure and x̄ the pooled mean, which keeps every
/// variation's expected mean and removes the part of the variance x explains. Computed from
/// sufficient statistics: the adjusted mean is ȳ − θ(x̄_v − x̄) and the adjusted sum of squares
/// follows from Σy², Σx², Σxy. `None` when the covariate does not vary.
pub fn cuped(control: &CovariateMoments, treatment: &CovariateMoments) -> Option<Cuped> {
    let pooled = control.pooled(treatment);
    let var_x = pooled.x.variance();
    if var_x <= 0.0 || pooled.y.n < 3.0 {
        return None;
    }
    let theta = pooled.covariance() / var_x;
    let x_bar = pooled.x.mean();
    let adjust = |m: &CovariateMoments| {
        // Σ (y − θ(x − x̄)) and Σ (y − θ(x − x̄))², expanded.
        let n = m.y.n;
        let shift = |x_sum: f64| x_sum - n * x_bar;
        let sum = m.y.sum - theta * shift(m.x.sum);
        // Σ (x − x̄)² = Σx² − 2x̄Σx + n x̄²;  Σ y(x − x̄) = Σxy − x̄Σy.
        let centred_x2 = m.x.sum_squares - 2.0 * x_bar * m.x.sum + n * x_bar * x_bar;
        let centred_xy = m.sum_products - x_bar * m.y.sum;
        let sum_squares = m.y.sum_squares - 2.0 * theta * centred_xy + theta * theta * centred_x2;
        Moments {
            n,
            sum,
            sum_squares,
        }
    };
    let (control_adjusted, treatment_adjusted) = (adjust(control), adjust(treatment));
    let pooled_adjusted = Moments {
        n: pooled.y.n,
        sum: control_adjusted.sum + treatment_adjusted.sum,
        sum_squares: control_adjusted.sum_squares + treatment_adjusted.sum_squares,
    };
    let var_y = pooled.y.variance();
    Some(Cuped {
        control: control_adjusted,
        treatment: treatment_adjusted,
        theta,
        variance_reduction: if var_y > 0.0 {
            1.0 - pooled_adjusted.variance() / var_y
        } else {
            0.0
        },
    })
}
