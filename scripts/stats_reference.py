#!/usr/bin/env python3
"""Reference values for ModelDeck's statistics (src/stats, src/report).

Writes CSV inputs and expected outputs into tests/fixtures/stats/. Drift numbers come from
Evidently 0.7's own drift code (PSI, Jensen-Shannon, normed Wasserstein, KS/chi-square/z
p-values, default-test choice); statistics Evidently does not report come from scipy
(ks_2samp statistic, chisquare statistic, kstwo, mannwhitneyu), statsmodels (Wilson
intervals, proportions_ztest, mcnemar) and numpy (percentiles). The Kayenta judgement of the
A/B latencies (`latency.kayenta`) is checked against R instead: scripts/kayenta_reference.R
reads the arms written here and stores R's values in kayenta_cases.json, so run it after this
script. CI only runs the Rust tests against the committed output.

Setup (outside the repo):
    python3 -m venv /work/venv-stats
    /work/venv-stats/bin/pip install "evidently==0.7.*" "pandas<3" numpy scipy statsmodels
    /work/venv-stats/bin/python scripts/stats_reference.py
"""

import csv
import json
import math
import os
import warnings

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from evidently.legacy.calculations.stattests.chisquare_stattest import _chi_stat_test
from evidently.legacy.calculations.stattests.jensenshannon import _jensenshannon
from evidently.legacy.calculations.stattests.ks_stattest import _ks_stat_test
from evidently.legacy.calculations.stattests.psi import _psi
from evidently.legacy.calculations.stattests.registry import _get_default_stattest
from evidently.legacy.calculations.stattests.wasserstein_distance_norm import _wasserstein_distance_norm
from evidently.legacy.calculations.stattests.z_stattest import _z_stat_test, proportions_diff_z_stat_ind
from evidently.legacy.calculations.stattests.utils import get_unique_not_nan_values_list_from_series
from evidently.legacy.core import ColumnType

