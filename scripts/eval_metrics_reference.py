#!/usr/bin/env python3
"""Reference values for src/eval/metrics.rs (classification metrics of an offline evaluation).

Writes tests/fixtures/reference/eval_metrics.json: several cases, each with its inputs (the
model's labels, the records' labels and float32 probabilities, the k of top-k) and the values
scikit-learn 1.9.1 computes for them:
  accuracy_score, precision_recall_fscore_support (per class, macro, weighted; labels = the
  classes below, zero_division=0.0), confusion_matrix, top_k_accuracy_score and log_loss.
The expected calibration error (Guo et al. 2017, 15 equal-width bins) is written by hand with
numpy below, since scikit-learn has none.

Conventions that the Rust side follows (see the doc comment of `classification_metrics`):
- A record without a label is skipped; prediction = numpy argmax (first index on ties).
- classes = the labels that occur as a label or a prediction (sklearn's unique_labels), the
  model's labels first in model order, then the labels the model does not know, sorted.
- top-k and log loss run over the records whose label the model knows; top-k is then scaled by
  n_known / n (a record with an unknown label is a miss). scikit-learn insists that `labels`
  be sorted and reads the columns of y_score / y_proba in sorted label order, so when the
  model's labels are not sorted the labels are encoded as their model indices (0..C-1, which
  are sorted) — the same call with the model's order kept. For a two-label model, scikit-learn
  takes y_score as the probability of the second label (a 2-column y_score is refused).
- Probabilities are float32 and written exactly (float(np.float32(x))); every metric is
  computed in float64 from them, as numpy upcasts float32.

Setup (outside the repo): /work/venv-stats with scikit-learn==1.9.1, numpy, scipy.
Run: /work/venv-stats/bin/python scripts/eval_metrics_reference.py
"""

import json
import math
import os
import re
import warnings

import numpy as np
import sklearn
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

warnings.filterwarnings("ignore")
assert sklearn.__version__ == "1.9.1", sklearn.__version__

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "reference",
                   "eval_metrics.json")
ECE_BINS = 15


def ece_reference(conf, correct):
    """Guo et al. (2017): bins B_m = ((m-1)/M, m/M]; a confidence of exactly 0 goes in the first
    bin. Bin index (0-based) = ceil(conf * M) - 1 clamped to 0..M-1, in float64. For a float32
    confidence, conf * 15 is exact in float64 (24 + 4 significant bits), so this is the exact
    interval test on the float32 value."""
    conf = np.asarray(conf, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    n = len(conf)
    idx = np.clip(np.ceil(conf * ECE_BINS) - 1, 0, ECE_BINS - 1).astype(np.int64)
    bins, ece = [], 0.0
    for m in range(ECE_BINS):
        mask = idx == m
        count = int(mask.sum())
        mean_conf = float(conf[mask].mean()) if count else 0.0
        acc = float(correct[mask].mean()) if count else 0.0
        ece += count / n * abs(acc - mean_conf)
        bins.append({"lower": m / ECE_BINS, "upper": (m + 1) / ECE_BINS, "count": count,
                     "mean_confidence": mean_conf, "accuracy": acc})
    return float(ece), bins


def reference(model_labels, records, ks):
    labelled = [(r["label"], np.array(r["probs"], dtype=np.float32)) for r in records if r["label"] is not None]
    if not labelled:
        return None
    y_true = [l for l, _ in labelled]
    probs = np.stack([p for _, p in labelled]).astype(np.float64)
    pred_idx = np.argmax(probs, axis=1)
    y_pred = [model_labels[i] for i in pred_idx]
    n = len(y_true)

    known = set(model_labels)
    occurring = set(y_true) | set(y_pred)
    classes = [l for l in model_labels if l in occurring] + sorted(occurring - known)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0.0)
    averages = {}
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(y_true, y_pred, labels=classes, average=avg,
                                                        zero_division=0.0)
        averages[avg] = {"precision": float(ap), "recall": float(ar), "f1": float(af)}
    cm = confusion_matrix(y_true, y_pred, labels=classes)
    predicted = cm.sum(axis=0)

    known_rows = [i for i, l in enumerate(y_true) if l in known]
    n_known = len(known_rows)
    ordered = list(model_labels) == sorted(model_labels)
    if ordered:
        yk = [y_true[i] for i in known_rows]
        sk_labels = list(model_labels)
    else:
        yk = [model_labels.index(y_true[i]) for i in known_rows]
        sk_labels = list(range(len(model_labels)))
    pk = probs[known_rows]
    # float32 scores for top-k, as the records carry them (check_array keeps float32).
    pk32 = np.stack([labelled[i][1] for i in known_rows]) if n_known else None
    top_k = []
    for k in ks:
        if n_known == 0:
            acc = 0.0
        else:
            score = pk32[:, 1] if len(model_labels) == 2 else pk32
            acc = top_k_accuracy_score(yk, score, k=k, labels=sk_labels) * n_known / n
        top_k.append({"k": k, "accuracy": float(acc)})
    ll = float(log_loss(yk, pk, labels=sk_labels)) if n_known else None

    conf = probs.max(axis=1)
    correct = np.array([a == b for a, b in zip(y_true, y_pred)])
    ece, bins = ece_reference(conf, correct)
    unknown = sorted(occurring - known)
    return {
        "n": n,
        "correct": int(correct.sum()),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "top_k": top_k,
        "classes": [{"label": c, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                     "support": int(s[i]), "predicted": int(predicted[i]), "known_to_model": c in known}
                    for i, c in enumerate(classes)],
        "macro_avg": averages["macro"],
        "weighted_avg": averages["weighted"],
        "confusion": cm.astype(int).tolist(),
        "log_loss": ll,
        "n_log_loss": n_known,
        "ece": ece,
        "reliability": bins,
        "unknown_labels": [{"label": u, "count": y_true.count(u)} for u in unknown if y_true.count(u) > 0],
    }


