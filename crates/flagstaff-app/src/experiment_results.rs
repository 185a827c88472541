//! An iteration's results (issue 21, point 4): the events database's sufficient statistics
//! (`experiment_moments`, kept incrementally by the events writer) turned into numbers a
//! product manager can act on by `flagstaff-stats`, plus a verdict in plain words.
//!
//! Reading them costs a few rows per variation and metric, whatever the number of contexts.

use flagstaff_stats::experiment::{self, Correction, MetricData};
use flagstaff_stats::frequentist::{DEFAULT_TUNING_SAMPLE, Interval};
use flagstaff_stats::{CovariateMoments, Moments};
use flagstaff_store::events::{IterationTotals, Transform};
use serde::Serialize;

use crate::error::ErrorCode;
use crate::experiments::{Experiment, Iteration, higher_is_better, transform_of};
use crate::metrics::{Metric, MetricKind};
use crate::model::{FlagDefinition, kinds};
use crate::{Actor, App, AppError, EnvRef, Result, Versioned};

/// 1 − confidence of every interval.
pub const ALPHA: f64 = 0.05;

/// The results of one iteration.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentResults {
    /// The experiment's key.
    pub experiment: String,
    /// Which iteration.
    pub iteration: IterationSummary,
    /// The sample-ratio check; `null` before there are exposures. When `detected`, every
    /// other number is suspect.
    pub srm: Option<SampleRatio>,
    /// The deciding metric.
    pub primary_metric: String,
    /// 1 − confidence of the intervals.
    pub alpha: f64,
    /// How p-values are adjusted across treatments × metrics (`adjustedPValue`).
    pub correction: &'static str,
    /// Per variation, the control first.
    pub variations: Vec<VariationResults>,
    /// What the primary metric says, in plain words.
    pub verdict: String,
}

/// Which iteration.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IterationSummary {
    /// Its id.
    pub id: String,
    /// Its number.
    pub number: u32,
    /// When it started (Unix ms).
    pub started_at: i64,
    /// When it closed, if it did.
    pub stopped_at: Option<i64>,
    /// The variation shipped when it closed, if one was.
    pub shipped_variation: Option<u32>,
}

/// The sample-ratio mismatch check (χ² against the configured weights).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SampleRatio {
    /// Pearson's χ².
    pub chi_squared: f64,
    /// Its p-value.
    pub p_value: f64,
    /// `pValue < 0.001`.
    pub detected: bool,
}

/// One variation.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VariationResults {
    /// The variation's index in the flag.
    pub variation: u32,
    /// Its name (or its value as JSON).
    pub name: String,
    /// Whether it is the control.
    pub control: bool,
    /// Its configured traffic share (percent).
    pub weight: f64,
    /// Contexts exposed.
    pub exposures: u64,
    /// Per metric of the experiment.
    pub metrics: Vec<MetricResults>,
}

/// A two-sided interval; a bound is `null` when there is not enough data for it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Bounds(pub Option<f64>, pub Option<f64>);

impl From<Interval> for Bounds {
    fn from(i: Interval) -> Bounds {
        Bounds(
            Some(i.low).filter(|v| v.is_finite()),
            Some(i.high).filter(|v| v.is_finite()),
        )
    }
}

/// The anytime-valid interval.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sequential {
    /// The confidence sequence of the difference at this moment.
    pub ci: Bounds,
    /// Whether it excludes zero: significant however often anyone looked.
    pub excludes_zero: bool,
}

/// One metric in one variation.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricResults {
    /// The metric's key.
    pub metric: String,
    /// Contexts counted (exposed ones; for a mean, those with an event).
    pub n: f64,
    /// The mean per context (the conversion rate for a conversion metric).
    pub mean: f64,
    /// Its 1 − α interval.
    pub ci: Bounds,
    /// Against the control (absent on the control and without enough data):
    /// mean minus the control's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub difference: Option<f64>,
    /// Its 1 − α interval (Welch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub difference_ci: Option<Bounds>,
    /// Relative to the control's mean.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relative_lift: Option<f64>,
    /// Its 1 − α interval (delta method).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relative_lift_ci: Option<Bounds>,
    /// Welch's two-sided p-value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Adjusted across treatments × metrics (Holm).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjusted_p_value: Option<f64>,
    /// P(better than the control), in the metric's direction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability_to_beat_control: Option<f64>,
    /// The expected loss of choosing it, in the metric's unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_loss: Option<f64>,
    /// The anytime-valid interval of the difference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequential: Option<Sequential>,
    /// The share of variance CUPED removed, when a pre-exposure covariate was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variance_reduction: Option<f64>,
}