warnings.filterwarnings("ignore")

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "stats")
MISSING = {"", "na", "n/a", "nan", "-nan", "null", "none", "<na>", "#n/a",
           "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
METHOD_NAMES = {"ks": "ks", "chisquare": "chisquare", "z": "z",
                "jensenshannon": "jensenshannon", "wasserstein": "wasserstein_normed"}
THRESHOLDS = {"ks": 0.05, "chisquare": 0.05, "z": 0.05, "jensenshannon": 0.1, "wasserstein_normed": 0.1}


def clean(x):
    """JSON-safe floats: NaN and ±inf become null (as serde_json writes them)."""
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


def write_csv(name, header, rows):
    with open(os.path.join(OUT, name), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def fmt(v):
    return v if isinstance(v, str) else repr(round(float(v), 4))


def is_missing(s):
    return s.strip().lower() in MISSING


def is_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------- drift

def column_expected(ref_raw, cur_raw, categorical):
    ref_vals = [s for s in ref_raw if not is_missing(s)]
    cur_vals = [s for s in cur_raw if not is_missing(s)]
    n_miss_ref = len(ref_raw) - len(ref_vals)
    n_miss_cur = len(cur_raw) - len(cur_vals)
    if not ref_vals or not cur_vals:
        return {"error": True}
    numerical = not categorical and all(is_number(s) for s in ref_vals + cur_vals)
    if numerical:
        ref = pd.Series([float(s) for s in ref_vals])
        cur = pd.Series([float(s) for s in cur_vals])
        ftype = ColumnType.Numerical
    else:
        ref = pd.Series(ref_vals, dtype=object)
        cur = pd.Series(cur_vals, dtype=object)
        ftype = ColumnType.Categorical
    n_distinct = pd.concat([ref, cur]).nunique()
    out = {
        "kind": "numerical" if numerical else "categorical",
        "n_reference": len(ref), "n_current": len(cur),
        "n_missing_reference": n_miss_ref, "n_missing_current": n_miss_cur,
    }
    if numerical:
        res = stats.ks_2samp(ref, cur)
        out["ks"] = {"statistic": float(res.statistic), "pvalue": _ks_stat_test(ref, cur, ftype, 0.05)[0]}
    if not numerical or n_distinct <= 5:
        keys = get_unique_not_nan_values_list_from_series(current_data=cur, reference_data=ref)
        rc = ref.value_counts()
        cc = cur.value_counts()
        k_norm = cur.shape[0] / ref.shape[0]
        f_exp = [rc.get(k, 0) * k_norm for k in keys]
        f_obs = [cc.get(k, 0) for k in keys]
        stat = stats.chisquare(f_obs, f_exp).statistic
        out["chisquare"] = {"statistic": stat, "pvalue": _chi_stat_test(ref, cur, ftype, 0.05)[0]}
    if n_distinct <= 2:
        p = _z_stat_test(ref, cur, ftype, 0.05)[0]
        if ref.nunique() == 1 and cur.nunique() == 1 and ref.unique()[0] == cur.unique()[0]:
            z = 0.0
        else:
            keys = sorted(get_unique_not_nan_values_list_from_series(current_data=cur, reference_data=ref))
            z = proportions_diff_z_stat_ind(ref.apply(lambda x: 0 if x == keys[0] else 1),
                                            cur.apply(lambda x: 0 if x == keys[0] else 1))
        out["z"] = {"statistic": z, "pvalue": p}
    out["psi"] = _psi(ref, cur, ftype, 0.1)[0]
    out["jensenshannon"] = _jensenshannon(ref, cur, ftype, 0.1)[0]
    if numerical:
        out["wasserstein_normed"] = _wasserstein_distance_norm(ref, cur, ftype, 0.1)[0]
        out["mean_shift_sd"] = (np.mean(cur) - np.mean(ref)) / max(float(np.std(ref)), 0.001)
    method = METHOD_NAMES[_get_default_stattest(ref, cur, ftype).name]
    score = {"ks": lambda: out["ks"]["pvalue"], "chisquare": lambda: out["chisquare"]["pvalue"],
             "z": lambda: out["z"]["pvalue"], "jensenshannon": lambda: out["jensenshannon"],
             "wasserstein_normed": lambda: out["wasserstein_normed"]}[method]()
    thr = THRESHOLDS[method]
    drift = {"ks": score <= thr, "chisquare": score < thr, "z": score < thr,
             "jensenshannon": score >= thr, "wasserstein_normed": score >= thr}[method]
    out["default_test"] = {"method": method, "score": score, "threshold": thr,
                           "drift_detected": bool(drift), "enough_data": len(cur) >= 30}
    return out


def drift_case(name, ref_cols, cur_cols, categorical=()):
    """ref_cols / cur_cols: dict column -> list of raw strings (all columns equal length)."""
    names = list(ref_cols)
    write_csv(f"{name}_reference.csv", names, zip(*[ref_cols[c] for c in names]))
    write_csv(f"{name}_current.csv", list(cur_cols), zip(*[cur_cols[c] for c in cur_cols]))
    columns = {c: column_expected(ref_cols[c], cur_cols[c], c in categorical) for c in names}
    flags = [col["default_test"]["drift_detected"] for col in columns.values() if "error" not in col]
    share = sum(flags) / len(flags) if flags else 0.0
    expected = {"columns": columns, "dataset_drift": {"share_drifted": share, "drift_detected": share >= 0.5}}
    return {"name": name, "reference": f"{name}_reference.csv", "current": f"{name}_current.csv",
            "categorical": list(categorical), "expected": clean(expected)}


def numbers(x):
    return [fmt(v) for v in x]


def build_drift_cases(rng):
    cases = []
    n = 500
    ref = {
        "no_drift": numbers(rng.normal(0, 1, n)),
        "mean_shift_half_sd": numbers(rng.normal(0, 1, n)),
        "doubled_variance": numbers(rng.normal(0, 1, n)),
        "category_5_to_20": list(rng.choice(["a", "b", "c", "rare"], n, p=[0.45, 0.3, 0.2, 0.05])),
        "binary_label": list(rng.choice(["no", "yes"], n, p=[0.7, 0.3])),
        "few_values": [str(v) for v in rng.integers(1, 5, n)],
        "constant_equal": ["3"] * n,
        "constant_different": ["3"] * n,
        "with_missing": [rng.choice(["", "NA", "N/A", "NaN", "null", "None", "inf", "-inf"])
                         if rng.random() < 0.1 else fmt(v) for v in rng.normal(10, 2, n)],
        "all_missing_current": numbers(rng.normal(0, 1, n)),
        "new_category": list(rng.choice(["x", "y", "z"], n)),
        "zip_code": [str(v) for v in rng.choice([10115, 20095, 80331], n)],
    }
    cur = {
        "no_drift": numbers(rng.normal(0, 1, n)),
        "mean_shift_half_sd": numbers(rng.normal(0.5, 1, n)),
        "doubled_variance": numbers(rng.normal(0, math.sqrt(2), n)),
        "category_5_to_20": list(rng.choice(["a", "b", "c", "rare"], n, p=[0.35, 0.25, 0.2, 0.2])),
        "binary_label": list(rng.choice(["no", "yes"], n, p=[0.6, 0.4])),
        "few_values": [str(v) for v in rng.integers(1, 5, n)],
        "constant_equal": ["3"] * n,
        "constant_different": ["4"] * n,
        "with_missing": [rng.choice(["", "NA", "nan", "NULL", "none", "Inf"])
                         if rng.random() < 0.2 else fmt(v) for v in rng.normal(10.5, 2, n)],
        "all_missing_current": [rng.choice(["", "NA", "null"]) for _ in range(n)],
        "new_category": list(rng.choice(["x", "y", "z", "w"], n)),
        "zip_code": [str(v) for v in rng.choice([10115, 20095, 80331], n)],
    }
    cases.append(drift_case("drift_small_reference", ref, cur, categorical=("zip_code",)))

    nr, nc = 2000, 1500
    ref = {
        "no_drift": numbers(rng.normal(5, 2, nr)),
        "shifted": numbers(rng.normal(5, 2, nr)),
        "few_values": [str(v) for v in rng.integers(0, 4, nr)],
        "category": list(rng.choice(["red", "green", "blue"], nr, p=[0.5, 0.3, 0.2])),
    }
    cur = {
        "no_drift": numbers(rng.normal(5, 2, nc)),
        "shifted": numbers(rng.normal(5.5, 2, nc)),
        "few_values": [str(v) for v in rng.integers(0, 4, nc)],
        "category": list(rng.choice(["red", "green", "blue"], nc, p=[0.3, 0.3, 0.4])),
    }
    cases.append(drift_case("drift_large_reference", ref, cur))

    cases.append(drift_case(
        "drift_n5",
        {"value": ["1.5", "2.25", "3", "4", "10"], "tied": ["1", "1", "2", "2", "3"]},
        {"value": ["2", "2.5", "3.5", "5", "6"], "tied": ["2", "2", "3", "3", "4"]}))

    cases.append(drift_case(
        "drift_ks_asymptotic",
        {"x": numbers(rng.normal(0, 1, 12000))},
        {"x": numbers(rng.normal(0.03, 1, 10500))}))
    return cases


# ---------------------------------------------------------------- KS building blocks

def build_ks_cases(rng):
    grid = []
    for n in [1, 2, 3, 5, 10, 37, 100, 140, 141, 250, 1000, 5000, 20000, 99999, 100001, 400000]:
        for x in [0.0005, 0.002, 0.01, 0.03, 0.05, 0.08, 0.1, 0.2, 0.3, 0.45, 0.5, 0.7, 0.95]:
            grid.append({"n": n, "x": x, "sf": float(stats.kstwo.sf(x, n))})
    pairs = []
    for (n1, n2, shift) in [(7, 13, 0.5), (40, 40, 0.3), (300, 451, 0.2), (999, 1000, 0.1),
                            (64, 96, 0.0), (10001, 800, 0.05), (3, 20000, 1.0)]:
        a = [round(v, 3) for v in rng.normal(0, 1, n1)]
        b = [round(v, 3) for v in rng.normal(shift, 1, n2)]
        r = stats.ks_2samp(a, b)
        pairs.append({"a": a, "b": b, "statistic": float(r.statistic), "pvalue": float(r.pvalue)})
    return {"kstwo_sf": grid, "ks_2samp": pairs}


# ---------------------------------------------------------------- A/B

def ab_expected(a, b, paired):
    out = {}
    ca, cb = int(sum(r["correct"] for r in a)), int(sum(r["correct"] for r in b))
    na, nb = len(a), len(b)
    arms = {}
    for key, c, n in (("a", ca, na), ("b", cb, nb)):
        lo, hi = proportion_confint(c, n, alpha=0.05, method="wilson")
        arms[key] = {"n": n, "correct": c, "accuracy": c / n, "wilson_ci95": [lo, hi]}
    z, p = proportions_ztest([ca, cb], [na, nb])
    out["accuracy"] = {**arms, "diff_b_minus_a": cb / nb - ca / na,
                       "ztest": {"statistic": z, "pvalue": p}}
    la = np.array([r["latency_ms"] for r in a])
    lb = np.array([r["latency_ms"] for r in b])
    lat = {}
    for key, v in (("a", la), ("b", lb)):
        lat[key] = {"n": len(v), "mean": float(np.mean(v)), "p50": float(np.percentile(v, 50)),
                    "p95": float(np.percentile(v, 95)), "p99": float(np.percentile(v, 99))}
    mw = stats.mannwhitneyu(la, lb, alternative="two-sided")
    lat["mann_whitney"] = {"u_a": float(mw.statistic), "u_b": float(na * nb - mw.statistic),
                           "pvalue": float(mw.pvalue)}
    # latency.kayenta: R's wilcox.test is the reference, see scripts/kayenta_reference.R.
    out["latency"] = lat
    if paired:
        bmap = {r["request_id"]: r for r in b}
        pairs = [(r, bmap[r["request_id"]]) for r in a if r["request_id"] in bmap]
        table = [[0, 0], [0, 0]]
        for ra, rb in pairs:
            table[0 if ra["correct"] else 1][0 if rb["correct"] else 1] += 1
        ex = mcnemar(table, exact=True)
        cc = mcnemar(table, exact=False, correction=True)
        uc = mcnemar(table, exact=False, correction=False)
        out["paired"] = {
            "n_pairs": len(pairs), "table": table,
            "mcnemar_exact": {"statistic": ex.statistic, "pvalue": ex.pvalue},
            "mcnemar_chi2_corrected": {"statistic": cc.statistic, "pvalue": cc.pvalue},
            "mcnemar_chi2_uncorrected": {"statistic": uc.statistic, "pvalue": uc.pvalue},
            "correctness_agreement_rate": (table[0][0] + table[1][1]) / len(pairs),
            "prediction_agreement_rate": sum(ra["prediction"] == rb["prediction"] for ra, rb in pairs) / len(pairs),
        }
    return clean(out)


def arm_rows(rng, n, accuracy, latency, prefix="r", labels=("cat", "dog", "bird"), exact_correct=True):
    n_correct = int(round(accuracy * n)) if exact_correct else int(rng.binomial(n, accuracy))
    correct = np.zeros(n, dtype=bool)
    correct[rng.choice(n, n_correct, replace=False)] = True
    rows = []
    for i in range(n):
        label = labels[rng.integers(len(labels))]
        pred = label if correct[i] else labels[(labels.index(label) + 1) % len(labels)]
        rows.append({"request_id": f"{prefix}{i}", "prediction": pred, "label": label,
                     "correct": bool(correct[i]), "latency_ms": float(latency[i])})
    return rows


def write_arm(name, rows):
    write_csv(name, ["request_id", "prediction", "label", "correct", "latency_ms"],
              [[r["request_id"], r["prediction"], r["label"], int(r["correct"]), repr(r["latency_ms"])]
               for r in rows])


def ab_case(name, a, b, paired=False):
    write_arm(f"{name}_a.csv", a)
    write_arm(f"{name}_b.csv", b)
    return {"name": name, "a": f"{name}_a.csv", "b": f"{name}_b.csv", "paired": paired,
            "expected": ab_expected(a, b, paired)}


def lat(rng, n, scale):
    return np.round(rng.lognormal(np.log(scale), 0.4, n), 2)


def build_ab_cases(rng):
    cases = []
    n = 2000
    cases.append(ab_case("ab_equal_accuracy", arm_rows(rng, n, 0.90, lat(rng, n, 40), "a"),
                         arm_rows(rng, n, 0.90, lat(rng, n, 40), "b")))
    cases.append(ab_case("ab_b_3_points_better", arm_rows(rng, n, 0.85, lat(rng, n, 40), "a"),
                         arm_rows(rng, n, 0.88, lat(rng, n, 48), "b")))
    cases.append(ab_case("ab_tiny_ties",
                         arm_rows(rng, 6, 0.5, np.array([10, 12, 12, 15, 15, 20.0]), "a"),
                         arm_rows(rng, 7, 4 / 7, np.array([12, 15, 15, 18, 21, 21, 30.0]), "b")))
    cases.append(ab_case("ab_tiny_exact",
                         arm_rows(rng, 5, 0.6, np.array([10.5, 11.25, 13, 17, 19.5]), "a"),
                         arm_rows(rng, 6, 0.5, np.array([12, 14.5, 18, 22, 23.75, 31]), "b")))
    # Shadow: B sees the same requests as A (file in another order, one request missing).
    n = 1000
    a = arm_rows(rng, n, 0.87, lat(rng, n, 35), "req")
    b = []
    for r in a:
        flip = rng.random() < 0.12
        correct = (not r["correct"]) if flip else r["correct"]
        pred = r["label"] if correct else ("other" if r["prediction"] == r["label"] else r["prediction"])
        b.append({"request_id": r["request_id"], "prediction": pred, "label": r["label"],
                  "correct": correct, "latency_ms": float(np.round(r["latency_ms"] * rng.uniform(0.9, 1.3), 2))})
    b = [b[i] for i in rng.permutation(n)][:-1]
    cases.append(ab_case("shadow_paired", a, b, paired=True))
    return cases


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240606)
    with open(os.path.join(OUT, "drift_cases.json"), "w") as f:
        json.dump(build_drift_cases(rng), f, indent=1)
    with open(os.path.join(OUT, "ks_cases.json"), "w") as f:
        json.dump(clean(build_ks_cases(rng)), f)
    with open(os.path.join(OUT, "ab_cases.json"), "w") as f:
        json.dump(build_ab_cases(rng), f, indent=1)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
