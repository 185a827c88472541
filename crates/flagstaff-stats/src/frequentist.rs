//! Frequentist comparisons of a treatment with the control: Welch's t-test (unequal variances,
//! Welch–Satterthwaite degrees of freedom) with absolute and relative (delta-method) intervals,
//! and anytime-valid confidence sequences for people who look at results every day.

use crate::moments::Moments;
use crate::special::{normal_quantile, student_t_quantile, student_t_sf};

/// An interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

impl Interval {
    /// Whether zero lies outside it.
    pub fn excludes_zero(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// Welch's t-test of treatment against control.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Welch {
    /// Treatment mean minus control mean.
    pub difference: f64,
    /// Its standard error, √(s²_c/n_c + s²_t/n_t).
    pub standard_error: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub degrees_of_freedom: f64,
    /// The t statistic.
    pub t: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// The 1 − α interval of the difference (Student t quantile).
    pub interval: Interval,
    /// The difference relative to the control mean, (m_t − m_c) / m_c.
    pub relative_lift: f64,
    /// Its 1 − α interval by the delta method (normal quantile):
    /// Var ≈ s²_t / (n_t m_c²) + m_t² s²_c / (n_c m_c⁴).
    pub relative_interval: Interval,
}

/// Welch's t-test at level `alpha` (0.05 for 95 % intervals). `None` when a variation has fewer
/// than two contexts or neither varies: there is nothing to test yet.
pub fn welch(control: &Moments, treatment: &Moments, alpha: f64) -> Option<Welch> {
    if control.n < 2.0 || treatment.n < 2.0 {
        return None;
    }
    let (mc, mt) = (control.mean(), treatment.mean());
    let (vc, vt) = (
        control.variance() / control.n,
        treatment.variance() / treatment.n,
    );
    let se2 = vc + vt;
    if se2 <= 0.0 {
        return None;
    }
    let se = se2.sqrt();
    let df = se2 * se2 / (vc * vc / (control.n - 1.0) + vt * vt / (treatment.n - 1.0));
    let difference = mt - mc;
    let t = difference / se;
    let p_value = (2.0 * student_t_sf(t.abs(), df)).min(1.0);
    let q = student_t_quantile(1.0 - alpha / 2.0, df);
    let relative_lift = difference / mc;
    let relative_se = (vt / (mc * mc) + mt * mt * vc / (mc * mc * mc * mc)).sqrt();
    let z = normal_quantile(1.0 - alpha / 2.0);
    Some(Welch {
        difference,
        standard_error: se,
        degrees_of_freedom: df,
        t,
        p_value,
        interval: Interval {
            low: difference - q * se,
            high: difference + q * se,
        },
        relative_lift,
        relative_interval: Interval {
            low: relative_lift - z * relative_se,
            high: relative_lift + z * relative_se,
        },
    })
}

/// The sample size at which a confidence sequence is tightest, when nobody says otherwise:
/// GrowthBook's default, a typical experiment's size.
pub const DEFAULT_TUNING_SAMPLE: f64 = 5_000.0;

/// An asymptotic confidence sequence for the difference of means (Waudby-Smith, Arnold, Wu,
/// Ramdas and Howard, "Time-uniform central limit theory and asymptotic confidence sequences",
/// 2021, Theorem 2.2; the method GrowthBook uses).
///
/// With N contexts in all and σ² = N·SE² (the difference's variance per context), the
/// half-width is
///
/// ```text
/// σ · √( 2(Nρ² + 1) / (N²ρ²) · ln( √(Nρ² + 1) / α ) ),   ρ² = (−2 ln α + ln(1 − 2 ln α)) / N*
/// ```
///
/// It holds *at every N at once* with probability 1 − α (asymptotically), so people may look
/// every day and stop whenever it excludes zero without inflating false positives: the price
/// is a wider interval than a fixed-horizon one. N* (`tuning_sample`) is where it is tightest.
/// Chosen over a mixture SPRT because it needs no prior on the effect and works from the same
/// means and variances as Welch's test, for any metric.
pub fn confidence_sequence(
    control: &Moments,
    treatment: &Moments,
    alpha: f64,
    tuning_sample: f64,
) -> Option<Interval> {
    if control.n < 2.0 || treatment.n < 2.0 {
        return None;
    }
    let se2 = control.variance() / control.n + treatment.variance() / treatment.n;
    if se2 <= 0.0 {
        return None;
    }
    let n = control.n + treatment.n;
    let sigma2 = se2 * n;
    let log_alpha = alpha.ln();
    let rho2 = (-2.0 * log_alpha + (1.0 - 2.0 * log_alpha).ln()) / tuning_sample;
    let half = (sigma2 * 2.0 * (n * rho2 + 1.0) / (n * n * rho2)
        * (((n * rho2 + 1.0).sqrt()) / alpha).ln())
    .sqrt();
    let difference = treatment.mean() - control.mean();
    Some(Interval {
        low: difference - half,
        high: difference + half,
    })
}