impl App {
    /// The results of an iteration (the last one by default).
    pub async fn experiment_results(
        &self,
        actor: &Actor,
        env: EnvRef<'_>,
        key: &str,
        iteration: Option<u32>,
    ) -> Result<ExperimentResults> {
        let experiment = self.experiment(actor, env, key).await?.value;
        let iteration = match iteration {
            Some(n) => experiment.iterations.iter().find(|i| i.number == n),
            None => experiment.iterations.last(),
        }
        .ok_or_else(|| match iteration {
            Some(n) => AppError::NotFound(format!("iteration {n} of experiment {key:?}")),
            None => AppError::invalid(
                ErrorCode::InvalidState,
                "",
                "the experiment has not started: there are no results yet",
            ),
        })?
        .clone();
        let totals = self.event_store()?.iteration_totals(&iteration.id).await?;
        let mut metrics = Vec::new();
        for metric_key in &iteration.metrics {
            // A metric deleted since keeps its place with no data rather than failing the page.
            if let Some(doc) = self
                .store
                .get_live(kinds::METRIC, env.project, metric_key)
                .await?
            {
                metrics.push(crate::decode::<Metric>(&doc)?);
            }
        }
        let flag: Option<Versioned<FlagDefinition>> = self
            .load(kinds::FLAG, env.project, &experiment.flag, String::new)
            .await
            .ok();
        Ok(compute(
            &experiment,
            &iteration,
            &metrics,
            &totals,
            flag.as_ref(),
        ))
    }
}

fn variation_name(flag: Option<&Versioned<FlagDefinition>>, v: u32) -> String {
    flag.and_then(|f| f.value.variations.get(v as usize))
        .map(|variation| {
            variation
                .name
                .clone()
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| variation.value.to_string())
        })
        .unwrap_or_else(|| format!("variation {v}"))
}

/// The results from the totals (pure, for tests).
pub(crate) fn compute(
    experiment: &Experiment,
    iteration: &Iteration,
    metrics: &[Metric],
    totals: &IterationTotals,
    flag: Option<&Versioned<FlagDefinition>>,
) -> ExperimentResults {
    let arms: Vec<u32> = iteration
        .arms
        .iter()
        .map(|a| u32::try_from(a.variation).unwrap_or(0))
        .collect();
    let exposures: Vec<f64> = arms
        .iter()
        .map(|v| totals.exposures.get(v).copied().unwrap_or(0) as f64)
        .collect();
    let weights: Vec<f64> = iteration.arms.iter().map(|a| a.weight as f64).collect();
    let data: Vec<MetricData> = metrics
        .iter()
        .map(|metric| metric_data(metric, &arms, &exposures, totals))
        .collect();
    let results = experiment::results(&experiment::Experiment {
        exposures: exposures.clone(),
        weights: weights.clone(),
        control: 0,
        metrics: data,
        alpha: ALPHA,
        tuning_sample: DEFAULT_TUNING_SAMPLE,
        correction: Correction::Holm,
    });
    let weight_total: f64 = weights.iter().sum::<f64>().max(1.0);
    let variations: Vec<VariationResults> = arms
        .iter()
        .zip(&results.variations)
        .enumerate()
        .map(|(i, (v, result))| VariationResults {
            variation: *v,
            name: variation_name(flag, *v),
            control: i == 0,
            weight: 100.0 * weights[i] / weight_total,
            exposures: exposures[i] as u64,
            metrics: result
                .metrics
                .iter()
                .map(|m| {
                    let c = m.comparison.as_ref();
                    MetricResults {
                        metric: m.key.clone(),
                        n: m.n,
                        mean: m.mean,
                        ci: m.interval.into(),
                        difference: c.map(|c| c.difference),
                        difference_ci: c.map(|c| c.difference_interval.into()),
                        relative_lift: c.map(|c| c.relative_lift).filter(|v| v.is_finite()),
                        relative_lift_ci: c.map(|c| c.relative_interval.into()),
                        p_value: c.map(|c| c.p_value),
                        adjusted_p_value: c.map(|c| c.adjusted_p_value),
                        probability_to_beat_control: c.map(|c| c.probability_to_beat_control),
                        expected_loss: c.map(|c| c.expected_loss),
                        sequential: c.map(|c| Sequential {
                            ci: c.sequential.into(),
                            excludes_zero: c.sequential_significant,
                        }),
                        variance_reduction: c.and_then(|c| c.variance_reduction),
                    }
                })
                .collect(),
        })
        .collect();
    let srm = results.sample_ratio.map(|s| SampleRatio {
        chi_squared: s.chi_squared,
        p_value: s.p_value,
        detected: s.detected,
    });
    let primary = metrics.iter().find(|m| m.key == experiment.primary_metric);
    let verdict = verdict(&variations, srm.as_ref(), primary);
    ExperimentResults {
        experiment: experiment.key.clone(),
        iteration: IterationSummary {
            id: iteration.id.clone(),
            number: iteration.number,
            started_at: iteration.started_at,
            stopped_at: iteration.stopped_at,
            shipped_variation: iteration.shipped_variation,
        },
        srm,
        primary_metric: experiment.primary_metric.clone(),
        alpha: ALPHA,
        correction: "holm",
        variations,
        verdict,
    }
}

