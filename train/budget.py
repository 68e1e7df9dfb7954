"""A time budget instead of protocol flags (`--budget MINUTES`): the richest comparison protocol that fits.

The protocols, poorest to richest (the order DeepOBS and Schmidt et al. 2021 suggest: defaults first, then repeats,
then a learning-rate search):

    defaults              every optimizer once, at its registry default (the plain sweep; --budget 0)
    3 seeds               ... repeated with 3 seeds: means, intervals over training randomness, tie groups
    LR search + 3 seeds   each optimizer's learning rate chosen on validation (train/tune.py), then 3 seeds
    LR search + 5 seeds   the same with 5 seeds

Once the data are ready (decoded, and the frozen part's features cached), the driver measures on this machine and
these data what one epoch of each optimizer costs (`measure`: a few real training steps, one validation pass, one
checkpoint write, the test and calibration at the end), estimates each protocol from it (`estimate`: a search is
`nominal_cost` full trainings before early stopping, train/tune.py), and runs the richest one whose estimate fits
the budget left (`choose`). At the end it says estimated vs actual. --tune, --seeds and --target force a
protocol; a resumed run keeps the protocol it was given (config.json "protocol").
"""
from __future__ import annotations

import math
import os
import tempfile
import time

import numpy as np

from train import tune

PROTOCOLS = (("defaults", False, 1), ("3 seeds", False, 3), ("LR search + 3 seeds", True, 3), ("LR search + 5 seeds", True, 5))
DEFAULT_MINUTES = {"cpu": 10.0, "gpu": 30.0}  # what the default command may take (the reasons: docs/tune.md)
REPORT_SECONDS = 15.0  # results.json, the tables and the figures at the end (measured: 8-15 s for 25 optimizers)
PROBE_STEPS = 12  # training steps timed per optimizer


def measure(sw, names) -> dict:
    """Seconds, per optimizer, of the pieces one training of it is made of, measured here on the run's data:
    {"train_epoch", "eval", "save", "finish"} (the validation pass and the test + calibration at the end cost the
    same for every optimizer: measured once) and "probe_seconds", the time measuring took."""
    from train import loop, optimizers
    from train.data import batches, eval_batches
    from util.io import save_paddle

    t0 = time.perf_counter()
    plan, splits, setup = sw.plan, sw.splits, sw.setup
    whole, model = setup.build(sw.init_state)
    steps = math.ceil(len(splits["train"]) / plan.batch_size)
    t = time.perf_counter()
    loop.log_probabilities(model, eval_batches(splits["val"], 256, setup.spec, setup.tta))
    eval_s = time.perf_counter() - t
    t = time.perf_counter()
    loop.log_probabilities(model, eval_batches(splits["test"], 256, setup.spec, setup.tta))
    finish_s = 2 * (time.perf_counter() - t) + eval_s  # test (twice: measure, predictions) + validation (calibration)
    with tempfile.TemporaryDirectory(prefix="budget-") as tmp:
        t = time.perf_counter()
        save_paddle(whole.state_dict(), os.path.join(tmp, "best"))
        save_paddle({"model": whole.state_dict()}, os.path.join(tmp, "last"))
        save_s = time.perf_counter() - t
    out = {}
    for name in names:
        _, model = setup.build(sw.init_state)
        opt = optimizers.create(name, model.parameters(), **sw.hps[name])
        model.train()
        rng = np.random.default_rng([plan.seed, 99])
        timed, n = 0.0, 0
        for k, (x, y) in enumerate(batches(splits["train"], plan.batch_size, setup.spec, rng, augment=True)):
            if k > PROBE_STEPS:
                break
            t = time.perf_counter()
            try:
                loop.train_step(model, opt, x, y)
            except loop.Diverged:
                pass
            if k:  # the first step builds kernels and state: not a steady step
                timed, n = timed + time.perf_counter() - t, n + 1
        step_s = timed / max(1, n)
        out[name] = {"train_epoch": steps * step_s, "eval": eval_s, "save": save_s, "finish": finish_s}
    return {"per_optimizer": out, "probe_seconds": round(time.perf_counter() - t0, 2)}


def training_seconds(cost: dict, epochs: int, share: float = 1.0) -> float:
    """One training of `epochs` epochs on `share` of the training split (a learning-rate trial trains on a subset)."""
    return epochs * (share * cost["train_epoch"] + cost["eval"] + cost["save"]) + cost["finish"]


def estimate(costs: dict, names, epochs: int, tune_schedule: dict, search: bool, seeds: int) -> float:
    """Seconds the training of a protocol takes (search trials before early stopping: an upper bound)."""
    total = 0.0
    for name in names:
        c = costs["per_optimizer"][name]
        total += seeds * training_seconds(c, epochs)
        if search:
            share = tune_schedule["subset_size"] / tune_schedule["train_size"]
            total += tune.GRID_POINTS * training_seconds(c, tune_schedule["trial_epochs"], share)
    return total + REPORT_SECONDS


def choose(costs: dict, names, epochs: int, tune_schedule: dict, seconds_left: float) -> dict:
    """The richest protocol whose estimate fits `seconds_left` (the poorest one when none does), with every estimate."""
    options = [{"name": name, "tune": search, "seeds": seeds,
                "estimated_seconds": round(estimate(costs, names, epochs, tune_schedule, search, seeds), 1)}
               for name, search, seeds in PROTOCOLS]
    fitting = [o for o in options if o["estimated_seconds"] <= seconds_left]
    chosen = fitting[-1] if fitting else options[0]
    why = (f"the richest protocol whose estimate ({chosen['estimated_seconds'] / 60:.1f} min) fits the "
           f"{seconds_left / 60:.1f} min left of the budget" if fitting else
           f"no protocol fits the {seconds_left / 60:.1f} min left of the budget: the plain sweep, the least there is")
    return {**chosen, "why": why, "options": options}


def line(protocol: dict, n: int) -> str:
    """The plan in one line: 'fits in ~6 min: LR search (7 rates) + 3 seeds for 25 optimizers'."""
    what = {"defaults": "every optimizer at its default", "3 seeds": "3 seeds",
            "LR search + 3 seeds": f"LR search ({tune.GRID_POINTS} rates) + 3 seeds",
            "LR search + 5 seeds": f"LR search ({tune.GRID_POINTS} rates) + 5 seeds"}[protocol["name"]]
    fits = "fits" if protocol.get("fits", True) else "does not fit; runs anyway"
    return f"{fits} in ~{protocol['estimated_total_seconds'] / 60:.0f} min: {what} for {n} optimizers"
