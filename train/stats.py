"""Statistics for comparing optimizers: one checkpoint each on the test split, or several seeds.

One checkpoint per optimizer (the plain sweep): the test accuracy of a fixed checkpoint is a binomial
proportion over the test images, so its 95% interval is the Wilson score interval (Wilson 1927; good
coverage even near 0 or 1 and for small n, unlike the normal approximation). Two checkpoints scored on
the same images are compared with the exact McNemar test (McNemar 1947; Dietterich 1998): only the
discordant images count (one right, the other wrong); under "equally accurate" each of them is a fair
coin flip. Several comparisons with the winner are Holm-corrected (`holm`). These intervals and tests
are about the finite test set only, not about training randomness: `--seeds` covers both (below).

Several seeds (--seeds): test accuracy varies for two reasons: the training run (initial weights, data order) and the finite test
set. Following Bouthillier et al. 2021 ("Accounting for variance in machine learning benchmarks"), the
confidence intervals and paired tests here resample both at once: seeds with replacement, and test
images with replacement. Two optimizers are compared on the same resampled seeds and images (paired:
seed s means the same initial weights and data order for every optimizer). With one seed this is a plain
paired bootstrap over test images.

    correct = {"adam": np.array([[1, 0, 1, ...], ...]), ...}   # seeds x test images, 1 = right
    ci = bootstrap_ci(correct["adam"])                         # (low, high) of mean accuracy
    p = paired_pvalue(correct["adam"], correct["sgd"])         # two-sided
    groups = tie_groups(["adam", "sgd", "lion"], holm(pvalues))
    # many comparisons: resample each optimizer once, then pvalue(means_a - means_b), interval(means_a)
"""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

ALPHA = 0.05
RESAMPLES = 4000


def describe(values) -> dict:
    """{"n", "mean", "std" (sample, ddof=1; None below 2 values), "values"} of the non-None values."""
    v = [float(x) for x in values if x is not None and math.isfinite(x)]
    if not v:
        return {"n": 0, "mean": None, "std": None, "values": []}
    return {"n": len(v), "mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else None, "values": v}


def resampled_means(rows, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """Mean of `rows` (seeds x test images, 0/1) over `resamples` bootstrap draws of seeds and images.

    The draws depend only on the shape and `seed`: arrays of the same shape are resampled identically,
    so resampled_means(a) - resampled_means(b) is the paired resampling of a - b."""
    rows = np.asarray(rows, dtype=np.float64)
    s, n = rows.shape
    if s == 0 or n == 0:
        raise ValueError("resampling needs at least one seed and one test image")
    rng = np.random.default_rng(seed)
    out = np.empty(resamples)
    for lo in range(0, resamples, 500):
        k = min(500, resamples - lo)
        images = rng.integers(0, n, size=(k, n))  # test images drawn with replacement
        per_seed = rows[:, images].mean(axis=2).T  # k x s: each seed's accuracy on the resampled images
        pick = rng.integers(0, s, size=(k, s))  # seeds drawn with replacement
        out[lo:lo + k] = np.take_along_axis(per_seed, pick, axis=1).mean(axis=1)
    return out


def interval(means: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of resampled means."""
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def pvalue(differences: np.ndarray) -> float:
    """Two-sided p-value of "the mean difference is 0" from resampled differences (a - b); the smallest
    value is 2/(resamples+1), all-zero differences give 1.0."""
    tol = 1e-12
    tail = min(np.sum(differences <= tol), np.sum(differences >= -tol))
    return float(min(1.0, 2 * (tail + 1) / (len(differences) + 1)))


def bootstrap_ci(rows, level: float = 0.95) -> tuple[float, float]:
    """Confidence interval of the mean accuracy of `rows` (seeds x test images, 0/1)."""
    return interval(resampled_means(rows), level)


def paired_pvalue(a, b) -> float:
    """Two-sided p-value of "mean accuracy of a equals that of b" (a, b: seeds x test images, same seeds
    in the same order, same images). Identical inputs give 1.0."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"paired samples differ in shape: {np.shape(a)} vs {np.shape(b)}")
    return pvalue(resampled_means(a) - resampled_means(b))


def holm(pvalues: dict) -> dict:
    """Holm-Bonferroni adjusted p-values (same keys): controls the chance of any false 'different'."""
    keys = sorted(pvalues, key=lambda k: pvalues[k])
    m, running, out = len(keys), 0.0, {}
    for i, k in enumerate(keys):
        running = max(running, min(1.0, (m - i) * pvalues[k]))
        out[k] = running
    return out


def tie_groups(ranked: list[str], p_adjusted: dict, alpha: float = ALPHA) -> list[list[str]]:
    """Split `ranked` (best first) into groups: the best remaining optimizer and every remaining one not
    significantly different from it (adjusted p >= alpha) form a group; repeat with the rest.
    p_adjusted is keyed by (a, b) in either order; a pair without a p-value counts as tied."""
    left, groups = list(ranked), []
    while left:
        lead = left[0]
        group = [n for n in left if n == lead or p_adjusted.get((lead, n), p_adjusted.get((n, lead), 1.0)) >= alpha]
        groups.append(group)
        left = [n for n in left if n not in group]
    return groups


def wilson(correct: int, n: int, level: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion `correct`/`n` (None for n = 0). It always contains the point
    estimate, stays inside [0, 1], and shrinks roughly as 1/sqrt(n)."""
    if n <= 0:
        return None
    if not 0 <= correct <= n:
        raise ValueError(f"correct={correct} must lie in [0, n={n}]")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p, z2 = correct / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    lo = 0.0 if correct == 0 else min(p, centre - half)  # exact ends where rounding would wander
    hi = 1.0 if correct == n else max(p, centre + half)
    return lo, hi


def mcnemar(a_correct, b_correct) -> dict:
    """Exact two-sided McNemar test of "a and b are equally accurate" on the same images (0/1 arrays in
    the same image order): {"a_only": images only a gets right, "b_only": only b, "p"}. p = P(a binomial
    (a_only + b_only, 1/2) count is at least as far from the middle), 1.0 without discordant images."""
    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in shape: {a.shape} vs {b.shape}")
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(b & ~a))
    n, k = a_only + b_only, min(a_only, b_only)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n if n else 0.5
    return {"a_only": a_only, "b_only": b_only, "p": float(min(1.0, 2 * tail))}


def confusion(labels, predicted, num_classes: int) -> np.ndarray:
    """num_classes x num_classes counts: rows the true class, columns the predicted one."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return m


def first_reach(values, target: float) -> int | None:
    """Index of the first value >= target, or None when never reached."""
    for i, v in enumerate(values):
        if v is not None and v >= target:
            return i
    return None
