"""The oracle of crates/flagstaff-stats: scipy's answers to the same questions.

Reads one JSON object on stdin (the cases the Rust test built) and prints one JSON object
with scipy's numbers for each, computed independently of the Rust formulas wherever scipy has
the method (t-test, chi-square test, distributions, false discovery control); the Bayesian
integrals by scipy.integrate over the two posteriors, Holm's correction by its definition, and
CUPED on the raw values.
"""

import json
import math
import sys

import numpy as np
from scipy import integrate, special, stats


def welch(case, alpha):
    c, t = case["control"], case["treatment"]
    result = stats.ttest_ind_from_stats(
        t["mean"], math.sqrt(t["variance"]), t["n"],
        c["mean"], math.sqrt(c["variance"]), c["n"], equal_var=False)
    vc, vt = c["variance"] / c["n"], t["variance"] / t["n"]
    df = (vc + vt) ** 2 / (vc ** 2 / (c["n"] - 1) + vt ** 2 / (t["n"] - 1))
    se = math.sqrt(vc + vt)
    q = stats.t.ppf(1 - alpha / 2, df)
    diff = t["mean"] - c["mean"]
    rel = diff / c["mean"]
    rel_se = math.sqrt(vt / c["mean"] ** 2 + t["mean"] ** 2 * vc / c["mean"] ** 4)
    z = stats.norm.ppf(1 - alpha / 2)
    return {"t": float(result.statistic), "pValue": float(result.pvalue), "df": df,
            "low": diff - q * se, "high": diff + q * se,
            "relativeLow": rel - z * rel_se, "relativeHigh": rel + z * rel_se}


def conversions(case, alpha):
    (sc, nc), (st, nt) = case["control"], case["treatment"]
    ac, bc, at, bt = 1 + sc, 1 + nc - sc, 1 + st, 1 + nt - st
    sd = math.sqrt(ac * bc / ((ac + bc) ** 2 * (ac + bc + 1)))
    centre = ac / (ac + bc)
    low, high = max(0.0, centre - 12 * sd), min(1.0, centre + 12 * sd)
    opts = {"epsabs": 1e-14, "epsrel": 1e-12, "limit": 500}
    beats = integrate.quad(lambda x: stats.beta.pdf(x, ac, bc) * stats.beta.sf(x, at, bt), low, high, **opts)[0]
    # E[max(0, C − T)] as a double integral over both posteriors.
    sd_t = math.sqrt(at * bt / ((at + bt) ** 2 * (at + bt + 1)))
    t_low = max(0.0, at / (at + bt) - 12 * sd_t)
    def inner(cv):
        upper = min(cv, 1.0)
        if upper <= t_low:
            return 0.0
        return integrate.quad(lambda tv: (cv - tv) * stats.beta.pdf(tv, at, bt), t_low, upper, **opts)[0]
    loss = integrate.quad(lambda cv: stats.beta.pdf(cv, ac, bc) * inner(cv), low, high, **opts)[0]
    return {"probability": beats, "loss": loss,
            "treatmentLow": stats.beta.ppf(alpha / 2, at, bt),
            "treatmentHigh": stats.beta.ppf(1 - alpha / 2, at, bt)}


def means(case, alpha):
    c, t = case["control"], case["treatment"]
    sd = math.sqrt(c["variance"] / c["n"] + t["variance"] / t["n"])
    d = t["mean"] - c["mean"]
    # E[max(0, −D)] for D ~ N(d, sd²), by integration.
    loss = integrate.quad(lambda x: -x * stats.norm.pdf(x, d, sd), d - 40 * sd, 0.0,
                          epsabs=1e-15, epsrel=1e-12, limit=500)[0] if d - 40 * sd < 0 else 0.0
    return {"probability": float(stats.norm.sf(0.0, d, sd)), "loss": loss}


def holm(ps):
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


def cuped(case):
    yc, xc = np.array(case["control"]["y"]), np.array(case["control"]["x"])
    yt, xt = np.array(case["treatment"]["y"]), np.array(case["treatment"]["x"])
    y, x = np.concatenate([yc, yt]), np.concatenate([xc, xt])
    theta = np.cov(x, y, ddof=1)[0, 1] / np.var(x, ddof=1)
    adjust = lambda ys, xs: ys - theta * (xs - x.mean())
    ac, at = adjust(yc, xc), adjust(yt, xt)
    return {"theta": float(theta),
            "controlMean": float(ac.mean()), "controlVariance": float(np.var(ac, ddof=1)),
            "treatmentMean": float(at.mean()), "treatmentVariance": float(np.var(at, ddof=1)),
            "reduction": float(1 - np.var(np.concatenate([ac, at]), ddof=1) / np.var(y, ddof=1))}


def main():
    cases = json.load(sys.stdin)
    alpha = cases["alpha"]
    out = {
        "special": [{
            "betaInc": float(special.betainc(s["a"], s["b"], s["x"])),
            "gammaP": float(special.gammainc(s["a"], s["x"])),
            "gammaQ": float(special.gammaincc(s["a"], s["x"])),
            "lnGamma": float(special.gammaln(s["a"])),
        } for s in cases["special"]],
        "normal": [{"cdf": float(stats.norm.cdf(z)), "quantile": float(stats.norm.ppf(p))}
                   for z, p in cases["normal"]],
        "t": [{"sf": float(stats.t.sf(x, df)), "quantile": float(stats.t.ppf(p, df))}
              for x, df, p in cases["t"]],
        "chiSquared": [float(stats.chi2.sf(x, df)) for x, df in cases["chiSquared"]],
        "betaQuantile": [float(stats.beta.ppf(p, a, b)) for p, a, b in cases["betaQuantile"]],
        "welch": [welch(c, alpha) for c in cases["welch"]],
        "conversions": [conversions(c, alpha) for c in cases["conversions"]],
        "means": [means(c, alpha) for c in cases["means"]],
        "srm": [dict(zip(["chiSquared", "pValue"], map(float, stats.chisquare(
            c["observed"], f_exp=np.array(c["weights"]) / sum(c["weights"]) * sum(c["observed"])))))
            for c in cases["srm"]],
        "holm": holm(cases["pValues"]),
        "benjaminiHochberg": [float(p) for p in stats.false_discovery_control(cases["pValues"], method="bh")],
        "cuped": cuped(cases["cuped"]),
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