def f32(values):
    return [float(np.float32(v)) for v in values]


def softmax32(logits):
    z = logits - logits.max()
    e = np.exp(z)
    return (e / e.sum()).astype(np.float32)


def case(name, model_labels, records, ks=(1, 2, 3, 5)):
    records = [{"label": l, "probs": f32(p)} for l, p in records]
    return {"name": name, "model_labels": list(model_labels), "top_k": list(ks), "records": records,
            "expected": reference(list(model_labels), records, list(ks))}


def noisy_records(rng, labels, n, *, unlabelled=0.0, sharp=2.0, never=(), absent=(), extra=()):
    """Softmax records whose label is usually the argmax. `never`: classes whose logit is pushed
    down so they are never predicted; `absent`: classes never used as a label; `extra`: labels
    the model does not know, used for some records."""
    out = []
    choices = [l for l in labels if l not in absent]
    for _ in range(n):
        label = choices[rng.integers(len(choices))]
        logits = rng.normal(0.0, 1.0, len(labels))
        logits[labels.index(label)] += sharp * rng.random() * 2
        for c in never:
            logits[labels.index(c)] -= 20.0
        if extra and rng.random() < 0.15:
            label = extra[rng.integers(len(extra))]
        if rng.random() < unlabelled:
            label = None
        out.append((label, softmax32(logits)))
    return out


