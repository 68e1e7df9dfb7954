"""What the test split says about each optimizer's best checkpoint: the per-checkpoint truths of results.json.

Pure functions on labels, probabilities and class names, whatever computed them (no plotting here):
  prediction_record(labels, probabilities)     -> what <optimizer>/test_predictions.json holds
  class_report(labels, probabilities, classes) -> accuracy, Wilson 95% interval, confusion, per class (recall with
                                                  its interval, precision)
  majority_baseline(test_labels, classes)      -> the best constant answer: always the test split's most frequent class
  select_mistakes(labels, probabilities, limit) -> the most confident wrong answers, for mistakes.png
  summarize(results, predictions, classes)     -> the winner (models/ranking.py), baseline, McNemar vs the winner
"""
from __future__ import annotations

import numpy as np

from models.ranking import WINNER_RULE, winner
from train import stats

SIGNIFICANCE = ("exact McNemar test on the test images that the winner and the other checkpoint answer differently "
                f"(one right, one wrong), Holm-corrected over the comparisons with the winner, alpha {stats.ALPHA}")

MISTAKES_SHOWN = 24

def prediction_record(labels, probabilities, temperature: float | None = None) -> dict:
    """<optimizer>/test_predictions.json: the test labels, the predicted class and the softmax probabilities
    (N x classes, 6 decimals) of the best checkpoint, in the test split's order; calibrated with `temperature`
    when it is given (train/calibration.py: what the exported model answers)."""
    probs = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"probabilities {probs.shape} do not match {len(labels)} labels")
    return {"labels": labels.tolist(), "predicted": probs.argmax(axis=1).tolist(),
            "probabilities": np.round(probs, 6).tolist(), **({"temperature": temperature} if temperature else {})}

def class_report(labels, probabilities, classes) -> dict:
    """Test results of one checkpoint: {"n", "correct", "test_acc", "test_acc_ci95" (Wilson), "confusion"
    {"classes", "matrix" (rows: true class, columns: predicted class)}, "per_class" {class: {"recall",
    "precision" (None when never predicted), "support"}}}."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(probabilities).argmax(axis=1)
    m = stats.confusion(labels, predicted, len(classes))
    correct, n = int(np.trace(m)), int(m.sum())
    per_class = {}
    for i, c in enumerate(classes):
        support, said = int(m[i].sum()), int(m[:, i].sum())
        ci = stats.wilson(int(m[i, i]), support)
        per_class[c] = {"recall": m[i, i] / support if support else None, "correct": int(m[i, i]),
                        "recall_ci95": list(ci) if ci else None, "precision": m[i, i] / said if said else None,
                        "support": support}
        per_class[c] = {k: (float(v) if isinstance(v, np.floating) else v) for k, v in per_class[c].items()}
    ci = stats.wilson(correct, n)
    return {"n": n, "correct": correct, "test_acc": correct / n if n else None, "test_acc_ci95": list(ci) if ci else None,
            "confusion": {"classes": list(classes), "rows": "true class", "columns": "predicted class", "matrix": m.tolist()},
            "per_class": per_class}

def majority_baseline(test_labels, classes) -> dict:
    """Test accuracy of the best constant answer, always the test split's most frequent class (ties: the
    earlier class), with its Wilson 95% interval: the bar a model must clear to have learnt anything. (The
    training split's majority can score less when the splits' class mix differs; this is the stricter bar.)"""
    test_labels = np.asarray(test_labels)
    k = int(np.argmax(np.bincount(test_labels, minlength=len(classes)))) if len(test_labels) else 0
    correct, n = int(np.sum(test_labels == k)), len(test_labels)
    ci = stats.wilson(correct, n)
    return {"class": classes[k], "test_acc": correct / n if n else None, "test_acc_ci95": list(ci) if ci else None,
            "n": n, "rule": "always answer the test split's most frequent class (the best constant answer)"}

def select_mistakes(labels, probabilities, limit: int = MISTAKES_SHOWN) -> list[int]:
    """Indices of misclassified images, most confident mistakes first (confidence: the probability of the
    wrong answer; ties: image order), at most `limit`."""
    probs = np.asarray(probabilities)
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != np.asarray(labels))
    conf = probs[wrong, predicted[wrong]]
    return [int(i) for i in wrong[np.lexsort((wrong, -conf))][:limit]]

def summarize(results: dict, predictions: dict, classes) -> dict:
    """Add to each row of `results` (in place) what its test predictions say: "test_acc_ci95", "confusion",
    "per_class", and "vs_winner" (McNemar against the winner, Holm-corrected); return the run-level
    {"winner", "ranking", "baseline", "significance", "classes"} for results.json.

    predictions: {name: {"labels", "probabilities"}} (test_predictions.json; missing names are skipped)."""
    preds = {n: p for n, p in (predictions or {}).items() if p and p.get("probabilities") and n in results}
    for name, p in preds.items():
        rep = class_report(p["labels"], p["probabilities"], classes)
        results[name].update({k: rep[k] for k in ("test_acc_ci95", "confusion", "per_class")})
    best = winner(results)
    raw = {}
    if best in preds:
        right = {n: np.equal(p["labels"], np.argmax(p["probabilities"], axis=1)) for n, p in preds.items()}
        tests = {n: stats.mcnemar(right[best], right[n]) for n in preds if n != best and len(right[n]) == len(right[best])}
        raw = {n: t["p"] for n, t in tests.items()}
        adjusted = stats.holm(raw)
        for n, t in tests.items():
            results[n]["vs_winner"] = {"winner_only_right": t["a_only"], "only_this_right": t["b_only"], "p": t["p"],
                                       "p_holm": adjusted[n], "distinguishable": adjusted[n] < stats.ALPHA}
    labels = next(iter(preds.values()))["labels"] if preds else None
    baseline = majority_baseline(labels, classes) if labels is not None else None
    return {"winner": best, "ranking": WINNER_RULE, "baseline": baseline, "classes": list(classes),
            "n_test": len(labels) if labels is not None else None,
            "significance": {"method": SIGNIFICANCE, "comparisons": len(raw)}}
