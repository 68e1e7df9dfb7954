"""Checkpoint load time: the one safe loader (util.io.load_paddle, an allow-list unpickler) against paddle.load.

    python bench/bench_load.py                      # efficientnet_lite0 (whole network), 4 classes
    python bench/bench_load.py --model smallcnn --repeats 50

Writes, in a temporary folder, the two checkpoints training writes for one optimizer: best.pdparams (the whole
network's state dict) and last.pdstate (model + Adam state + epoch, best, history), then loads each with both
loaders in turn, `--repeats` times, and prints the median times and their ratio (same process, same files).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import models  # noqa: E402  (first: quiets Paddle)
from models import rundir  # noqa: E402
import paddle  # noqa: E402

from train import optimizers  # noqa: E402
from util.io import load_paddle, save_paddle  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=models.cards.DEFAULT, choices=models.MODELS)
    p.add_argument("--repeats", type=int, default=20)
    a = p.parse_args()
    net = models.build_model(a.model, 4)
    opt = optimizers.create("adam", net.parameters())
    net(paddle.randn([2, 3, 64, 64])).mean().backward()
    opt.step()
    history = [{"epoch": e, "train_loss": 0.5, "val_acc": 0.9, "seconds": 1.0} for e in range(1, 11)]
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        files = {rundir.CHECKPOINT: net.state_dict(),
                 rundir.LAST: {"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 10,
                                  "history": history, "best": {"val_acc": 0.9, "epoch": 10}}}
        for name, obj in files.items():
            path = os.path.join(tmp, name)
            save_paddle(obj, path)
            times = {"paddle.load": [], "load_paddle": []}
            for _ in range(a.repeats):
                for label, load in (("paddle.load", paddle.load), ("load_paddle", load_paddle)):
                    t = time.perf_counter()
                    load(path)
                    times[label].append(time.perf_counter() - t)
            ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
            print(f"{a.model} {name} ({os.path.getsize(path) / 1e6:.1f} MB): paddle.load {ms['paddle.load']:.1f} ms, "
                  f"load_paddle {ms['load_paddle']:.1f} ms; safe / paddle.load = {ms['load_paddle'] / ms['paddle.load']:.2f}"
                  f"  (median of {a.repeats})")


if __name__ == "__main__":
    main()
