"""A comparison you can believe (`--tune`, `--seeds`, `--target`): the statistics over seeds (train/driver.py trains).

    python train/run_all.py --tune --seeds 3          # search, then repeat the chosen setting over 3 seeds
    python train/run_all.py --tune --tune-budget 0.5  # a cheaper search

Per optimizer the driver runs the learning-rate search (train/tune.py) when --tune, the primary training, then the
other seeds. Seeds: the chosen setting is trained for the full epochs with seeds SEED .. SEED+N-1:
seed SEED is the primary run in runs/<run>/<optimizer>/ (what export reads), the others in
<optimizer>/seed<s>/. One seed means the same initial weights (runs/<run>/init*.pdparams) and data order for
every optimizer, so results pair up by seed. Each run's test predictions are kept (test_predictions.json)
for the statistics in train/stats.py: mean ± std, bootstrap 95% CI, paired tests, groups of tied optimizers
(group 1: the winner, chosen on mean best validation accuracy, and every optimizer tied with it on the test set).

Time to accuracy: the first epoch at which the mean (over seeds) validation accuracy reaches the target
(default 95% of the best optimizer's final mean validation accuracy), and the mean seconds to get there;
never reached = null in JSON, ∞ on the leaderboard.

Everything is cached like the plain sweep: a trial or seed whose result.json exists is never rerun.
"""
from __future__ import annotations

import math
import os

import numpy as np

from models import rundir
from models.ranking import best_val_loss, ranked
from train import stats, tune
from util.io import read_json


# ---- the comparison -----------------------------------------------------------------------------------------