/// One metric's moments per arm, with CUPED covariates when any context has a pre-exposure
/// value.
pub(crate) fn metric_data(
    metric: &Metric,
    arms: &[u32],
    exposures: &[f64],
    totals: &IterationTotals,
) -> MetricData {
    let transform = transform_of(metric);
    let per_arm: Vec<(Moments, CovariateMoments)> = arms
        .iter()
        .zip(exposures)
        .map(|(v, exposed)| {
            let m = totals
                .moments
                .get(&(*v, metric.event_key.clone(), transform))
                .copied()
                .unwrap_or_default();
            // Every exposed context counts (with 0 when it sent nothing), except for a mean,
            // which only contexts with an event have.
            let n = if transform == Transform::Mean {
                m.n as f64
            } else {
                *exposed
            };
            let y = Moments {
                n,
                sum: m.sum_y,
                sum_squares: m.sum_y2,
            };
            let x = Moments {
                n,
                sum: m.sum_x,
                sum_squares: m.sum_x2,
            };
            (
                y,
                CovariateMoments {
                    y,
                    x,
                    sum_products: m.sum_xy,
                },
            )
        })
        .collect();
    let has_covariate = transform != Transform::Mean && per_arm.iter().any(|(_, c)| c.x.sum != 0.0);
    MetricData {
        key: metric.key.clone(),
        kind: if metric.kind == MetricKind::Conversion {
            experiment::MetricKind::Conversion
        } else {
            experiment::MetricKind::Numeric
        },
        higher_is_better: higher_is_better(metric),
        moments: per_arm.iter().map(|(y, _)| *y).collect(),
        covariates: has_covariate.then(|| per_arm.iter().map(|(_, c)| *c).collect()),
    }
}

fn percent(p: f64) -> String {
    let p = 100.0 * p;
    if p > 99.9 {
        ">99.9 %".into()
    } else if p < 0.1 {
        "<0.1 %".into()
    } else {
        format!("{p:.1} %")
    }
}

/// The primary metric's story in one or two sentences.
fn verdict(
    variations: &[VariationResults],
    srm: Option<&SampleRatio>,
    primary: Option<&Metric>,
) -> String {
    if let Some(srm) = srm.filter(|s| s.detected) {
        return format!(
            "Sample ratio mismatch: the exposures do not match the configured split (p = {:.2e}). \
             Something (targeting changed mid-run, bots, a redirect, lost events) skews who is \
             counted; do not trust these results until the cause is found.",
            srm.p_value
        );
    }
    let Some(primary) = primary else {
        return "The primary metric no longer exists.".into();
    };
    let Some(control) = variations.first() else {
        return "No variations.".into();
    };
    if variations.iter().map(|v| v.exposures).sum::<u64>() == 0 {
        return "No exposures yet: SDKs have not reported evaluations in this experiment.".into();
    }
    let index = |v: &VariationResults| v.metrics.iter().position(|m| m.metric == primary.key);
    // The treatment most likely to beat the control on the primary metric.
    let best = variations[1..]
        .iter()
        .filter_map(|v| {
            let m = &v.metrics[index(v)?];
            Some((v, m, m.probability_to_beat_control?))
        })
        .max_by(|a, b| a.2.total_cmp(&b.2));
    let Some((treatment, m, probability)) = best else {
        return format!(
            "Not enough data yet on {}: every variation needs at least two exposed contexts \
             with some variation in {}.",
            primary.name, primary.name
        );
    };
    let sequential = m.sequential.filter(|s| s.excludes_zero);
    let better = probability >= 0.5;
    match sequential {
        Some(_) if better => format!(
            "{} beats {} on {} with {} probability, and the anytime-valid interval excludes no \
             effect: the result holds however often the results were looked at.",
            treatment.name,
            control.name,
            primary.name,
            percent(probability)
        ),
        Some(_) => format!(
            "{} is worse than {} on {} ({} probability to beat it), and the anytime-valid \
             interval excludes no effect.",
            treatment.name,
            control.name,
            primary.name,
            percent(probability)
        ),
        None => {
            let more = more_contexts_needed(treatment, m);
            let until = match more {
                Some(n) => format!(" until about {n} more contexts per variation are exposed"),
                None => String::new(),
            };
            format!(
                "{} is {} than {} on {} with {} probability, but the anytime-valid interval \
                 still includes no difference: keep collecting{until}.",
                treatment.name,
                if better { "better" } else { "worse" },
                control.name,
                primary.name,
                percent(if better {
                    probability
                } else {
                    1.0 - probability
                })
            )
        }
    }
}

/// About how many more contexts the treatment's arm needs for the anytime-valid interval to
/// exclude zero if the observed difference is real: intervals narrow as 1/√n, so the width
/// must shrink by (half-width / |difference|)². An estimate for planning, not a promise.
fn more_contexts_needed(treatment: &VariationResults, m: &MetricResults) -> Option<u64> {
    let difference = m.difference?.abs();
    let Sequential {
        ci: Bounds(Some(low), Some(high)),
        ..
    } = m.sequential?
    else {
        return None;
    };
    let half = (high - low) / 2.0;
    if difference <= 0.0 || !half.is_finite() {
        return None;
    }
    let factor = (half / difference).powi(2);
    let now = treatment.exposures as f64;
    let needed = now * factor - now;
    (needed.is_finite() && needed > 0.0 && needed < 1e12).then(|| needed.ceil() as u64)
}
