"""A Kaggle-sized benchmark dataset: the real labels.csv (11,421 rows, real splits and classes) with a
generated ~300x250 JPEG for every row, in the Kaggle layout. Written once under data/ (git-ignored)."""
from __future__ import annotations

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import models  # noqa: E402,F401  (quiets Paddle)
from train.synthetic import make_dataset  # noqa: E402

KAGGLE_LABELS = os.path.join(os.path.dirname(ROOT), "shared", "data", "bee_vs_wasp", "labels.csv")
BENCH_DATA = os.path.join(ROOT, "data", "bench_kaggle_like")


def kaggle_like(root: str = BENCH_DATA) -> str:
    if not os.path.exists(os.path.join(root, "labels.csv")):
        t = time.perf_counter()
        print(f"generating 11,421 JPEGs (300x250) in {root} ...", file=sys.stderr)
        make_dataset(root, labels_from=KAGGLE_LABELS, image_size=(300, 250), seed=0)
        print(f"generated in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return root


if __name__ == "__main__":
    print(kaggle_like())
