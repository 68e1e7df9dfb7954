"""Data-pipeline overhead and model FLOPs utilisation of the training loop, on this machine.

    python bench/bench_pipeline.py [--steps 60] [--size 64] [--batch-size 64]

Prints: end-to-end training images/s (cached uint8 -> shuffle/flip -> normalize -> tensor -> step) ÷
images/s of the same step on tensors already in memory (target >= 0.90), and training FLOP/s ÷ this
machine's sgemm FLOP/s (Paddle's matmul and numpy's, measured in the same run).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import models  # noqa: E402
from util import runtime  # noqa: E402
import numpy as np  # noqa: E402
import paddle  # noqa: E402

from bench.kaggle_like import kaggle_like  # noqa: E402
from models.dataset import open_dataset  # noqa: E402
from train import optimizers  # noqa: E402
from train.data import batches, load_splits  # noqa: E402
from train.loop import train_step  # noqa: E402


def sgemm_flops(n: int = 1024, reps: int = 20) -> tuple[float, float]:
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    x = paddle.to_tensor(a)
    paddle.matmul(x, x).numpy()
    t = time.perf_counter()
    for _ in range(reps):
        paddle.matmul(x, x).numpy()
    pd = reps * 2 * n ** 3 / (time.perf_counter() - t)
    a @ a
    t = time.perf_counter()
    for _ in range(reps):
        a @ a
    return pd, reps * 2 * n ** 3 / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--size", type=int, default=48, help="image size (smallcnn's default)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--rounds", type=int, default=3, help="alternate the two measurements this many times; best of each")
    a = p.parse_args()
    runtime.pick_device("auto")
    spec = models.preprocessing("smallcnn", a.size)
    splits, _ = load_splits(open_dataset(kaggle_like()), spec, models.cache_root())
    train = splits["train"]
    model = models.build_model("smallcnn", 4)
    opt = optimizers.create(a.optimizer, model.parameters())
    with contextlib.redirect_stdout(io.StringIO()):
        fwd = paddle.flops(model, [1, 3, a.size, a.size], print_detail=False)
    resident = [(paddle.to_tensor(x), paddle.to_tensor(y)) for x, y in batches(train, a.batch_size, spec)][:8]
    resident = [b for b in resident if len(b[1]) == a.batch_size]

    def in_memory():
        t = time.perf_counter()
        for i in range(a.steps):
            train_step(model, opt, *resident[i % len(resident)])
        return a.steps * a.batch_size / (time.perf_counter() - t)

    def end_to_end():
        rng = np.random.default_rng(0)
        t, n = time.perf_counter(), 0
        for i, (x, y) in enumerate(batches(train, a.batch_size, spec, rng, augment=True)):
            if i == a.steps:
                break
            train_step(model, opt, x, y)
            n += len(y)
        return n / (time.perf_counter() - t)

    in_memory()  # warm-up
    mem, e2e = [], []
    for _ in range(a.rounds):
        mem.append(in_memory())
        e2e.append(end_to_end())
    pd_sgemm, np_sgemm = sgemm_flops()
    train_flops = 3 * fwd * max(e2e)  # forward + backward ~ 3x forward FLOPs
    print(f"model smallcnn {a.size}px, batch {a.batch_size}, {a.optimizer}; forward {fwd / 1e6:.1f} MFLOP/image")
    print(f"in-memory tensors : {max(mem):7.1f} img/s")
    print(f"end-to-end loader : {max(e2e):7.1f} img/s")
    print(f"pipeline ratio    : {max(e2e) / max(mem):.3f}   (target >= 0.90)")
    print(f"training          : {train_flops / 1e9:.2f} GFLOP/s")
    print(f"sgemm paddle/numpy: {pd_sgemm / 1e9:.1f} / {np_sgemm / 1e9:.1f} GFLOP/s (1024x1024 float32)")
    print(f"MFU               : {train_flops / pd_sgemm:.3f} of Paddle sgemm, {train_flops / np_sgemm:.3f} of numpy sgemm")


if __name__ == "__main__":
    main()
