#!/usr/bin/env python3
"""Reference values for the always-valid A/B statistics in src/stats/sequential.rs.

Writes tests/fixtures/stats/msprt_cases.json, checked by tests/sequential.rs to 1e-9 relative.
Run by hand (never by CI) in a venv with `pip install msprt` (0.1.2; it brings numpy and scipy):

    python3 -m venv /work/venvs/msprt && /work/venvs/msprt/bin/pip install msprt
    /work/venvs/msprt/bin/python scripts/msprt_reference.py

Each case is a trajectory of cumulative counts (correct_a, n_a, correct_b, n_b), one per look,
from fixed seeded 0/1 sequences; for each look the file holds Δ̂ = p̂b − p̂a, its standard error,
Λ, the always-valid p-value and the confidence sequence, computed here independently of the
Rust code:

* Equal arm sizes (na = nb at every look): Λ comes from the PyPI package `msprt` 0.1.2,
  `MSPRT._calculate_sequential_probability_ratio_for_bernoulli_distribution`, reached through
  `msprt.calculate_test_statistics(..., distribution="bernoulli")`. For paired 0/1 observations
  x (arm B) and y (arm A) it computes, at index i, the paper's
  Λ_i = √(V/(V+iτ²))·exp(i²τ²(mean(x−y)[:i] − θ)² / (2V(V+iτ²))), V = x̄(1−x̄) + ȳ(1−ȳ), over the
  first i pairs. Its `tau` argument is τ (it squares it) and θ is the null difference. Quirks we
  work around: index i uses only the first i pairs, so one dummy pair is appended and
  warmup_observations = n − 1 (indices up to the warmup are zeroed); its `__call__` derives τ from
  a normal `sigma` that Bernoulli data lack (the default sigma = 0 divides by zero), so we call
  `calculate_test_statistics` with our τ; V = 0 gives NaN there, so degenerate looks never go to it.
  The closed-form confidence half-width is checked against it too: Λ at θ = Δ̂ ± h must be 1/α.
* Unequal arm sizes: `msprt` needs paired observations, so Λ is taken from the closed form in the
  standard error σ² = p̂a(1−p̂a)/na + p̂b(1−p̂b)/nb, Λ = √(σ²/(σ²+τ²))·exp(τ²Δ̂²/(2σ²(σ²+τ²))),
  which this script asserts equals the mixture likelihood ratio by its definition,
  ∫ N(Δ̂; θ, σ²)/N(Δ̂; 0, σ²) dN(θ; 0, τ²), integrated numerically with scipy.integrate.quad
  (to 1e-10 relative), and equals msprt's value wherever the arms are equal.

Conventions that are definitions rather than computations, mirrored from the paper and the
module docs: p_0 = 1 and p_n = min(p_{n−1}, 1/Λ_n); the confidence sequence is the running
intersection of Δ̂ ± h with [−1, 1]; an arm without data or σ² = 0 is "no evidence" (Λ = 1, p and
the interval unchanged); an empty intersection falls back to the current look's interval; an arm
with fewer than 5 right or 5 wrong answers enters σ² as q(1−q), q = min(U_k/n, ½), with U_k the
one-sided 95 % Poisson upper bound for its k rarer answers (scipy chi2.ppf(0.95, 2k+2)/2), in place
of its plug-in variance. msprt is consulted only where both arms have at least 5 of each answer,
so it checks the paper's plug-in formula, never this small-arm bound.
"""

import json
import math
from pathlib import Path

import numpy as np
from msprt import msprt
from scipy import integrate
from scipy.stats import chi2

TAU2 = 0.0025
ALPHA = 0.05
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "stats" / "msprt_cases.json"


