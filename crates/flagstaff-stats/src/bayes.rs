//! Bayesian comparisons: the probability that the treatment beats the control and the expected
//! loss (risk) of choosing it, with credible intervals. Conversions use Beta–Binomial
//! posteriors (uniform Beta(1, 1) prior); numeric metrics a Gaussian posterior of each mean
//! (flat prior: the mean with its standard error).

use crate::moments::Moments;
use crate::special::{beta_inc, beta_pdf, beta_quantile, integrate, normal_cdf, normal_pdf};

/// What a Bayesian comparison says about choosing the treatment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bayesian {
    /// P(treatment is better than control), "better" in the metric's direction.
    pub probability_to_beat_control: f64,
    /// E[max(0, what is lost by choosing the treatment)], in the metric's unit: what choosing
    /// it costs on average when it is in fact worse.
    pub expected_loss: f64,
    /// The 1 − α credible interval of the treatment's mean (or rate).
    pub treatment_interval: (f64, f64),
    /// The same for the control.
    pub control_interval: (f64, f64),
}

/// Panels of the numerical integrals over the control's posterior (8 Gauss–Legendre points
/// each), spread over its mean ± 12 standard deviations.
const PANELS: usize = 400;

/// Beta–Binomial: `conversions` of `n` in each variation; `higher_is_better` says which way is
/// good (a conversion to an error event is better lower).
pub fn conversions(
    control: (f64, f64),
    treatment: (f64, f64),
    higher_is_better: bool,
    alpha: f64,
) -> Bayesian {
    // Posteriors Beta(1 + conversions, 1 + misses).
    let (ac, bc) = (1.0 + control.0, 1.0 + control.1 - control.0);
    let (at, bt) = (1.0 + treatment.0, 1.0 + treatment.1 - treatment.0);
    let mean_t = at / (at + bt);
    // Integrate over the control's rate c: P(T > c) = 1 − I_c(at, bt), and
    // E[max(0, c − T)] = c·I_c(at, bt) − E[T]·I_c(at + 1, bt).
    let sd_c = (ac * bc / ((ac + bc) * (ac + bc) * (ac + bc + 1.0))).sqrt();
    let centre = ac / (ac + bc);
    let low = (centre - 12.0 * sd_c).max(0.0);
    let high = (centre + 12.0 * sd_c).min(1.0);
    let density = |c: f64| beta_pdf(c, ac, bc);
    let beats = integrate(
        |c| density(c) * (1.0 - beta_inc(at, bt, c)),
        low,
        high,
        PANELS,
    );
    // Expected loss of choosing the treatment when higher is better: E[max(0, C − T)].
    let loss_higher = integrate(
        |c| density(c) * (c * beta_inc(at, bt, c) - mean_t * beta_inc(at + 1.0, bt, c)),
        low,
        high,
        PANELS,
    );
    let mean_c = centre;
    let (probability, loss) = if higher_is_better {
        (beats, loss_higher)
    } else {
        // E[max(0, T − C)] = E[T − C] + E[max(0, C − T)].
        (1.0 - beats, mean_t - mean_c + loss_higher)
    };
    let interval = |a: f64, b: f64| {
        (
            beta_quantile(alpha / 2.0, a, b),
            beta_quantile(1.0 - alpha / 2.0, a, b),
        )
    };
    Bayesian {
        probability_to_beat_control: probability.clamp(0.0, 1.0),
        expected_loss: loss.max(0.0),
        treatment_interval: interval(at, bt),
        control_interval: interval(ac, bc),
    }
}

/// Gaussian: each mean's posterior is N(mean, s²/n); the difference's is their difference.
/// `None` when a variation has fewer than two contexts or neither varies.
pub fn means(
    control: &Moments,
    treatment: &Moments,
    higher_is_better: bool,
    alpha: f64,
) -> Option<Bayesian> {
    if control.n < 2.0 || treatment.n < 2.0 {
        return None;
    }
    let (vc, vt) = (
        control.variance() / control.n,
        treatment.variance() / treatment.n,
    );
    let sd = (vc + vt).sqrt();
    if sd <= 0.0 {
        return None;
    }
    let sign = if higher_is_better { 1.0 } else { -1.0 };
    // The gain of choosing the treatment, in the good direction: D ~ N(d, sd²).
    let d = sign * (treatment.mean() - control.mean());
    let z = crate::special::normal_quantile(1.0 - alpha / 2.0);
    let interval = |m: &Moments, v: f64| (m.mean() - z * v.sqrt(), m.mean() + z * v.sqrt());
    Some(Bayesian {
        probability_to_beat_control: normal_cdf(d / sd),
        // E[max(0, −D)] = sd·φ(d/sd) − d·Φ(−d/sd).
        expected_loss: (sd * normal_pdf(d / sd) - d * normal_cdf(-d / sd)).max(0.0),
        treatment_interval: interval(treatment, vt),
        control_interval: interval(control, vc),
    })
}
