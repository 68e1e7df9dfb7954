"""Feature extraction speed of the fine-tuning regimes against ONNX Runtime's raw speed on the same frozen part.

    python bench/bench_features.py                    # head regime (pooled features), 512 images
    python bench/bench_features.py --regime top --images 256

Decoded images in (uint8, as the decode cache holds them), cached features out (train/features.py: normalize
on a second thread, ONNX Runtime on every core, memory-mapped .npy writes, flipped copies of the training
images), divided by ONNX Runtime's own throughput on already-normalized batches of the same size through
the same exported frozen part, measured before and after in the same process. Target: >= 0.8.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import models  # noqa: E402  (first: quiets Paddle)
import numpy as np  # noqa: E402

from train import features  # noqa: E402
from train.data import Split  # noqa: E402
from models import cards  # noqa: E402
from train.setup import Setup  # noqa: E402


def raw_throughput(run, x: np.ndarray, seconds: float) -> float:
    run(x)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        run(x)
        n += len(x)
    return n / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    card = cards.get(cards.DEFAULT)
    p.add_argument("--regime", default="head", choices=[r for r, c in card.regimes.items() if c is not None])
    p.add_argument("--images", type=int, default=512, help="decoded images to extract (train split; its flipped copies too)")
    p.add_argument("--seconds", type=float, default=10.0, help="time for each raw-throughput measurement")
    a = p.parse_args()
    setup = Setup(card.name, 4, card.size, a.regime, pretrained=True)
    net = setup.network(pretrained=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (a.images, setup.image_size, setup.image_size, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        os.makedirs(os.path.join(tmp, "frozen"))
        run = features.frozen_runner(net, setup.cut, setup.image_size, os.path.join(tmp, "frozen"), "cpu")
        x = setup.spec.normalize(images[:features.BATCH])
        before = raw_throughput(run, x, a.seconds)
        splits = {"train": Split(images, np.zeros(a.images, np.int64))}
        info = features.attach(splits, net, setup.cut, setup.spec, f"bench-{time.time()}", tmp)
        after = raw_throughput(run, x, a.seconds)
    raw = (before + after) / 2
    print(f"regime {a.regime}: frozen part to {'pooled features' if setup.cut == 16 else f'block {setup.cut} input'}, "
          f"224 px, batch {features.BATCH}, {info['engine']}")
    print(f"ONNX Runtime raw throughput: {before:.1f} img/s before, {after:.1f} after (mean {raw:.1f})")
    print(f"feature extraction: {info['images']} images in {info['seconds']:.1f} s = {info['images_per_s']:.1f} img/s "
          f"(export of the frozen part not included)")
    print(f"extraction / raw = {info['images_per_s'] / raw:.2f}   (target >= 0.8)")


if __name__ == "__main__":
    main()
