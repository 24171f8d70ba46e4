"""Reference values for the canary gates' interval: Newcombe's hybrid score interval for the
difference of two independent proportions, from statsmodels.

    /work/venv-stats/bin/python scripts/newcombe_reference.py   # venv: see stats_reference.py

writes tests/fixtures/stats/newcombe_cases.json (checked by tests/deploy.rs)."""
import json
import os

from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

CASES = [
    (90, 100, 80, 100),
    (540, 540, 500, 540),
    (0, 100, 3, 100),
    (10, 12, 200, 1000),
    (0, 50, 0, 50),
    (2, 50, 0, 50),
    (97, 100, 10, 100),
    (4410, 5000, 4480, 5000),
]

out = []
for k1, n1, k2, n2 in CASES:
    lo, hi = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff", alpha=0.05)
    case = {"k1": k1, "n1": n1, "k2": k2, "n2": n2, "lower": float(lo), "upper": float(hi)}
    if 0 < k1 + k2 < n1 + n2:
        z, p = proportions_ztest([k1, k2], [n1, n2])
        case["z"], case["p"] = float(z), float(p)
    out.append(case)
path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "stats", "newcombe_cases.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print(f"wrote {len(out)} cases to {os.path.normpath(path)}")
