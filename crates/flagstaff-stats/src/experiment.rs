//! An experiment's results from its sufficient statistics: per variation and metric, the mean
//! with its interval, the lift over the control (absolute and relative), the p-value (adjusted
//! across every treatment × metric), the anytime-valid interval, the probability to beat the
//! control and the expected loss; and, above everything, the sample-ratio mismatch check.
//! This is the shape of `GET …/experiments/{key}/results` (issue 21, point 4).

use crate::bayes;
use crate::checks::{self, SampleRatio};
use crate::frequentist::{self, Interval};
use crate::moments::{CovariateMoments, Moments};
use crate::special::student_t_quantile;

/// How a metric is measured per context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// 1 if the context converted after exposure, else 0: Beta–Binomial posteriors.
    Conversion,
    /// A number per context (a sum, a mean or a count of events): Gaussian posteriors.
    Numeric,
}

/// How p-values are adjusted for testing several treatments and metrics at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Correction {
    /// None: each test on its own.
    None,
    /// Holm: the family-wise error rate.
    Holm,
    /// Benjamini–Hochberg: the false discovery rate.
    BenjaminiHochberg,
}

/// One metric's data, one entry per variation (in the variations' order).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricData {
    /// The metric's key.
    pub key: String,
    /// Conversion or numeric.
    pub kind: MetricKind,
    /// Whether a higher value is better.
    pub higher_is_better: bool,
    /// Per variation: the metric's moments over the exposed contexts.
    pub moments: Vec<Moments>,
    /// Per variation: the metric with each context's value before exposure, when known (CUPED).
    pub covariates: Option<Vec<CovariateMoments>>,
}

/// What is asked.
#[derive(Clone, Debug, PartialEq)]
pub struct Experiment {
    /// Per variation: contexts exposed.
    pub exposures: Vec<f64>,
    /// Per variation: the configured traffic weight (any scale).
    pub weights: Vec<f64>,
    /// The control's position among the variations.
    pub control: usize,
    /// The metrics.
    pub metrics: Vec<MetricData>,
    /// 1 − confidence (0.05).
    pub alpha: f64,
    /// Where the confidence sequences are tightest (contexts in all).
    pub tuning_sample: f64,
    /// The adjustment across treatments and metrics.
    pub correction: Correction,
}

/// One metric in one variation.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricResult {
    /// The metric's key.
    pub key: String,
    /// Contexts counted.
    pub n: f64,
    /// The mean per context as observed (the conversion rate for conversions); CUPED adjusts
    /// only the comparison.
    pub mean: f64,
    /// Its 1 − α interval.
    pub interval: Interval,
    /// Against the control (absent for the control itself):
    pub comparison: Option<Comparison>,
}

/// A treatment's metric against the control's.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// Mean minus the control's.
    pub difference: f64,
    /// Its 1 − α interval (Welch).
    pub difference_interval: Interval,
    /// Relative to the control's mean.
    pub relative_lift: f64,
    /// Its 1 − α interval (delta method).
    pub relative_interval: Interval,
    /// Welch's two-sided p-value.
    pub p_value: f64,
    /// The p-value adjusted across every treatment × metric.
    pub adjusted_p_value: f64,
    /// The anytime-valid interval of the difference.
    pub sequential: Interval,
    /// Whether it excludes zero: a result that holds however often people looked.
    pub sequential_significant: bool,
    /// P(this variation is better than the control), in the metric's direction.
    pub probability_to_beat_control: f64,
    /// The expected loss of choosing it (in the metric's unit).
    pub expected_loss: f64,
    /// The share of variance CUPED removed, when it was used.
    pub variance_reduction: Option<f64>,
}

/// One variation's results.
#[derive(Clone, Debug, PartialEq)]
pub struct VariationResult {
    /// Contexts exposed.
    pub exposures: f64,
    /// Per metric, in the metrics' order.
    pub metrics: Vec<MetricResult>,
}

/// The experiment's results.
#[derive(Clone, Debug, PartialEq)]
pub struct Results {
    /// The sample-ratio check; `None` before there are exposures.
    pub sample_ratio: Option<SampleRatio>,
    /// Per variation, in the variations' order.
    pub variations: Vec<VariationResult>,
}

