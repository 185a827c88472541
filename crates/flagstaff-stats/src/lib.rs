//! Statistics for experiments and guarded rollouts (issue 21): pure functions of sufficient
//! statistics (counts, sums, sums of squares per variation), no I/O, no clock, no randomness.
//!
//! - [`frequentist`]: Welch's t-test with Welch–Satterthwaite degrees of freedom, absolute and
//!   relative (delta-method) intervals, and anytime-valid confidence sequences for results
//!   looked at every day.
//! - [`bayes`]: probability to beat control, expected loss and credible intervals
//!   (Beta–Binomial for conversions, Gaussian for numeric metrics).
//! - [`checks`]: the sample-ratio mismatch check, Holm and Benjamini–Hochberg corrections, and
//!   CUPED variance reduction.
//! - [`experiment`]: all of it together, an experiment's results per variation and metric.
//! - [`special`]: the special functions underneath, written here so that their accuracy is
//!   ours to state.
//!
//! Every number is checked against scipy (`tests/it/oracle.rs`) and the methods' error rates by
//! simulation (`tests/it/calibration.rs`).
#![forbid(unsafe_code)]

pub mod bayes;
pub mod checks;
pub mod experiment;
pub mod frequentist;
pub mod moments;
pub mod special;

pub use frequentist::Interval;
pub use moments::{CovariateMoments, Moments};
