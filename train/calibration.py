"""Confidence that means what it says: a temperature per model, fitted on the validation split, and the
"not sure" threshold, chosen on it too. The test split never fits anything here; it is only measured.

Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks", Sec. 4.2): one scalar
T > 0 divides the logits before the softmax, p = softmax(z / T). It never changes which class is
answered (argmax is unchanged), only how sure the answer says it is; T is the minimiser of the
validation negative log-likelihood. Measured before and after:
  ECE  expected calibration error, 10 equal-width confidence bins (Naeini et al. 2015; Guo et al. 2017):
       sum over bins of (share of images in the bin) x |accuracy - mean confidence| in the bin;
  NLL  mean negative log-likelihood of the true class;
  confident mistakes: the share of images answered wrongly with a confidence above 90 %.

"Not sure" (selective classification, Geifman & El-Yaniv 2017): an answer is given only when the top
calibrated probability reaches a threshold; below it the product says "not sure" and names the two
likeliest classes. THRESHOLD_RULE chooses it on validation.

All functions take log-probabilities (or probabilities) as numpy arrays, N x classes, whatever computed
them: log_softmax(z) / T renormalised is softmax(z / T), so fitting on log-probabilities is fitting on logits.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar

BINS = 10
CONFIDENT = 0.9  # a mistake made with more confidence than this is a "confident mistake"
PRECISION = 0.99  # the answers given must be at least this precise on validation
THRESHOLD_RULE = (f"the lowest top-probability threshold at which the answers given on the validation split "
                  f"are at least {PRECISION:.0%} right (calibrated probabilities); below it the answer is "
                  f"\"not sure\"")
TEMPERATURE_RULE = ("one temperature T per model: the minimiser of the validation split's negative log-likelihood of "
                    "softmax(logits / T) (Guo et al. 2017); the test split never fits it")
T_RANGE = (0.25, 20.0)  # never sharpen more than 4x: a separable validation split would drive T towards 0


def scaled(logp: np.ndarray, temperature: float) -> np.ndarray:
    """Log-probabilities of softmax(z / T) from log-probabilities log_softmax(z) (N x classes, float64)."""
    z = np.asarray(logp, dtype=np.float64) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def nll(logp: np.ndarray, labels) -> float:
    labels = np.asarray(labels, dtype=np.int64)
    return float(-np.asarray(logp, dtype=np.float64)[np.arange(len(labels)), labels].mean()) if len(labels) else math.nan


def fit_temperature(logp: np.ndarray, labels) -> float:
    """The T in T_RANGE that minimises the NLL of softmax(z / T) on these (validation) images; 1.0 without images.
    A bounded 1-D search over log T (the NLL is convex in 1/T)."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return 1.0
    lo, hi = (math.log(t) for t in T_RANGE)
    r = minimize_scalar(lambda s: nll(scaled(logp, math.exp(s)), labels), bounds=(lo, hi), method="bounded",
                        options={"xatol": 1e-4})
    return float(round(math.exp(r.x), 4))


def ece(probs: np.ndarray, labels, bins: int = BINS) -> float:
    """Expected calibration error (equal-width bins over the top probability)."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    if len(labels) == 0:
        return math.nan
    conf, right = probs.max(axis=1), probs.argmax(axis=1) == labels
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.mean() * abs(right[m].mean() - conf[m].mean())
    return float(total)


def reliability(probs: np.ndarray, labels, bins: int = BINS) -> dict:
    """Per confidence bin: {"confidence", "accuracy", "count"} (None where a bin is empty): the reliability diagram."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    conf, right = probs.max(axis=1), probs.argmax(axis=1) == labels
    which = np.minimum((conf * bins).astype(int), bins - 1)
    out = {"confidence": [], "accuracy": [], "count": []}
    for b in range(bins):
        m = which == b
        out["confidence"].append(float(conf[m].mean()) if m.any() else None)
        out["accuracy"].append(float(right[m].mean()) if m.any() else None)
        out["count"].append(int(m.sum()))
    return out


