"""Cost of the learning-rate search (`run_all.py --tune`, default --tune-budget) against one plain sweep.

    python bench/bench_tune.py [--data ../shared/data/hymenoptera] [--optimizers sgd,momentum,adam,rmsprop]
                               [--epochs 4] [--image-size 64] [--batch-size 64] [--budget DEFAULT]

Runs, on this machine, one after the other and into fresh run directories: the plain sweep and the tuned
sweep (--tune, one seed), same data and settings, decode cache warmed first. Prints
  - search ÷ plain sweep, training time: the trials' epoch seconds ÷ the epoch seconds of the tuned run's
    own final trainings (which are exactly one plain sweep, at the chosen rates): same run, same machine;
  - search ÷ plain sweep, wall clock: (tuned command − plain command) ÷ plain command, all overheads in.
Target: <= 3.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import models  # noqa: E402,F401  (quiets Paddle)
from models import rundir  # noqa: E402
from models.dataset import open_dataset  # noqa: E402
from train.data import load_splits  # noqa: E402
from train.tune import DEFAULT_BUDGET  # noqa: E402

HYMENOPTERA = os.path.join(os.path.dirname(ROOT), "shared", "data", "hymenoptera")


def timed_run(args: list[str]) -> float:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, os.path.join(ROOT, "train", "run_all.py"), *args], cwd=ROOT, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"run_all.py {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=HYMENOPTERA)
    p.add_argument("--optimizers", default="sgd,momentum,adam,rmsprop")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="--tune-budget of the tuned sweep")
    a = p.parse_args()
    cache = models.cache_root()
    load_splits(open_dataset(a.data), models.preprocessing("smallcnn", a.image_size), cache)  # decode once, outside both timings
    common = ["--data", a.data, "--optimizers", a.optimizers, "--epochs", str(a.epochs), "--model", "smallcnn", "--image-size", str(a.image_size),
              "--batch-size", str(a.batch_size), "--cache-dir", cache]
    with tempfile.TemporaryDirectory() as tmp:
        plain_wall = timed_run([*common, "--out", os.path.join(tmp, "plain")])
        tuned_wall = timed_run([*common, "--tune", "--tune-budget", str(a.budget), "--out", os.path.join(tmp, "tuned")])
        plain_train = sum(r["train_seconds"] for r in rundir.read(os.path.join(tmp, "plain")).results()["optimizers"].values())
        s = rundir.read(os.path.join(tmp, "tuned")).results()["comparison"]["search"]
    print(f"data {a.data}; {a.optimizers}; {a.epochs} epochs, {a.image_size}px, batch {a.batch_size}; "
          f"trials: {s['trial_epochs']} epoch(s) on {s['subset_size']}/{s['train_size']} training images")
    print(f"plain sweep      : {plain_wall:7.1f} s wall, {plain_train:7.1f} s training")
    print(f"tuned sweep      : {tuned_wall:7.1f} s wall; search {s['search_seconds']:.1f} s training in {s['trials']} trials "
          f"({s['stopped_early']} stopped early, {s['diverged']} diverged), final trainings {s['plain_sweep_seconds']:.1f} s")
    print(f"search ÷ plain sweep, training time (same run): {s['cost_ratio']:.2f}   (budget {a.budget:g}, target <= 3)")
    print(f"search ÷ plain sweep, wall clock             : {(tuned_wall - plain_wall) / plain_wall:.2f}")


if __name__ == "__main__":
    main()