/// Computes the results. Metrics or variations without enough data yet (fewer than two
/// contexts, no variance) get no comparison.
pub fn results(experiment: &Experiment) -> Results {
    let control = experiment.control;
    let alpha = experiment.alpha;
    let mut variations: Vec<VariationResult> = experiment
        .exposures
        .iter()
        .map(|exposures| VariationResult {
            exposures: *exposures,
            metrics: Vec::new(),
        })
        .collect();
    // (variation, metric) of every comparison, with its p-value, for the correction.
    let mut tested: Vec<(usize, usize, f64)> = Vec::new();
    for (m, metric) in experiment.metrics.iter().enumerate() {
        // CUPED, per pair (control, treatment) when covariates are known: θ is pooled over
        // the pair, so the control's adjusted moments differ from pair to pair. CUPED therefore
        // adjusts only the comparisons; each variation's own mean and interval are as observed,
        // which is what people check against their own numbers.
        let plain = |v: usize| metric.moments.get(v).copied().unwrap_or_default();
        let pairs: Vec<Option<checks::Cuped>> = (0..variations.len())
            .map(|v| match &metric.covariates {
                Some(covariates) if v != control => {
                    checks::cuped(&covariates[control], &covariates[v])
                }
                _ => None,
            })
            .collect();
        for (v, variation) in variations.iter_mut().enumerate() {
            let moments = plain(v);
            let comparison = if v == control {
                None
            } else {
                let (control_moments, treatment_moments, reduction) = match &pairs[v] {
                    Some(c) => (c.control, c.treatment, Some(c.variance_reduction)),
                    None => (plain(control), plain(v), None),
                };
                compare(
                    experiment,
                    metric,
                    &control_moments,
                    &treatment_moments,
                    reduction,
                )
            };
            let interval = mean_interval(&moments, alpha);
            if let Some(c) = &comparison {
                tested.push((v, m, c.p_value));
            }
            variation.metrics.push(MetricResult {
                key: metric.key.clone(),
                n: moments.n,
                mean: if moments.n > 0.0 { moments.mean() } else { 0.0 },
                interval,
                comparison,
            });
        }
    }
    let p_values: Vec<f64> = tested.iter().map(|(_, _, p)| *p).collect();
    let adjusted = match experiment.correction {
        Correction::None => p_values.clone(),
        Correction::Holm => checks::holm(&p_values),
        Correction::BenjaminiHochberg => checks::benjamini_hochberg(&p_values),
    };
    for ((v, m, _), p) in tested.iter().zip(adjusted) {
        if let Some(c) = variations[*v].metrics[*m].comparison.as_mut() {
            c.adjusted_p_value = p;
        }
    }
    Results {
        sample_ratio: checks::sample_ratio(&experiment.exposures, &experiment.weights),
        variations,
    }
}

fn mean_interval(moments: &Moments, alpha: f64) -> Interval {
    if moments.n < 2.0 {
        return Interval {
            low: f64::NEG_INFINITY,
            high: f64::INFINITY,
        };
    }
    let half = student_t_quantile(1.0 - alpha / 2.0, moments.n - 1.0)
        * (moments.variance() / moments.n).sqrt();
    Interval {
        low: moments.mean() - half,
        high: moments.mean() + half,
    }
}

