//! Sufficient statistics: what is kept per variation and metric instead of one row per context,
//! so that results for a million exposed contexts are a few additions away.

/// Count, sum and sum of squares of one metric's per-context values.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Moments {
    /// How many contexts.
    pub n: f64,
    /// Σ y.
    pub sum: f64,
    /// Σ y².
    pub sum_squares: f64,
}

impl Moments {
    /// The moments of `values`.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Moments {
        let mut moments = Moments::default();
        for value in values {
            moments.add(value);
        }
        moments
    }

    /// Counts one more context's value.
    pub fn add(&mut self, value: f64) {
        self.n += 1.0;
        self.sum += value;
        self.sum_squares += value * value;
    }

    /// The moments of a conversion metric: `conversions` of `n` contexts converted (value 1,
    /// the others 0).
    pub fn conversions(conversions: f64, n: f64) -> Moments {
        Moments {
            n,
            sum: conversions,
            sum_squares: conversions,
        }
    }

    /// The mean.
    pub fn mean(&self) -> f64 {
        self.sum / self.n
    }

    /// The sample variance (n − 1 in the denominator), never negative.
    pub fn variance(&self) -> f64 {
        if self.n < 2.0 {
            return 0.0;
        }
        ((self.sum_squares - self.sum * self.sum / self.n) / (self.n - 1.0)).max(0.0)
    }
}

/// The moments of a metric `y` together with a covariate `x` (its value before exposure), for
/// CUPED.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CovariateMoments {
    /// The metric.
    pub y: Moments,
    /// The covariate.
    pub x: Moments,
    /// Σ x·y.
    pub sum_products: f64,
}

impl CovariateMoments {
    /// Counts one more context's metric and covariate.
    pub fn add(&mut self, y: f64, x: f64) {
        self.y.add(y);
        self.x.add(x);
        self.sum_products += x * y;
    }

    /// The sample covariance of x and y.
    pub fn covariance(&self) -> f64 {
        let n = self.y.n;
        if n < 2.0 {
            return 0.0;
        }
        (self.sum_products - self.x.sum * self.y.sum / n) / (n - 1.0)
    }

    /// Both variations' moments together.
    pub fn pooled(&self, other: &CovariateMoments) -> CovariateMoments {
        CovariateMoments {
            y: Moments {
                n: self.y.n + other.y.n,
                sum: self.y.sum + other.y.sum,
                sum_squares: self.y.sum_squares + other.y.sum_squares,
            },
            x: Moments {
                n: self.x.n + other.x.n,
                sum: self.x.sum + other.x.sum,
                sum_squares: self.x.sum_squares + other.x.sum_squares,
            },
            sum_products: self.sum_products + other.sum_products,
        }
    }
}
