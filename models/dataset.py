"""Dataset listing: which file is which class in which split. Reads the two supported layouts.

- Kaggle "Bee or Wasp?": `labels.csv` (Windows backslash paths) beside the image folders; the official
  splits: is_final_validation=1 -> test, is_validation=1 -> val, else train. Classes: models.CLASSES.
- Folders: DIR/train/<class>/*, DIR/val/<class>/*, optional DIR/test/<class>/*. Classes: the sorted
  folder names under train/. Without test/, every other val image (sorted by path, per class) becomes
  the test split, so test accuracy is never measured on the images that chose the checkpoint.

Every path a dataset names must resolve (links followed) inside the dataset folder: any other is refused,
never read, and counted. Label rows with no class or two classes, files listed in two splits and duplicate ids
are counted too (`Dataset.problems`, one warning line: `problem_line`); training refuses files in two splits
unless told otherwise. Only listing happens here (no decoding), so export and serving can find the test images too.
"""
from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field

from models import CLASSES
from util.io import within

SPLITS = ("train", "val", "test")
# Dataset.problems: kind -> what is said about it in the warning line
PROBLEMS = {"outside": "path(s) outside the dataset folder (refused, never read)", "no_class": "row(s) with no class",
            "two_classes": "row(s) with two or more classes", "in_two_splits": "file(s) in two splits",
            "duplicate_ids": "duplicate id(s)"}
FLAGS = {"": 0, "0": 0, "1": 1, "false": 0, "true": 1}  # and numbers equal to 0 or 1 ("1.0")
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
    problems: dict[str, list[str]] = field(default_factory=dict)  # PROBLEMS kind -> the paths (ids) concerned

    def problem_line(self) -> str | None:
        """The one warning line about `problems` (counts, a few names each), or None when there are none."""
        parts = [f"{len(v)} {PROBLEMS[k]} ({', '.join(v[:3])}{', ...' if len(v) > 3 else ''})"
                 for k, v in self.problems.items() if v]
        return f"{self.root}: {'; '.join(parts)}; all listed in the run's config.json" if parts else None

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


def flag(text: str | None, column: str, where: str) -> int:
    """A 0/1 column of labels.csv, read one way: 1, 1.0 and true alike (0, 0.0, false, empty: 0); DatasetError else."""
    t = (text or "").strip().lower()
    if t in FLAGS:
        return FLAGS[t]
    try:
        if float(t) in (0.0, 1.0):
            return int(float(t))
    except ValueError:
        pass
    raise DatasetError(f"{where}: {column} is {text!r}; a flag is 0 or 1 (1.0 and true are read as 1): fix that row")


def kaggle_rows(labels_csv: str) -> tuple[list[tuple[str, int, str]], dict[str, list[str]]]:
    """(relative path with '/', label index, split) for every row of the Kaggle label file with exactly one class,
    and the rows with none or several (problems "no_class", "two_classes") and the duplicate ids."""
    rows, problems, ids = [], {"no_class": [], "two_classes": [], "duplicate_ids": []}, set()
    try:
        with open(labels_csv, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            need = {"path", "is_validation", "is_final_validation", *KAGGLE_LABEL_COLUMNS}
            if not need <= set(reader.fieldnames or ()):
                raise DatasetError(f"{labels_csv}: not a Kaggle 'Bee or Wasp?' label file (needs columns {', '.join(sorted(need))})")
            for r in reader:
                where, path = f"{labels_csv} line {reader.line_num}", (r["path"] or "").replace("\\", "/")
                flags = [flag(r[c], c, where) for c in KAGGLE_LABEL_COLUMNS]
                test, val = (flag(r[c], c, where) for c in ("is_final_validation", "is_validation"))
                if r.get("id") is not None and r["id"] in ids:
                    problems["duplicate_ids"].append(r["id"])
                ids.add(r.get("id"))
                if sum(flags) != 1:  # no usable label
                    problems["no_class" if sum(flags) == 0 else "two_classes"].append(path)
                    continue
                rows.append((path, flags.index(1), "test" if test else "val" if val else "train"))
    except UnicodeDecodeError as e:
        raise DatasetError(f"{labels_csv} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                           f"save it as UTF-8") from None
    except csv.Error as e:
        raise DatasetError(f"{labels_csv} is not a readable CSV file ({e}); fix it") from None
    return rows, problems


def _two_splits(samples: list[Sample], root: str) -> list[str]:
    """The files (relative paths) that samples of two or more splits name (links followed)."""
    splits: dict[str, set] = {}
    for s in samples:
        splits.setdefault(os.path.realpath(s.path), set()).add(s.split)
    return sorted({os.path.relpath(s.path, root) for s in samples if len(splits[os.path.realpath(s.path)]) > 1})


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
        rows, problems = kaggle_rows(labels)
        samples, missing, problems["outside"] = [], [], []
        for rel, label, split in rows:
            p = os.path.join(base, rel)
            if not within(p, base):
                problems["outside"].append(rel)
            else:
                (samples.append(Sample(p, label, split)) if os.path.isfile(p) else missing.append(rel))
        if not samples:
            raise DatasetError(f"{labels} lists {len(missing)} images but none exist beside it; unpack the image folders next to labels.csv")
        problems["in_two_splits"] = _two_splits(samples, base)
        return Dataset(base, "kaggle", CLASSES, samples, missing, problems={k: problems[k] for k in PROBLEMS})
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
    samples, missing, notes, outside = [], [], [], []
    has_test = os.path.isdir(os.path.join(root, "test"))
    for split in SPLITS if has_test else ("train", "val"):
        for label, c in enumerate(classes):
            d = os.path.join(root, split, c)
            files, broken = _list_images(d) if os.path.isdir(d) else ([], [])
            missing += [os.path.relpath(p, root) for p in broken]
            outside += [os.path.relpath(p, root) for p in files if not within(p, root)]
            for i, p in enumerate(p for p in files if within(p, root)):
                sp = "test" if (not has_test and split == "val" and i % 2 == 1) else split
                samples.append(Sample(p, label, sp))
    if not has_test:
        notes.append("no test/ folder: every other val image (per class, sorted by name) is held out as the test split")
    problems = {k: [] for k in PROBLEMS} | {"outside": outside, "in_two_splits": _two_splits(samples, root)}
    return Dataset(root, "folders", classes, samples, missing, notes, problems)
