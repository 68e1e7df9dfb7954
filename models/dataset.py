"""Dataset listing: which file is which class in which split. Reads the two supported layouts.

- Kaggle "Bee or Wasp?": `labels.csv` (Windows backslash paths) beside the image folders; the official
  splits: is_final_validation=1 -> test, is_validation=1 -> val, else train. Classes: models.CLASSES.
- Folders: DIR/train/<class>/*, DIR/val/<class>/*, optional DIR/test/<class>/*. Classes: the sorted
  folder names under train/. Without test/, every other val image (sorted by path, per class) becomes
  the test split, so test accuracy is never measured on the images that chose the checkpoint.

Only listing happens here (no decoding), so export and serving can find the test images too.
"""
from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field

from models import CLASSES

SPLITS = ("train", "val", "test")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
KAGGLE_LABEL_COLUMNS = ("is_bee", "is_wasp", "is_otherinsect", "is_other")


class DatasetError(ValueError):
    """The dataset cannot be used; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class Sample:
    path: str  # absolute
    label: int
    split: str


@dataclass
class Dataset:
    root: str
    layout: str
    classes: tuple[str, ...]
    samples: list[Sample]
    missing: list[str] = field(default_factory=list)  # listed but absent files (relative paths)
    notes: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        out = {sp: {c: 0 for c in self.classes} for sp in SPLITS}
        for s in self.samples:
            out[s.split][self.classes[s.label]] += 1
        return out

    def fingerprint(self) -> str:
        """Hash of every sample's relative path, label, split, byte size and mtime: changes when any file does.

        The files decide it, not how the dataset was opened (`--data synthetic` and `--data DIR` of the same
        folder give the same fingerprint). A file gone since it was listed counts as such instead of failing."""
        h = hashlib.sha256(f"{self.layout}|{','.join(self.classes)}".encode())
        for s in self.samples:
            try:
                st = os.stat(s.path)
                seen = f"{st.st_size}|{st.st_mtime_ns}"
            except OSError:  # removed, or turned into a dangling link / link loop since listing
                seen = "unreadable"
            h.update(f"\n{os.path.relpath(s.path, self.root)}|{s.label}|{s.split}|{seen}".encode())
        return h.hexdigest()[:16]


def find_labels_csv(root: str) -> str | None:
    """labels.csv in root or one folder below (the Kaggle archive unpacks into kaggle_bee_vs_wasp/)."""
    cand = os.path.join(root, "labels.csv")
    if os.path.isfile(cand):
        return cand
    if os.path.isdir(root):
        for name in sorted(os.listdir(root)):
            cand = os.path.join(root, name, "labels.csv")
            if os.path.isfile(cand):
                return cand
    return None


def kaggle_rows(labels_csv: str) -> list[tuple[str, int, str]]:
    """(relative path with '/', label index, split) for every row of the Kaggle label file."""
    rows = []
    with open(labels_csv, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = {"path", "is_validation", "is_final_validation", *KAGGLE_LABEL_COLUMNS}
        if not need <= set(reader.fieldnames or ()):
            raise DatasetError(f"{labels_csv}: not a Kaggle 'Bee or Wasp?' label file (needs columns {', '.join(sorted(need))})")
        for r in reader:
            flags = [int(float(r[c] or 0)) for c in KAGGLE_LABEL_COLUMNS]
            if sum(flags) != 1:
                continue  # not exactly one class: no usable label
            split = "test" if r["is_final_validation"] == "1" else "val" if r["is_validation"] == "1" else "train"
            rows.append((r["path"].replace("\\", "/"), flags.index(1), split))
    return rows


def open_dataset(root: str) -> Dataset:
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        if os.path.exists(root):
            raise DatasetError(f"{root} is a file, not a dataset folder: give the folder that holds labels.csv "
                               f"(Kaggle layout) or train/ and val/ (folder layout)")
        if os.path.lexists(root):
            raise DatasetError(f"dataset folder {root} is a broken link (it points nowhere, or to itself)")
        raise DatasetError(f"dataset folder {root} does not exist")
    labels = find_labels_csv(root)
    if labels:
        base = os.path.dirname(labels)
        samples, missing = [], []
        for rel, label, split in kaggle_rows(labels):
            p = os.path.join(base, rel)
            (samples.append(Sample(p, label, split)) if os.path.isfile(p) else missing.append(rel))
        if not samples:
            raise DatasetError(f"{labels} lists {len(missing)} images but none exist beside it; unpack the image folders next to labels.csv")
        return Dataset(base, "kaggle", CLASSES, samples, missing)
    if os.path.isdir(os.path.join(root, "train")):
        return _open_folders(root)
    raise DatasetError(f"{root}: no labels.csv (Kaggle layout) and no train/ folder (folder layout)")


def _list_images(d: str) -> tuple[list[str], list[str]]:
    """(image files in folder d, sorted; entries with an image name that are no readable file: dangling
    links, link loops, folders)."""
    names = sorted(f for f in os.listdir(d) if f.lower().endswith(IMAGE_EXTS) and not f.startswith("."))
    found = [os.path.join(d, f) for f in names]
    return [p for p in found if os.path.isfile(p)], [p for p in found if not os.path.isfile(p)]


def _open_folders(root: str) -> Dataset:
    classes = tuple(sorted(d for d in os.listdir(os.path.join(root, "train")) if os.path.isdir(os.path.join(root, "train", d))))
    if len(classes) < 2:
        raise DatasetError(f"{root}/train needs one folder per class (found {len(classes)})")
    if not os.path.isdir(os.path.join(root, "val")):
        raise DatasetError(f"{root} has train/ but no val/ folder")
    samples, missing, notes = [], [], []
    has_test = os.path.isdir(os.path.join(root, "test"))
    for split in SPLITS if has_test else ("train", "val"):
        for label, c in enumerate(classes):
            d = os.path.join(root, split, c)
            files, broken = _list_images(d) if os.path.isdir(d) else ([], [])
            missing += [os.path.relpath(p, root) for p in broken]
            for i, p in enumerate(files):
                sp = "test" if (not has_test and split == "val" and i % 2 == 1) else split
                samples.append(Sample(p, label, sp))
    if not has_test:
        notes.append("no test/ folder: every other val image (per class, sorted by name) is held out as the test split")
    return Dataset(root, "folders", classes, samples, missing, notes)