fn compare(
    experiment: &Experiment,
    metric: &MetricData,
    control: &Moments,
    treatment: &Moments,
    variance_reduction: Option<f64>,
) -> Option<Comparison> {
    let alpha = experiment.alpha;
    let welch = frequentist::welch(control, treatment, alpha)?;
    let sequential =
        frequentist::confidence_sequence(control, treatment, alpha, experiment.tuning_sample)?;
    // Conversions without CUPED have exact Beta posteriors; anything else Gaussian ones.
    let bayesian = if metric.kind == MetricKind::Conversion && variance_reduction.is_none() {
        bayes::conversions(
            (control.sum, control.n),
            (treatment.sum, treatment.n),
            metric.higher_is_better,
            alpha,
        )
    } else {
        bayes::means(control, treatment, metric.higher_is_better, alpha)?
    };
    Some(Comparison {
        difference: welch.difference,
        difference_interval: welch.interval,
        relative_lift: welch.relative_lift,
        relative_interval: welch.relative_interval,
        p_value: welch.p_value,
        adjusted_p_value: welch.p_value,
        sequential,
        sequential_significant: sequential.excludes_zero(),
        probability_to_beat_control: bayesian.probability_to_beat_control,
        expected_loss: bayesian.expected_loss,
        variance_reduction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversion(key: &str, rates: &[(f64, f64)]) -> MetricData {
        MetricData {
            key: key.into(),
            kind: MetricKind::Conversion,
            higher_is_better: true,
            moments: rates
                .iter()
                .map(|(c, n)| Moments::conversions(*c, *n))
                .collect(),
            covariates: None,
        }
    }

    fn experiment(exposures: Vec<f64>, metrics: Vec<MetricData>) -> Experiment {
        Experiment {
            weights: vec![1.0; exposures.len()],
            exposures,
            control: 0,
            metrics,
            alpha: 0.05,
            tuning_sample: frequentist::DEFAULT_TUNING_SAMPLE,
            correction: Correction::Holm,
        }
    }

    #[test]
    fn a_clear_winner_is_found_and_the_control_is_not_compared_with_itself() {
        let results = results(&experiment(
            vec![10_000.0, 10_000.0],
            vec![conversion(
                "purchase",
                &[(1_000.0, 10_000.0), (1_200.0, 10_000.0)],
            )],
        ));
        assert!(!results.sample_ratio.unwrap().detected);
        assert!(results.variations[0].metrics[0].comparison.is_none());
        let c = results.variations[1].metrics[0]
            .comparison
            .as_ref()
            .unwrap();
        assert!((c.relative_lift - 0.2).abs() < 1e-12);
        assert!(c.p_value < 1e-4 && c.sequential_significant);
        assert!(c.probability_to_beat_control > 0.999);
        assert!(c.relative_interval.low < 0.2 && 0.2 < c.relative_interval.high);
    }

    #[test]
    fn a_third_of_one_variations_exposures_missing_is_a_sample_ratio_mismatch() {
        let results = results(&experiment(
            vec![10_000.0, 6_667.0],
            vec![conversion(
                "purchase",
                &[(1_000.0, 10_000.0), (700.0, 6_667.0)],
            )],
        ));
        let srm = results.sample_ratio.unwrap();
        assert!(srm.detected && srm.p_value < 1e-100, "{srm:?}");
    }

    #[test]
    fn p_values_are_adjusted_across_treatments_and_metrics() {
        let results = results(&experiment(
            vec![1_000.0; 3],
            vec![
                conversion("a", &[(100.0, 1_000.0), (125.0, 1_000.0), (101.0, 1_000.0)]),
                conversion("b", &[(300.0, 1_000.0), (310.0, 1_000.0), (290.0, 1_000.0)]),
            ],
        ));
        let mut raw = Vec::new();
        let mut adjusted = Vec::new();
        for variation in &results.variations[1..] {
            for metric in &variation.metrics {
                let c = metric.comparison.as_ref().unwrap();
                raw.push(c.p_value);
                adjusted.push(c.adjusted_p_value);
            }
        }
        assert_eq!(adjusted, checks::holm(&raw));
        assert!(adjusted.iter().zip(&raw).all(|(a, r)| a >= r));
    }

    #[test]
    fn cuped_narrows_a_numeric_metrics_interval_and_says_by_how_much() {
        // y = x + noise + 0.1 in the treatment: x explains most of y's variance.
        let mut state = 1u64;
        let mut noise = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        let mut arms = [CovariateMoments::default(), CovariateMoments::default()];
        for (v, arm) in arms.iter_mut().enumerate() {
            for i in 0..2_000 {
                let x = (i % 100) as f64 / 10.0;
                arm.add(x + 0.5 * noise() + 0.1 * v as f64, x);
            }
        }
        let metric = |covariates| MetricData {
            key: "revenue".into(),
            kind: MetricKind::Numeric,
            higher_is_better: true,
            moments: arms.iter().map(|a| a.y).collect(),
            covariates,
        };
        let width = |r: &Results| {
            let c = r.variations[1].metrics[0].comparison.as_ref().unwrap();
            (
                c.difference_interval.high - c.difference_interval.low,
                c.variance_reduction,
            )
        };
        let (plain, none) = width(&results(&experiment(vec![2_000.0; 2], vec![metric(None)])));
        let (narrow, reduction) = width(&results(&experiment(
            vec![2_000.0; 2],
            vec![metric(Some(arms.to_vec()))],
        )));
        assert_eq!(none, None);
        let reduction = reduction.unwrap();
        assert!(
            reduction > 0.9,
            "x explains most of the variance: {reduction}"
        );
        assert!(narrow < plain * 0.35, "{narrow} against {plain}");
    }

    #[test]
    fn nothing_to_compare_yet_gives_no_comparison() {
        let results = results(&experiment(
            vec![1.0, 0.0],
            vec![conversion("purchase", &[(0.0, 1.0), (0.0, 0.0)])],
        ));
        assert!(results.variations[1].metrics[0].comparison.is_none());
        assert_eq!(results.sample_ratio.map(|s| s.detected), Some(false));
    }
}
