//! flagstaff-stats against an oracle (scipy, `oracle.rs`) and by simulation (`calibration.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod calibration;
mod oracle;

/// The tests' data come from the test kit's deterministic generator (SplitMix64), so that a
/// failure reproduces exactly; these are the continuous draws they need from it.
pub use flagstaff_testkit::generate::Rng;

pub trait Draws {
    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64;
    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64;
}

impl Draws for Rng {
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}
