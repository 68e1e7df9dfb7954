"""Per-optimizer learning-rate search on the validation split (`--tune`; the driver is train/compare.py).

For each optimizer a grid of 7 learning rates half a decade apart, centred on its registry default (or its
--lr): centre × 10^-1.5 ... centre × 10^1.5, three decades. Each trial is an ordinary resumable `train_one`
into runs/<run>/tune/<optimizer>/lr_<value>/ on a short budget: epochs and a fixed class-stratified training
subset both shrink by √(budget / 7), so the 7 trials together cost `budget` full trainings of that optimizer
before early stopping. Trials get the train subset and the validation split only: the test split is not even
handed to them. They run centre first, then outwards; a trial stops early when it is clearly worse than the
best earlier trial at the same epoch (STOP_RULE: less than half of its gain over the no-skill rate, and more
than two standard errors of the validation-accuracy difference behind it, from half-way through the trial
on); diverging trials stop by themselves. The chosen rate is the finished trial with the best final
validation accuracy (ties: lower validation loss, then closer to the centre).
"""
from __future__ import annotations

import math
import os
from dataclasses import replace

import numpy as np

from models import rundir
from util.io import read_json

GRID_POINTS = 7  # half a decade apart: 10^-1.5 .. 10^1.5 around the centre, three decades
DEFAULT_BUDGET = 1.5  # bench/bench_tune.py: search ÷ plain sweep stays well under 3 with this
TARGET_SHARE = 0.95  # time to accuracy (train/compare.py), by default: this share of the best final mean val acc
STOP_RULE = ("from epoch e >= trial_epochs // 2 on, stop when val acc v < no_skill + 0.5 × (b − no_skill) and "
             "b − v > 2 × sqrt((b(1−b) + v(1−v)) / n_val), b = best earlier trial's val acc at epoch e, "
             "no_skill = majority-class share of the validation split")


def grid(centre: float) -> list[float]:
    """GRID_POINTS learning rates half a decade apart around `centre` (3 significant digits; centre exact)."""
    half = GRID_POINTS // 2
    return [centre if k == 0 else float(f"{centre * 10 ** (k / 2):.3g}") for k in range(-half, half + 1)]


def schedule(budget: float, epochs: int, n_train: int, batch_size: int) -> dict:
    """Trial epochs and training-subset size for a search costing `budget` full trainings per optimizer."""
    share = budget / GRID_POINTS
    trial_epochs = max(1, min(epochs, round(epochs * math.sqrt(share))))
    size = min(n_train, max(min(batch_size, n_train), math.ceil(n_train * min(1.0, share * epochs / trial_epochs))))
    return {"budget": budget, "grid_points": GRID_POINTS, "trial_epochs": trial_epochs, "subset_size": size,
            "train_size": n_train, "nominal_cost": round(GRID_POINTS * trial_epochs * size / (epochs * n_train), 3),
            "order": "centre first, then outwards", "stop_rule": STOP_RULE}


def subset(split, size: int, seed: int):
    """A fixed class-stratified subset of about `size` images (the same for every trial and optimizer)."""
    if size >= len(split):
        return split
    order = np.random.default_rng([seed, 6]).permutation(len(split))
    labels = split.labels[order]
    keep = []
    for c in np.unique(labels):
        members = order[labels == c]
        keep.append(members[:max(1, round(size * len(members) / len(split)))])
    idx = np.sort(np.concatenate(keep))
    return split.subset(idx)


def _search_order(lrs: list[float]) -> list[float]:
    mid = len(lrs) // 2
    return [lrs[i] for i in sorted(range(len(lrs)), key=lambda i: (abs(i - mid), i))]


def clearly_worse(references: list[list[float]], no_skill: float, n_val: int, grace: int = 1):
    """stop(history) for train_one: see STOP_RULE. references: val-accuracy curves of earlier trials;
    grace: the fewest epochs a trial runs."""
    def stop(history):
        e, v = len(history), history[-1]["val_acc"]
        best = max((r[e - 1] for r in references if len(r) >= e), default=None)
        if e < grace or best is None or best <= no_skill:
            return None
        bar = min(no_skill + 0.5 * (best - no_skill), best - 2 * math.sqrt((best * (1 - best) + v * (1 - v)) / max(1, n_val)))
        return f"stopped early after epoch {e}: val {100 * v:.1f}% < {100 * bar:.1f}%" if v < bar else None
    return stop


