"""Wall time of the default sweep on a Kaggle-sized dataset, first run (decoding included) and rerun.

    python bench/bench_sweep.py                     # all optimizers, default profile
    python bench/bench_sweep.py --optimizers sgd,adam --epochs 1   # a quicker look
    python bench/bench_sweep.py --model smallcnn                   # the from-scratch profile

Generates 11,421 JPEGs of 300x250 px in the Kaggle layout from the real labels.csv (once), then runs
`train/run_all.py` exactly as a user would, with a fresh decode cache and run directory, and again.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.kaggle_like import kaggle_like  # noqa: E402
from models import rundir  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--optimizers", default=None, help="default: all (the sweep's default)")
    p.add_argument("--epochs", default=None, help="default: the sweep's default")
    p.add_argument("--model", default=None, help="default: the sweep's default (efficientnet_lite0)")
    a = p.parse_args()
    data = kaggle_like()
    work = tempfile.mkdtemp(prefix="bench-sweep-")
    cmd = [sys.executable, os.path.join(ROOT, "train", "run_all.py"), "--data", data, "--out", os.path.join(work, "run"),
           "--cache-dir", os.path.join(work, "cache")]
    cmd += ["--optimizers", a.optimizers] if a.optimizers else []
    cmd += ["--epochs", a.epochs] if a.epochs else []
    cmd += ["--model", a.model] if a.model else []
    try:
        t = time.perf_counter()
        subprocess.run(cmd, check=True)
        first = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        again = time.perf_counter() - t
        run = rundir.read(os.path.join(work, "run"))  # the run-folder contract, as export reads it
        res = run.results()["optimizers"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    s, data = run.settings, run.data
    train_s = sum(r.get("train_seconds", 0) for r in res.values())
    print(f"\nprofile: {s['model']} ({s['finetune']}) {run.image_size}px, {s['epochs']} epochs, batch {s['batch_size']}, "
          f"test-time views {s['tta']}, {len(res)} optimizers, {sum(data['sizes'].values())} images ({data['sizes']})")
    feats = data.get("features") or {}
    print(f"first run (decode + features + train + eval): {first / 60:.1f} min   (target <= 30 min)")
    print(f"  decoding {data.get('decode_seconds') or 0:.0f} s; feature extraction "
          f"{feats.get('seconds', 0):.0f} s ({feats.get('images', 0)} images, {feats.get('images_per_s', 0)} img/s, "
          f"{feats.get('engine', 'none')}); training epochs {train_s / 60:.1f} min, per optimizer {train_s / len(res):.1f} s")
    print(f"same command again: {again:.1f} s   (target < 10 s)")


if __name__ == "__main__":
    main()