def main():
    rng = np.random.default_rng(20261201)
    digits = [str(d) for d in range(10)]
    cases = []

    cases.append(case("ten_classes_random", digits, noisy_records(rng, digits, 500, unlabelled=0.1)))

    five = ["a", "b", "c", "d", "e"]
    cases.append(case("class_never_predicted", five, noisy_records(rng, five, 200, never=("c",))))

    six = ["a", "b", "c", "d", "e", "f"]
    # "e" is predicted now and then but never a label; "f" is neither, so it is not a class.
    recs = noisy_records(rng, six, 200, absent=("e", "f"), never=("f",))
    cases.append(case("model_class_absent_from_labels", six, recs))

    recs = noisy_records(rng, digits, 300, unlabelled=0.05, extra=("cat", "10", "dog", "Zebra", "été"))
    cases.append(case("unknown_labels", digits, recs))

    four = ["a", "b", "c", "d"]
    tie_rows = [
        ("a", [0.25, 0.25, 0.25, 0.25]),  # all tied: a ranks last (higher index first)
        ("d", [0.25, 0.25, 0.25, 0.25]),  # d ranks first among equals
        ("b", [0.4, 0.2, 0.2, 0.2]),      # ranks a, d, c, b: b is 4th (top-3 miss)
        ("c", [0.4, 0.2, 0.2, 0.2]),      # c is 3rd (top-2 miss, top-3 hit)
        ("d", [0.4, 0.2, 0.2, 0.2]),      # d is 2nd (top-2 hit)
        ("a", [0.5, 0.5, 0.0, 0.0]),      # argmax picks a; sklearn top-1 ranks b first
        ("b", [0.5, 0.5, 0.0, 0.0]),      # argmax says a (wrong); sklearn top-1 hit
        ("c", [1.0, 0.0, 0.0, 0.0]),      # label at probability 0: log loss clipped at eps
        ("a", [1.0, 0.0, 0.0, 0.0]),      # probability 1: clipped at 1 - eps
        ("d", [0.0, 0.0, 0.0, 1.0]),
        ("b", [0.0, 0.0, 0.0, 0.0]),      # all zero: confidence 0, first ECE bin
        ("c", [0.1, 0.3, 0.3, 0.3]),
        (None, [0.7, 0.1, 0.1, 0.1]),
    ]
    cases.append(case("ties_and_exact_zero_one", four, tie_rows, ks=(1, 2, 3, 4, 6)))

    # The same ties under a model whose labels are not sorted: ties follow model order.
    unsorted = ["dog", "cat", "bird", "ant"]
    rename = dict(zip(four, unsorted))
    cases.append(case("unsorted_model_labels", unsorted,
                      [(rename[l] if l else None, p) for l, p in tie_rows], ks=(1, 2, 3)))

    binary = ["neg", "pos"]
    recs = noisy_records(rng, binary, 80, unlabelled=0.1)
    recs += [
        ("neg", [0.5, 0.5]),
        ("pos", [0.5, 0.5]),
        # Rows that do not sum to one: argmax and sklearn's binary top-1 (p(pos) > 0.5) differ.
        ("pos", [0.3, 0.4]),
        ("neg", [0.3, 0.4]),
        ("pos", [0.6, 0.55]),
        ("neg", [0.0, 1.0]),
        ("pos", [1.0, 0.0]),
    ]
    cases.append(case("binary", binary, recs, ks=(1, 2, 3)))

    # Confidences on and next to every bin edge m/15 (float32 neighbours of the edge), others
    # below the confidence; labels random among 20 classes.
    twenty = [f"c{i:02d}" for i in range(20)]
    edge_rows = []
    for m in range(ECE_BINS + 1):
        edge = np.float32(m / ECE_BINS)
        for c in (edge, np.nextafter(edge, np.float32(-1)), np.nextafter(edge, np.float32(2))):
            c = float(np.clip(c, 0, 1))
            probs = rng.random(20) * c * 0.9
            top = rng.integers(20)
            probs[top] = c
            label = twenty[top] if rng.random() < m / ECE_BINS else twenty[rng.integers(20)]
            edge_rows.append((label, probs))
    for x in (0.6, 0.2, 0.4, 0.8, 1 / 3, 2 / 3, 1 / 15, 14 / 15):
        probs = np.full(20, 0.01)
        probs[3] = x
        edge_rows.append((twenty[3], probs))
        edge_rows.append((twenty[4], probs))
    cases.append(case("bin_edges", twenty, edge_rows, ks=(1, 5, 20)))

    cases.append(case("only_unknown_labels", digits,
                      [("cat", softmax32(rng.normal(0, 1, 10))) for _ in range(5)] +
                      [(None, softmax32(rng.normal(0, 1, 10)))]))

    text = json.dumps({"generator": "scripts/eval_metrics_reference.py", "sklearn": sklearn.__version__,
                       "numpy": np.__version__, "cases": cases}, indent=1, ensure_ascii=False)
    # Lists of numbers on one line each (a record's probabilities, a confusion row).
    text = re.sub(r"\[\s*([-+\d.eE]+(?:,\s*[-+\d.eE]+)*)\s*\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    with open(OUT, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    for c in cases:
        e = c["expected"]
        print(f"{c['name']}: n={e['n']} acc={e['accuracy']:.4f} top_k={[t['accuracy'] for t in e['top_k']]} "
              f"log_loss={e['log_loss']} ece={e['ece']:.6f} classes={len(e['classes'])}")


if __name__ == "__main__":
    main()