def msprt_lambda(x_b, y_a, n, theta=0.0):
    """Λ after the first n pairs from the msprt package (x: arm B, y: arm A)."""
    x = np.append(np.asarray(x_b[:n], dtype=float), 0.0)
    y = np.append(np.asarray(y_a[:n], dtype=float), 0.0)
    result = msprt.calculate_test_statistics(
        x=x,
        y=y,
        sigma=0.0,
        tau=math.sqrt(TAU2),
        theta=float(theta),
        distribution="bernoulli",
        alpha=ALPHA,
        warmup_observations=n - 1,
    )
    return float(result.sequential_probability_ratio[n])


def arm_variance(correct, n):
    rarer = min(correct, n - correct)
    if rarer < 5:
        q = min(chi2.ppf(0.95, 2 * rarer + 2) / 2 / n, 0.5)
        return q * (1 - q)
    p = correct / n
    return p * (1 - p)


def closed_form_lambda(delta, var):
    return math.sqrt(var / (var + TAU2)) * math.exp(TAU2 * delta**2 / (2.0 * var * (var + TAU2)))


def quadrature_lambda(delta, var):
    """The mixture likelihood ratio by its definition, integrated numerically."""
    # Under the mixing prior the integrand peaks at θ* = Δ̂τ²/(σ²+τ²) with spread √(σ²τ²/(σ²+τ²)).
    center = delta * TAU2 / (var + TAU2)
    spread = math.sqrt(var * TAU2 / (var + TAU2))
    log_scale = (delta**2 - (delta - center) ** 2) / (2 * var) - center**2 / (2 * TAU2)

    def integrand(theta):
        log_ratio = (delta**2 - (delta - theta) ** 2) / (2 * var)
        log_prior = -(theta**2) / (2 * TAU2) - 0.5 * math.log(2 * math.pi * TAU2)
        return math.exp(log_ratio + log_prior - log_scale)

    value, _ = integrate.quad(integrand, center - 40 * spread, center + 40 * spread, epsabs=0, epsrel=1e-13, limit=200)
    return value * math.exp(log_scale)


def half_width(var):
    total = var + TAU2
    return math.sqrt(2 * var * total / TAU2 * math.log(math.sqrt(total / var) / ALPHA))


def run_case(name, description, looks, pairs=None):
    """looks: cumulative (correct_a, n_a, correct_b, n_b); pairs: (x_b, y_a) 0/1 arrays when the
    arms are paired (equal sizes), so that msprt can compute Λ."""
    p_value = 1.0
    interval = [-1.0, 1.0]
    rows = []
    for ca, na, cb, nb in looks:
        row = {"correct_a": ca, "n_a": na, "correct_b": cb, "n_b": nb}
        lam = 1.0
        if na == 0 or nb == 0:
            row.update(delta=None, std_error=None, evidence="no_data")
        elif ca in (0, na) and cb in (0, nb) and ca / na == cb / nb:
            row.update(delta=0.0, std_error=None, evidence="no_variation")
        else:
            pa, pb = ca / na, cb / nb
            delta = pb - pa
            var = arm_variance(ca, na) / na + arm_variance(cb, nb) / nb
            row.update(delta=delta, std_error=math.sqrt(var), evidence="measured")
            if True:
                closed = closed_form_lambda(delta, var)
                quad = quadrature_lambda(delta, var)
                assert abs(quad - closed) <= 1e-10 * closed, (name, na, nb, quad, closed)
                h = half_width(var)
                mixed = min(ca, na - ca) >= 5 and min(cb, nb - cb) >= 5
                if pairs is not None and mixed:
                    assert na == nb
                    x_b, y_a = pairs
                    assert int(np.sum(x_b[:nb])) == cb and int(np.sum(y_a[:na])) == ca
                    lam = msprt_lambda(x_b, y_a, na)
                    row["lambda_from"] = "msprt 0.1.2"
                    assert abs(lam - closed) <= 1e-11 * closed, (name, na, lam, closed)
                    for theta in (delta - h, delta + h):
                        edge = msprt_lambda(x_b, y_a, na, theta)
                        assert abs(edge * ALPHA - 1) < 1e-9, (name, na, theta, edge)
                else:
                    lam = closed
                    row["lambda_from"] = "closed form, equal to scipy quad of the mixture"
                p_value = min(p_value, 1.0 / lam)
                lo, hi = max(interval[0], delta - h), min(interval[1], delta + h)
                interval = [lo, hi] if lo <= hi else [max(delta - h, -1.0), min(delta + h, 1.0)]
        row.update(**{"lambda": lam, "p_value": p_value, "confidence_sequence": list(interval)})
        rows.append(row)
    return {"name": name, "description": description, "tau2": TAU2, "alpha": ALPHA, "looks": rows}