def summarize(run: str, results: dict, config: dict, plan) -> dict:
    """Add "seeds", "val_curve", "time_to_target", "group" (and "tune") to each row of `results` (in place);
    return the run-level comparison for results.json."""
    seeds = plan.seed_list
    boot = Bootstrap()
    for name, row in results.items():
        _seed_rows(run, name, row, seeds, plan.seed, boot)
        if plan.tune and name in config.get("tune", {}).get("grids", {}):
            lrs = config["tune"]["grids"][name]
            grid = tune.trials(run, name, lrs)
            row["tune"] = {"centre_lr": lrs[len(lrs) // 2], "chosen_lr": row.get("hyperparams", {}).get("learning_rate"),
                           "grid": grid, "sensitivity": sensitivity(grid)}
    target = _time_to_target(results, plan.target)
    out = {"seeds": seeds, "target": target, **_significance(results, boot)}
    if plan.tune:
        out["search"] = _search_cost(results, config["tune"])
    return out


class Bootstrap:
    """Per optimizer and seed, which test images it answers right; bootstrap means made once per (name, seeds)."""

    def __init__(self):
        self.correct, self._cache = {}, {}

    def means(self, name: str, on_seeds: tuple):
        if (name, on_seeds) not in self._cache:
            self._cache[name, on_seeds] = stats.resampled_means(np.stack([self.correct[name][s] for s in on_seeds]))
        return self._cache[name, on_seeds]


def _seed_rows(run: str, name: str, row: dict, seeds: list, base_seed: int, boot: Bootstrap) -> None:
    folders = [rundir.optimizer_dir(run, name, s, base_seed) for s in seeds]
    rs = [read_json(os.path.join(f, rundir.RESULT)) or {"status": "not run"} for f in folders]
    hs = [read_json(os.path.join(f, rundir.HISTORY), []) for f in folders]
    preds = {s: read_json(os.path.join(f, rundir.PREDICTIONS)) for s, f in zip(seeds, folders)}
    boot.correct[name] = {s: np.equal(p["labels"], p["predicted"]).astype(np.int8) for s, p in preds.items() if p}
    have = tuple(sorted(boot.correct[name]))
    row["seeds"] = {"seeds": seeds, "status": [r["status"] for r in rs],
                    "test_acc": stats.describe(r.get("test_acc") for r in rs),
                    "best_val_acc": stats.describe(r.get("best_val_acc") for r in rs),
                    "best_val_loss": stats.describe(best_val_loss(h, r.get("best_epoch")) for r, h in zip(rs, hs)),
                    "train_seconds": stats.describe(r.get("train_seconds") for r in rs),
                    "test_acc_ci95": list(stats.interval(boot.means(name, have))) if have else None}
    row["val_curve"] = _mean_curve([h for h in hs if h])


def _mean_curve(histories: list[list[dict]]) -> dict:
    """Mean ± std over seeds of the validation accuracy per epoch (epochs every seed reached)."""
    n = min((len(h) for h in histories), default=0)
    acc = np.array([[h[e]["val_acc"] for e in range(n)] for h in histories]).reshape(len(histories), n)
    secs = np.array([np.cumsum([h[e]["seconds"] for e in range(n)]) for h in histories]).reshape(len(histories), n)
    return {"epochs": list(range(1, n + 1)), "mean": acc.mean(axis=0).tolist(),
            "std": (acc.std(axis=0, ddof=1) if len(histories) > 1 else np.zeros(n)).tolist(),
            "seconds": secs.mean(axis=0).tolist()}


SENSITIVITY = "the learning rates (of the search's grid) whose trial ends within 1 point of the best trial's final " \
              "validation accuracy: how wide a range they span, in decades (wider: less sensitive)"


def sensitivity(grid: list[dict]) -> dict:
    """SENSITIVITY of one optimizer's search grid: {"within_1pt": [rates], "decades": width}."""
    done = [t for t in grid if t["final_val_acc"] is not None and t["status"] == "done"]
    if not done:
        return {"within_1pt": [], "decades": None, "rule": SENSITIVITY}
    best = max(t["final_val_acc"] for t in done)
    near = sorted(t["lr"] for t in done if t["final_val_acc"] >= best - 0.01)
    return {"within_1pt": near, "decades": round(math.log10(near[-1] / near[0]), 2), "rule": SENSITIVITY}


def time_to_target(results: dict, histories: dict, target_acc: float | None) -> dict:
    """The plain sweep's time to accuracy (one seed): each optimizer's own curve, the same rule as with seeds."""
    for name, row in results.items():
        row["val_curve"] = _mean_curve([histories[name]] if histories.get(name) else [])
    return _time_to_target(results, target_acc)


def _time_to_target(results: dict, target_acc: float | None) -> dict:
    finals = {n: r["val_curve"]["mean"][-1] for n, r in results.items() if r["val_curve"]["mean"]}
    if target_acc is not None:
        target = {"val_acc": target_acc, "rule": "--target"}
    elif finals:
        best = max(finals, key=finals.get)
        target = {"val_acc": tune.TARGET_SHARE * finals[best],
                  "rule": f"{tune.TARGET_SHARE:.0%} of the best final mean val acc ({best})"}
    else:
        target = {"val_acc": None, "rule": "no optimizer finished an epoch"}
    for row in results.values():
        curve = row["val_curve"]
        i = stats.first_reach(curve["mean"], target["val_acc"]) if target["val_acc"] is not None else None
        row["time_to_target"] = {"epochs": None if i is None else i + 1,
                                 "seconds": None if i is None else round(curve["seconds"][i], 2)}
    return target


def _significance(results: dict, boot: Bootstrap) -> dict:
    """Paired bootstrap tests between every two optimizers (in the leaderboard's order: validation chooses),
    Holm-corrected, and the groups of tied optimizers."""
    order = [n for n, _ in ranked(results) if boot.correct[n]]
    raw = {}
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            common = tuple(sorted(set(boot.correct[a]) & set(boot.correct[b])))
            if common:
                raw[(a, b)] = stats.pvalue(boot.means(a, common) - boot.means(b, common))  # paired: same draws
    adjusted = stats.holm(raw)
    groups = stats.tie_groups(order, adjusted)
    for name, row in results.items():
        row["group"] = next((k for k, g in enumerate(groups, 1) if name in g), None)
    return {"groups": groups,
            "significance": {"method": "paired bootstrap over seeds and test images of the test accuracy "
                                       f"({stats.RESAMPLES} resamples), Holm-corrected, alpha {stats.ALPHA}",
                             "pairs": [{"a": a, "b": b, "p": p, "p_holm": adjusted[(a, b)]} for (a, b), p in raw.items()]}}


def _search_cost(results: dict, schedule: dict) -> dict:
    grids = [t for r in results.values() for t in r.get("tune", {}).get("grid", [])]
    search_s = sum(t["train_seconds"] for t in grids)
    sweep_s = sum(r.get("train_seconds") or 0.0 for r in results.values() if "tune" in r)
    return {"trials": len(grids), "stopped_early": sum(t["status"].startswith("stopped") for t in grids),
            "diverged": sum(t["status"].startswith("diverged") for t in grids),
            "search_seconds": round(search_s, 2), "plain_sweep_seconds": round(sweep_s, 2),
            "cost_ratio": round(search_s / sweep_s, 3) if sweep_s else None, **{k: v for k, v in schedule.items() if k != "grids"}}
