"""Generated datasets in the Kaggle "Bee or Wasp?" layout, for offline smoke runs, tests and benchmarks.

Each class is a learnable visual pattern with random colours, positions and noise:
bee = horizontal yellow/black stripes, wasp = diagonal stripes, other_insect = a dark ellipse on
green, other_noinsect = smooth blue/grey gradients. `extras=True` adds the awkward files real data
has: a corrupt JPEG, a grayscale JPEG, an RGBA PNG and a row whose file is missing.
"""
from __future__ import annotations

import csv
import os

import numpy as np
from PIL import Image

from models import CLASSES
from models.dataset import KAGGLE_LABEL_COLUMNS, kaggle_rows
from util.io import atomic_path

FOLDERS = ("bee1", "wasp1", "other_insect", "other_noinsect")  # one Kaggle folder per class
COLUMNS = ("id", "path", *KAGGLE_LABEL_COLUMNS, "photo_quality", "is_validation", "is_final_validation")  # Kaggle's order


def render(label: int, rng: np.random.Generator, w: int = 96, h: int = 80) -> np.ndarray:
    """One h x w x 3 uint8 image of class `label`."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(8, 16) * w / 96
    phase = rng.uniform(0, 2 * np.pi)
    base = rng.uniform(0.7, 1.0)
    if label == 0:  # bee: horizontal yellow/black stripes
        s = (np.sin(2 * np.pi * yy / period + phase) > 0)[..., None]
        img = np.where(s, np.array([230, 190, 40]) * base, np.array([30, 25, 20]))
    elif label == 1:  # wasp: diagonal yellow/black stripes
        s = (np.sin(2 * np.pi * (xx + yy) / period + phase) > 0)[..., None]
        img = np.where(s, np.array([240, 220, 30]) * base, np.array([15, 15, 15]))
    elif label == 2:  # other insect: dark ellipse on green leaves
        cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
        r = ((xx - cx) / (0.25 * w)) ** 2 + ((yy - cy) / (0.15 * h)) ** 2 < 1
        img = np.where(r[..., None], np.array([60, 30, 20]), np.array([60, 150, 50]) * base)
    else:  # other: smooth sky/stone gradient
        g = (xx / w * rng.uniform(-1, 1) + yy / h * rng.uniform(-1, 1))[..., None]
        img = np.array([90, 140, 200]) * base + g * np.array([60, 40, 20])
    img = img + rng.normal(0, 18, size=(h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _split(i: int, n: int) -> str:
    f = i / max(n, 1)
    return "test" if f >= 0.8 else "val" if f >= 0.65 else "train"


def make_dataset(root: str, n_per_class: int = 60, seed: int = 0, extras: bool = False,
                 image_size: tuple[int, int] = (96, 80), labels_from: str | None = None, quality: int = 90) -> str:
    """Write a Kaggle-layout dataset under `root` and return `root`.

    labels_from: a real Kaggle labels.csv whose rows (paths, classes, splits) are reproduced with
    generated pictures: the benchmark uses the real file to get a dataset of the real size and split.
    """
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, int, str]] = []
    if labels_from:
        rows, _ = kaggle_rows(labels_from)
    else:
        for label in range(len(CLASSES)):
            rows += [(f"{FOLDERS[label]}/img_{label}_{i:05d}.jpg", label, _split(i, n_per_class)) for i in range(n_per_class)]
    w, h = image_size
    for d in {os.path.dirname(r[0]) for r in rows}:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    for rel, label, _ in rows:
        p = os.path.join(root, rel)
        if not os.path.exists(p):  # atomically: a killed generation leaves no half image behind
            with atomic_path(p) as tmp:
                Image.fromarray(render(label, rng, w, h)).save(tmp, format="JPEG", quality=quality)
    if extras:
        rows += _extras(root, rng, w, h)
    with atomic_path(os.path.join(root, "labels.csv")) as tmp, open(tmp, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(COLUMNS)
        for i, (rel, label, split) in enumerate(rows, 1):
            onehot = [int(label == k) for k in range(len(CLASSES))]
            wr.writerow([i, rel.replace("/", "\\"), *onehot, 1, int(split == "val"), int(split == "test")])
    return root


def _extras(root: str, rng: np.random.Generator, w: int, h: int) -> list[tuple[str, int, str]]:
    """Files that real datasets contain and that the pipeline must survive."""
    out = []
    p = os.path.join(root, FOLDERS[0], "corrupt.jpg")  # JPEG header, then garbage: undecodable
    Image.fromarray(render(0, rng, w, h)).save(p)
    with open(p, "r+b") as f:
        f.seek(200)
        f.write(b"\x00" * 64)
        f.truncate(300)
    out.append((f"{FOLDERS[0]}/corrupt.jpg", 0, "train"))
    Image.fromarray(render(1, rng, w, h)).convert("L").save(os.path.join(root, FOLDERS[1], "gray.jpg"))
    out.append((f"{FOLDERS[1]}/gray.jpg", 1, "train"))
    rgba = Image.fromarray(render(2, rng, w, h)).convert("RGBA")
    rgba.putalpha(200)
    rgba.save(os.path.join(root, FOLDERS[2], "rgba.png"))
    out.append((f"{FOLDERS[2]}/rgba.png", 2, "train"))
    out.append((f"{FOLDERS[3]}/missing.jpg", 3, "train"))  # listed, never written
    return out