def paired_case(name, description, acc_a, acc_b, n, every, seed):
    rng = np.random.RandomState(seed)
    y_a = (rng.random_sample(n) < acc_a).astype(int)
    x_b = (rng.random_sample(n) < acc_b).astype(int)
    looks = [(int(y_a[:k].sum()), k, int(x_b[:k].sum()), k) for k in range(every, n + 1, every)]
    return run_case(name, description, looks, pairs=(x_b, y_a))


def split_case(name, description, acc_a, acc_b, weights, every, seed):
    """Requests one at a time; request i goes to B with probability weights[i]."""
    rng = np.random.RandomState(seed)
    counts = [0, 0, 0, 0]
    looks = []
    for i, w in enumerate(weights, start=1):
        if rng.random_sample() < w:
            counts[2] += int(rng.random_sample() < acc_b)
            counts[3] += 1
        else:
            counts[0] += int(rng.random_sample() < acc_a)
            counts[1] += 1
        if i % every == 0:
            looks.append(tuple(counts))
    return run_case(name, description, looks)


def main():
    cases = [
        paired_case("equal_b_3_points_better", "A 88 %, B 91 %, equal arms, a look every 100 per arm", 0.88, 0.91, 3000, 100, 1),
        paired_case("equal_aa", "A/A: both 90 %, equal arms, a look every 100 per arm", 0.90, 0.90, 3000, 100, 2),
        paired_case("equal_big_effect", "A 70 %, B 90 %, equal arms, a look every 10 per arm", 0.70, 0.90, 400, 10, 3),
        split_case(
            "unequal_weight_20",
            "A 85 %, B 92 %, 20 % of requests to B, a look every 250 requests",
            0.85, 0.92, [0.2] * 5000, 250, 4,
        ),
        split_case(
            "unequal_canary_steps",
            "A 90 %, B 92 %, canary weights 5, 25, 50 % (1,000 requests each), a look every 100 requests",
            0.90, 0.92, [0.05] * 1000 + [0.25] * 1000 + [0.5] * 1000, 100, 5,
        ),
        run_case(
            "degenerate",
            "an empty arm, then both arms all right (no variation), then a small all-right arm beside a "
            "larger one (the small-arm bound), the first errors, and a big swing that empties the "
            "running intersection",
            [
                (0, 0, 0, 0), (0, 0, 3, 3), (5, 5, 3, 3), (10, 10, 12, 12), (81, 94, 12, 12), (81, 94, 12, 13),
                (180, 200, 30, 33),
                (900, 1000, 990, 1000), (1900, 2000, 1000, 2000), (1950, 2100, 1090, 2100),
            ],
        ),
        run_case("all_wrong", "both arms all wrong: never any evidence", [(0, 5, 0, 5), (0, 50, 0, 40)]),
        run_case(
            "all_right_against_all_wrong",
            "the largest difference there is, both arms degenerate: the small-arm variance bound",
            [(0, 2, 2, 2), (0, 10, 10, 10), (0, 40, 40, 40)],
        ),
    ]
    OUT.write_text(json.dumps({"generator": "scripts/msprt_reference.py (msprt 0.1.2, scipy quad)", "cases": cases}, indent=1) + "\n")
    for case in cases:
        last = case["looks"][-1]
        print(f"{case['name']}: {len(case['looks'])} looks, last p = {last['p_value']:.3g}, CS = {last['confidence_sequence']}")


if __name__ == "__main__":
    main()