def search_config(old: dict | None, names, hps: dict, budget: float, epochs: int, n_train: int, batch_size: int) -> dict:
    """config.json["tune"]: the search schedule and every optimizer's grid (earlier invocations' kept)."""
    grids = dict((old or {}).get("grids", {}))
    grids.update({n: grid(hps[n]["learning_rate"]) for n in names})
    return {**schedule(budget, epochs, n_train, batch_size), "grids": grids}


def search(name: str, run: str, job, config: dict, position: str) -> dict:
    """Run (or reuse) every trial of `name`'s grid around job.hyperparams (the trials train a short schedule on a
    training subset, validation only: config is config.json's "tune") and return the chosen hyperparameters."""
    from train.loop import train_one

    centre_hp, splits, seed = job.hyperparams, job.splits, job.seed
    lrs = grid(centre_hp["learning_rate"])
    trial_splits, no_skill, n_val = None, 0.0, 0
    if splits is not None:  # None: everything is done already (run_all loads no data then)
        if len(splits["val"]) == 0:
            raise ValueError("--tune chooses on the validation split, and this dataset has no validation images")
        trial_splits = {"train": subset(splits["train"], config["subset_size"], seed), "val": splits["val"]}  # no test split
        n_val = len(splits["val"])
        no_skill = float(np.bincount(splits["val"].labels).max() / max(1, n_val))
    references = []
    for j, lr in enumerate(_search_order(lrs), 1):
        folder = rundir.trial_dir(run, name, lr)
        trial = replace(job, hyperparams={**centre_hp, "learning_rate": lr}, splits=trial_splits, epochs=config["trial_epochs"])
        train_one(name, folder, trial, position=f"{position}tune {j}/{len(lrs)} lr={lr:g} ",
                  stop=clearly_worse(list(references), no_skill, n_val, max(1, config["trial_epochs"] // 2)))
        references.append([h["val_acc"] for h in read_json(os.path.join(folder, rundir.HISTORY), [])])
    return {**centre_hp, "learning_rate": choose(trials(run, name, lrs), centre_hp["learning_rate"])}


def trials(run: str, name: str, lrs: list[float]) -> list[dict]:
    """One row per grid point (ascending learning rate), read from the trial folders."""
    rows = []
    for lr in lrs:
        folder = rundir.trial_dir(run, name, lr)
        r = read_json(os.path.join(folder, rundir.RESULT))
        h = read_json(os.path.join(folder, rundir.HISTORY), [])
        rows.append({"lr": lr, "status": r["status"] if r else "not run", "epochs_run": len(h),
                     "final_val_acc": h[-1]["val_acc"] if h else None, "final_val_loss": h[-1]["val_loss"] if h else None,
                     "best_val_acc": r.get("best_val_acc") if r else None,
                     "train_seconds": r.get("train_seconds", 0.0) if r else 0.0, "test_acc": r.get("test_acc") if r else None})
    return rows


def choose(rows: list[dict], centre: float) -> float:
    """The learning rate of the best trial: finished ('done') first, then final val acc, lower final val
    loss, closeness to the centre, smaller rate."""
    missing = [r["lr"] for r in rows if r["status"] == "not run"]
    if missing:
        raise RuntimeError(f"learning-rate trial(s) {', '.join(f'{v:g}' for v in missing)} did not finish")

    def key(r):
        acc = r["final_val_acc"] if r["final_val_acc"] is not None else -1.0
        loss = r["final_val_loss"] if r["final_val_loss"] is not None and math.isfinite(r["final_val_loss"]) else math.inf
        return (r["status"] == "done", acc, -loss, -abs(math.log(r["lr"] / centre)), -r["lr"])

    return max(rows, key=key)["lr"]