def confident_mistakes(probs: np.ndarray, labels, above: float = CONFIDENT) -> float:
    """Share of all images answered wrongly with a top probability above `above`."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    if len(labels) == 0:
        return math.nan
    return float(np.mean((probs.argmax(axis=1) != labels) & (probs.max(axis=1) > above)))


def selective(probs: np.ndarray, labels, threshold: float) -> dict:
    """{"coverage": share answered (top probability >= threshold), "accuracy": accuracy of those answers (None if none)}."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    given = probs.max(axis=1) >= threshold
    right = probs.argmax(axis=1) == labels
    return {"coverage": float(given.mean()) if len(labels) else None,
            "accuracy": float(right[given].mean()) if given.any() else None}


def abstain_threshold(probs: np.ndarray, labels, precision: float = PRECISION) -> float:
    """THRESHOLD_RULE: the lowest threshold t (one of the validation top probabilities, or 0) whose answers
    (top probability >= t) are at least `precision` right; 1.0 (always "not sure") if no threshold is."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    if len(labels) == 0:
        return 0.0
    conf, right = probs.max(axis=1), probs.argmax(axis=1) == labels
    order = np.argsort(-conf, kind="stable")
    conf, right = conf[order], right[order]
    kept_right = np.cumsum(right)  # answers given at threshold conf[i]: the i+1 most confident
    ok = kept_right / np.arange(1, len(conf) + 1) >= precision
    # a threshold between two equal confidences cannot split them: only the last of a run of equal values counts
    last = np.r_[conf[1:] != conf[:-1], True]
    good = np.flatnonzero(ok & last)
    if len(good) == 0:
        return 1.0
    t = float(conf[good[-1]])
    return 0.0 if good[-1] == len(conf) - 1 else round(t, 6)


def coverage_curve(probs: np.ndarray, labels, points: int = 50) -> dict:
    """Accuracy of the answers given against the share answered, as the threshold rises (for calibration.png)."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    conf, right = probs.max(axis=1), probs.argmax(axis=1) == labels
    order = np.argsort(-conf, kind="stable")
    acc = np.cumsum(right[order]) / np.arange(1, len(conf) + 1)
    idx = np.unique(np.linspace(0, len(conf) - 1, min(points, len(conf))).astype(int)) if len(conf) else np.array([], int)
    return {"coverage": [float((i + 1) / len(conf)) for i in idx], "accuracy": [float(acc[i]) for i in idx]}


def summary(val_logp: np.ndarray, val_labels, test_logp: np.ndarray | None, test_labels) -> dict:
    """Fit the temperature and the threshold on validation; measure both splits before and after.

    {"temperature", "threshold", "rules": {...}, "val"/"test": {"ece_before", "ece_after", "nll_before", "nll_after",
    "confident_mistakes_before", "confident_mistakes_after", "answered": selective(...) at the threshold}}."""
    t = fit_temperature(val_logp, val_labels)
    val_after = np.exp(scaled(val_logp, t))
    threshold = abstain_threshold(val_after, val_labels)
    out = {"temperature": t, "threshold": threshold, "rules": {"temperature": TEMPERATURE_RULE, "threshold": THRESHOLD_RULE,
                                                              "ece": f"{BINS} equal-width bins of the top probability",
                                                              "confident_mistake": f"wrong with top probability > {CONFIDENT:.0%}"}}
    for name, logp, labels in (("val", val_logp, val_labels), ("test", test_logp, test_labels)):
        if logp is None or len(labels) == 0:
            continue
        before, after = np.exp(scaled(logp, 1.0)), np.exp(scaled(logp, t))
        out[name] = {"n": int(len(labels)), "ece_before": ece(before, labels), "ece_after": ece(after, labels),
                     "nll_before": nll(scaled(logp, 1.0), labels), "nll_after": nll(scaled(logp, t), labels),
                     "confident_mistakes_before": confident_mistakes(before, labels),
                     "confident_mistakes_after": confident_mistakes(after, labels),
                     "answered": selective(after, labels, threshold)}
        if name == "test":  # what calibration.png draws
            out[name].update(reliability_before=reliability(before, labels), reliability_after=reliability(after, labels),
                             coverage_curve=coverage_curve(after, labels))
    return out
