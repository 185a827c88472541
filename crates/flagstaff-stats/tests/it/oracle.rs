//! Every number flagstaff-stats computes, against scipy's for the same inputs
//! (`sdk-clients/tools/stats_oracle.py`, run with the tools' virtual environment that
//! `sdk-clients/install` fills): to 1e-6 relative, as issue 21 asks, and tighter where the
//! method allows.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use flagstaff_stats::checks::{benjamini_hochberg, cuped, holm, sample_ratio};
use flagstaff_stats::special::{
    beta_inc, beta_quantile, chi_squared_sf, gamma_p, gamma_q, ln_gamma, normal_cdf,
    normal_quantile, student_t_quantile, student_t_sf,
};
use flagstaff_stats::{CovariateMoments, Moments, bayes, frequentist};
use serde_json::{Value, json};

use crate::{Draws as _, Rng};

const ALPHA: f64 = 0.05;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// scipy's answers, or `None` (with a warning) when the tools are not installed; on CI a
/// missing oracle fails the test instead.
fn scipy(cases: &Value) -> Option<Value> {
    let python = repository().join("sdk-clients/tools/.venv/bin/python");
    if !python.exists() {
        assert!(
            std::env::var_os("FLAGSTAFF_REQUIRE_SDKS").is_none(),
            "scipy is not installed: run sdk-clients/install"
        );
        eprintln!("skipping: scipy is not installed (sdk-clients/install)");
        return None;
    }
    let mut child = Command::new(python)
        .arg(repository().join("sdk-clients/tools/stats_oracle.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the oracle starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cases.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the oracle failed");
    Some(serde_json::from_slice(&output.stdout).expect("the oracle prints JSON"))
}

/// Asserts `ours` is within `relative` of scipy's `theirs` (absolutely near zero).
#[track_caller]
fn agree(what: &str, ours: f64, theirs: &Value, relative: f64) {
    let theirs = theirs
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: scipy gave {theirs}"));
    let tolerance = relative * theirs.abs().max(1e-12);
    assert!(
        (ours - theirs).abs() <= tolerance,
        "{what}: ours {ours:e}, scipy {theirs:e} (difference {:e})",
        (ours - theirs).abs()
    );
}

fn moments(n: f64, mean: f64, variance: f64) -> Moments {
    // Sum and sum of squares that give exactly this mean and sample variance.
    Moments {
        n,
        sum: n * mean,
        sum_squares: variance * (n - 1.0) + n * mean * mean,
    }
}

#[test]
fn every_number_matches_scipy() {
    let special = [
        (0.5, 0.5, 0.3),
        (2.0, 3.0, 0.4),
        (50.0, 70.0, 0.45),
        (1_000.5, 0.5, 0.999),
        (10_001.0, 90_001.0, 0.1),
        (0.5, 12.0, 0.02),
    ];
    let normal = [
        (-8.0, 1e-12),
        (-1.96, 0.025),
        (0.3, 0.5),
        (2.5, 0.9),
        (6.0, 0.999_999),
    ];
    let t = [
        (2.1, 5.0, 0.975),
        (-1.0, 30.5, 0.8),
        (0.7, 2_000.0, 0.995),
        (12.0, 3.0, 0.6),
    ];
    let chi = [(3.0, 1.0), (25.0, 2.0), (0.5, 4.0), (40.0, 3.0)];
    let beta_q = [
        (0.025, 101.0, 901.0),
        (0.975, 121.0, 881.0),
        (0.5, 2.0, 3.0),
    ];
    let welch_cases = [
        json!({"control": {"n": 1000.0, "mean": 10.0, "variance": 4.0}, "treatment": {"n": 1200.0, "mean": 10.3, "variance": 6.25}}),
        json!({"control": {"n": 20_000.0, "mean": 0.1, "variance": 0.09}, "treatment": {"n": 19_850.0, "mean": 0.12, "variance": 0.1056}}),
        json!({"control": {"n": 15.0, "mean": 3.2, "variance": 1.1}, "treatment": {"n": 9.0, "mean": 2.1, "variance": 3.4}}),
    ];
    let conversions = [
        ((100.0, 1000.0), (120.0, 1000.0)),
        ((2000.0, 20_000.0), (2010.0, 20_100.0)),
        ((3.0, 40.0), (9.0, 41.0)),
    ];
    let mean_cases = [
        json!({"control": {"n": 500.0, "mean": 42.0, "variance": 100.0}, "treatment": {"n": 480.0, "mean": 43.5, "variance": 110.0}}),
        json!({"control": {"n": 5000.0, "mean": 1.0, "variance": 2.0}, "treatment": {"n": 5000.0, "mean": 0.98, "variance": 2.1}}),
    ];
    let srm = [
        json!({"observed": [10_000.0, 10_150.0], "weights": [1.0, 1.0]}),
        json!({"observed": [10_000.0, 6_700.0], "weights": [50.0, 50.0]}),
        json!({"observed": [5_000.0, 2_600.0, 2_450.0], "weights": [50.0, 25.0, 25.0]}),
    ];
    let p_values = [0.01, 0.04, 0.03, 0.2, 0.001, 0.5];
    // CUPED data: y correlated with a pre-exposure x, the treatment shifted by 0.3.
    let mut rng = Rng::new(7);
    let mut arm = |shift: f64| {
        let (mut ys, mut xs) = (Vec::new(), Vec::new());
        for _ in 0..300 {
            let x = 5.0 + 2.0 * rng.normal();
            ys.push(shift + 0.8 * x + rng.normal());
            xs.push(x);
        }
        (ys, xs)
    };
    let (control_y, control_x) = arm(0.0);
    let (treatment_y, treatment_x) = arm(0.3);

    let cases = json!({
        "alpha": ALPHA,
        "special": special.iter().map(|(a, b, x)| json!({"a": a, "b": b, "x": x})).collect::<Vec<_>>(),
        "normal": normal, "t": t, "chiSquared": chi, "betaQuantile": beta_q,
        "welch": welch_cases, "means": mean_cases, "srm": srm, "pValues": p_values,
        "conversions": conversions.iter().map(|(c, t)| json!({"control": [c.0, c.1], "treatment": [t.0, t.1]})).collect::<Vec<_>>(),
        "cuped": {"control": {"y": control_y, "x": control_x}, "treatment": {"y": treatment_y, "x": treatment_x}},
    });
    let Some(scipy) = scipy(&cases) else { return };

    for (i, (a, b, x)) in special.iter().enumerate() {
        let theirs = &scipy["special"][i];
        agree(
            &format!("I_{x}({a}, {b})"),
            beta_inc(*a, *b, *x),
            &theirs["betaInc"],
            1e-10,
        );
        agree(
            &format!("P({a}, {x})"),
            gamma_p(*a, *x),
            &theirs["gammaP"],
            1e-10,
        );
        agree(
            &format!("Q({a}, {x})"),
            gamma_q(*a, *x),
            &theirs["gammaQ"],
            1e-10,
        );
        agree(
            &format!("ln Γ({a})"),
            ln_gamma(*a),
            &theirs["lnGamma"],
            1e-12,
        );
    }
    for (i, (z, p)) in normal.iter().enumerate() {
        agree(
            &format!("Φ({z})"),
            normal_cdf(*z),
            &scipy["normal"][i]["cdf"],
            1e-10,
        );
        agree(
            &format!("Φ⁻¹({p})"),
            normal_quantile(*p),
            &scipy["normal"][i]["quantile"],
            1e-10,
        );
    }
    for (i, (x, df, p)) in t.iter().enumerate() {
        agree(
            &format!("t sf({x}, {df})"),
            student_t_sf(*x, *df),
            &scipy["t"][i]["sf"],
            1e-10,
        );
        agree(
            &format!("t ppf({p}, {df})"),
            student_t_quantile(*p, *df),
            &scipy["t"][i]["quantile"],
            1e-9,
        );
    }
    for (i, (x, df)) in chi.iter().enumerate() {
        agree(
            &format!("χ² sf({x}, {df})"),
            chi_squared_sf(*x, *df),
            &scipy["chiSquared"][i],
            1e-10,
        );
    }
    for (i, (p, a, b)) in beta_q.iter().enumerate() {
        agree(
            &format!("Beta ppf({p}, {a}, {b})"),
            beta_quantile(*p, *a, *b),
            &scipy["betaQuantile"][i],
            1e-9,
        );
    }
    let read = |v: &Value| {
        moments(
            v["n"].as_f64().unwrap(),
            v["mean"].as_f64().unwrap(),
            v["variance"].as_f64().unwrap(),
        )
    };
    for (i, case) in welch_cases.iter().enumerate() {
        let ours =
            frequentist::welch(&read(&case["control"]), &read(&case["treatment"]), ALPHA).unwrap();
        let theirs = &scipy["welch"][i];
        agree("Welch t", ours.t, &theirs["t"], 1e-9);
        agree("Welch p", ours.p_value, &theirs["pValue"], 1e-8);
        agree("Welch df", ours.degrees_of_freedom, &theirs["df"], 1e-10);
        agree(
            "Welch interval low",
            ours.interval.low,
            &theirs["low"],
            1e-8,
        );
        agree(
            "Welch interval high",
            ours.interval.high,
            &theirs["high"],
            1e-8,
        );
        agree(
            "relative lift low",
            ours.relative_interval.low,
            &theirs["relativeLow"],
            1e-8,
        );
        agree(
            "relative lift high",
            ours.relative_interval.high,
            &theirs["relativeHigh"],
            1e-8,
        );
    }
    for (i, (c, t)) in conversions.iter().enumerate() {
        let ours = bayes::conversions(*c, *t, true, ALPHA);
        let theirs = &scipy["conversions"][i];
        agree(
            "P(treatment beats control)",
            ours.probability_to_beat_control,
            &theirs["probability"],
            1e-6,
        );
        agree("expected loss", ours.expected_loss, &theirs["loss"], 1e-6);
        agree(
            "credible low",
            ours.treatment_interval.0,
            &theirs["treatmentLow"],
            1e-9,
        );
        agree(
            "credible high",
            ours.treatment_interval.1,
            &theirs["treatmentHigh"],
            1e-9,
        );
    }
    for (i, case) in mean_cases.iter().enumerate() {
        let ours = bayes::means(
            &read(&case["control"]),
            &read(&case["treatment"]),
            true,
            ALPHA,
        )
        .unwrap();
        agree(
            "P(treatment beats control), Gaussian",
            ours.probability_to_beat_control,
            &scipy["means"][i]["probability"],
            1e-9,
        );
        agree(
            "expected loss, Gaussian",
            ours.expected_loss,
            &scipy["means"][i]["loss"],
            1e-7,
        );
    }
    for (i, case) in srm.iter().enumerate() {
        let observed: Vec<f64> = serde_json::from_value(case["observed"].clone()).unwrap();
        let weights: Vec<f64> = serde_json::from_value(case["weights"].clone()).unwrap();
        let ours = sample_ratio(&observed, &weights).unwrap();
        agree(
            "SRM χ²",
            ours.chi_squared,
            &scipy["srm"][i]["chiSquared"],
            1e-12,
        );
        agree("SRM p", ours.p_value, &scipy["srm"][i]["pValue"], 1e-9);
    }
    for (i, (h, bh)) in holm(&p_values)
        .iter()
        .zip(benjamini_hochberg(&p_values))
        .enumerate()
    {
        agree("Holm", *h, &scipy["holm"][i], 1e-12);
        agree(
            "Benjamini–Hochberg",
            bh,
            &scipy["benjaminiHochberg"][i],
            1e-12,
        );
    }
    let covariate = |ys: &[f64], xs: &[f64]| {
        let mut m = CovariateMoments::default();
        for (y, x) in ys.iter().zip(xs) {
            m.add(*y, *x);
        }
        m
    };
    let ours = cuped(
        &covariate(&control_y, &control_x),
        &covariate(&treatment_y, &treatment_x),
    )
    .unwrap();
    let theirs = &scipy["cuped"];
    agree("CUPED θ", ours.theta, &theirs["theta"], 1e-9);
    agree(
        "CUPED control mean",
        ours.control.mean(),
        &theirs["controlMean"],
        1e-9,
    );
    agree(
        "CUPED control variance",
        ours.control.variance(),
        &theirs["controlVariance"],
        1e-8,
    );
    agree(
        "CUPED treatment mean",
        ours.treatment.mean(),
        &theirs["treatmentMean"],
        1e-9,
    );
    agree(
        "CUPED treatment variance",
        ours.treatment.variance(),
        &theirs["treatmentVariance"],
        1e-8,
    );
    agree(
        "CUPED variance reduction",
        ours.variance_reduction,
        &theirs["reduction"],
        1e-8,
    );
}
