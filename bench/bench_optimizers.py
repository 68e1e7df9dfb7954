"""Optimizer figures, printed (not timed tests).

    python bench/bench_optimizers.py                   # step time of each optimizer written here (and of Paddle's
                                                       # nadam/radam/asgd/rprop) ÷ its nearest built-in; qhm's rule
                                                       # path (fused=False) and muon with 1 Newton–Schulz step, for contrast
    python bench/bench_optimizers.py --pairs muon,adan # only these (the first name of each pair)
    python bench/bench_optimizers.py --check-defaults  # every registry optimizer, its DEFAULTS, a short
                                                       # training on a learnable synthetic image set

Step time is optimizer.step() alone on the default model's parameters (smallcnn, 4 classes) with fixed
random gradients; each pair is measured interleaved in the same run and reported as a ratio of medians.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import models  # noqa: E402  (first: quiets Paddle)
import numpy as np  # noqa: E402
import paddle  # noqa: E402
from tqdm import tqdm  # noqa: E402

from train.optimizers import NAMES, QHM, create, hyperparams  # noqa: E402

# (optimizer, its overrides, nearest built-in, its overrides): the built-in whose rule it extends or replaces
PAIRS = (("qhm", {}, "momentum", {}), ("qhadam", {}, "adam", {}), ("lookahead", {"inner": "sgd"}, "sgd", {}),
         ("qhm", {"fused": False}, "momentum", {}),
         ("nadam", {}, "adam", {}), ("radam", {}, "adam", {}), ("asgd", {}, "sgd", {}), ("rprop", {}, "sgd", {}),
         ("sf_sgd", {}, "momentum", {}), ("sf_adamw", {}, "adamw", {}), ("muon", {}, "adamw", {}),
         ("muon", {"ns_steps": 1}, "adamw", {}), ("adan", {}, "adamw", {}), ("prodigy", {}, "adamw", {}),
         ("adopt", {}, "adam", {}), ("cautious", {}, "adamw", {}))


def _with_grads(name, overrides, grads):
    model = models.build_model("smallcnn", len(models.CLASSES))
    params = [p for p in model.parameters() if not p.stop_gradient]
    for p, g in zip(params, grads):
        p.grad = paddle.to_tensor(g)  # stays put: step() never clears it
    if overrides.get("fused") is False:  # QHM's rule (QHM._update) instead of its fast path
        return QHM(model.parameters(), **hyperparams(name), fused=False)
    return create(name, model.parameters(), **overrides)


def step_seconds(opt, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        opt.step()
    return (time.perf_counter() - t0) / n


def _label(name: str, overrides: dict) -> str:
    if "inner" in overrides:
        return f"{name}({overrides['inner']})"
    if "fused" in overrides:
        return f"{name}(rule)"
    return f"{name}({overrides['ns_steps']} NS)" if "ns_steps" in overrides else name


def bench_steps(rounds: int, steps: int, warmup: int, only=None) -> None:
    paddle.seed(0)
    shapes = [p.shape for p in models.build_model("smallcnn", 4).parameters() if not p.stop_gradient]
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(s).astype("float32") * 1e-3 for s in shapes]
    print(f"smallcnn: {len(shapes)} trainable tensors, {sum(int(np.prod(s)) for s in shapes):,} values; "
          f"{warmup} warm-up steps, then {rounds} interleaved rounds x {steps} steps, medians")
    for ours, o_kw, base, b_kw in PAIRS:
        if only and ours not in only:
            continue
        a, b = _with_grads(ours, o_kw, grads), _with_grads(base, b_kw, grads)
        step_seconds(a, warmup), step_seconds(b, warmup)  # warm-up: state buffers, allocator caches
        ta, tb = [], []
        for _ in range(rounds):  # interleaved so that machine load hits both alike
            ta.append(step_seconds(a, steps))
            tb.append(step_seconds(b, steps))
        ma, mb = statistics.median(ta), statistics.median(tb)
        print(f"{_label(ours, o_kw):>15} / {base:<8}: {ma * 1e6:8.1f} us / {mb * 1e6:8.1f} us = {ma / mb:.2f}", flush=True)


def synthetic_images(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A learnable 4-class set: class = shape (disc, square, horizontal bars, vertical bars) drawn in a
    random colour at a random place and scale on a noisy random background; colour carries no signal."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    xs = np.empty((n, size, size, 3), np.uint8)
    ys = rng.integers(0, 4, n)
    for i, c in enumerate(ys):
        img = rng.uniform(0, 255, 3) * 0.5 + rng.normal(0, 30, (size, size, 3))
        r = rng.uniform(0.15, 0.3) * size
        cy, cx = rng.uniform(r, size - r, 2)
        if c == 0:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        elif c == 1:
            mask = (abs(yy - cy) < r * 0.85) & (abs(xx - cx) < r * 0.85)
        else:
            inside = (abs(yy - cy) < r) & (abs(xx - cx) < r)
            mask = inside & ((((yy if c == 2 else xx) // max(2, r // 3)) % 2) == 0)
        img[mask] = rng.uniform(0, 255, 3)
        xs[i] = np.clip(img, 0, 255)
    return models.Preprocessing(size).normalize(xs), ys.astype("int64")


def check_defaults(epochs: int, n_train: int, size: int, batch: int, names, lrs: dict) -> None:
    """Train smallcnn once per optimizer with its DEFAULTS (learning rate overridden by `lrs`) and cosine
    decay per epoch; print validation accuracy after each epoch (Schedule-Free: at x, BatchNorm statistics
    recomputed there by one pass over the training batches)."""
    xtr, ytr = synthetic_images(n_train, size, 1)
    xva, yva = synthetic_images(n_train // 3, size, 2)
    print(f"synthetic shapes, {n_train} train / {len(yva)} val, {size} px, batch {batch}, {epochs} epochs, "
          "cosine lr per epoch; chance = 0.25")
    print(f"{'optimizer':>10} {'lr':>8} " + " ".join(f"{'val@' + str(e + 1):>7}" for e in range(epochs)) + "  final train loss")
    for name in names:
        paddle.seed(0)
        model = models.build_model("smallcnn", 4)
        overrides = {"learning_rate": lrs[name]} if name in lrs else {}
        opt = create(name, model.parameters(), **overrides)
        base_lr = hyperparams(name, **overrides)["learning_rate"]
        order = np.random.default_rng(0)
        accs = []
        for e in range(epochs):
            opt.set_lr(base_lr * 0.5 * (1 + math.cos(math.pi * e / epochs)))
            model.train()
            perm = order.permutation(n_train)
            losses = []
            for s in tqdm(range(0, n_train - batch + 1, batch), desc=f"{name} epoch {e + 1}", leave=False):
                idx = perm[s:s + batch]
                loss = paddle.nn.functional.cross_entropy(model(paddle.to_tensor(xtr[idx])), paddle.to_tensor(ytr[idx]))
                loss.backward()
                opt.step()
                opt.clear_grad()
                losses.append(float(loss))
            if hasattr(opt, "eval"):  # Schedule-Free: validate at x, with BatchNorm statistics recomputed there
                opt.eval()
                with paddle.no_grad():
                    for s in range(0, n_train - batch + 1, batch):
                        model(paddle.to_tensor(xtr[perm[s:s + batch]]))
            model.eval()
            with paddle.no_grad():
                pred = np.concatenate([model(paddle.to_tensor(xva[s:s + 256])).argmax(1).numpy()
                                       for s in range(0, len(xva), 256)])
            accs.append(float((pred == yva).mean()))
            if hasattr(opt, "eval"):
                opt.train()
        print(f"{name:>10} {base_lr:>8g} " + " ".join(f"{a:7.3f}" for a in accs) + f"  {np.mean(losses[-5:]):.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check-defaults", action="store_true", help="short training with every optimizer's defaults")
    ap.add_argument("--rounds", type=int, default=15, help="step-time rounds per optimizer (default 15)")
    ap.add_argument("--steps", type=int, default=20, help="steps per round (default 20)")
    ap.add_argument("--warmup", type=int, default=300, help="warm-up steps per optimizer (default 300): the first "
                    "steps are slow while the allocator settles, the steady state is what training sees")
    ap.add_argument("--epochs", type=int, default=3, help="--check-defaults: epochs (default 3)")
    ap.add_argument("--n-train", type=int, default=1536, help="--check-defaults: training images (default 1536)")
    ap.add_argument("--image-size", type=int, default=64, help="--check-defaults: image size (default 64)")
    ap.add_argument("--batch-size", type=int, default=64, help="--check-defaults: batch size (default 64)")
    ap.add_argument("--optimizers", default=",".join(NAMES), help="--check-defaults: comma list (default all)")
    ap.add_argument("--pairs", default="", help="step time: only the pairs whose first optimizer is in this comma list")
    ap.add_argument("--lr", action="append", default=[], metavar="NAME=LR",
                    help="--check-defaults: use this learning rate instead of the default (repeatable)")
    a = ap.parse_args()
    names = [n for n in a.optimizers.split(",") if n]
    lrs = {}
    for item in a.lr:
        name, _, value = item.partition("=")
        try:
            lrs[name] = float(value)
        except ValueError:
            ap.error(f"--lr wants NAME=LR, got {item!r}")
    bad = [n for n in names + list(lrs) if n not in NAMES]
    if bad:
        ap.error(f"unknown optimizer(s) {', '.join(bad)}; choose from {', '.join(NAMES)}")
    paddle.set_device("cpu")
    if a.check_defaults:
        check_defaults(a.epochs, a.n_train, a.image_size, a.batch_size, names, lrs)
    else:
        bench_steps(a.rounds, a.steps, a.warmup, [n for n in a.pairs.split(",") if n])


if __name__ == "__main__":
    main()
