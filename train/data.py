"""Training data: find the dataset, decode every image once into an on-disk cache, serve batches.

The cache holds each split as one uint8 array (N, S, S, 3) made by the model's `models.Preprocessing`
(`load_array`), keyed by the dataset's fingerprint (paths, labels, splits, sizes, mtimes) and that
preprocessing, so later epochs and later runs never decode a JPEG again. Batches of images are normalized
by the same preprocessing; a split that carries cached features of a frozen network part
(train/features.py) serves those instead.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from models import ImageError, Preprocessing
from models.inference import TTA
from models.dataset import SPLITS, Dataset, DatasetError, open_dataset
from util.io import DamagedFile, atomic_path, read_json, write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(ROOT, "data", "kaggle_bee_vs_wasp")
SYNTHETIC = "synthetic"  # folder of the generated dataset in the cache directory
KAGGLE_HANDLE = "jerzydziewierz/bee-vs-wasp"
CACHE_VERSION = 2  # bump when Preprocessing.load_array changes what it returns
SYNTHETIC_MTIME_NS = 946684800 * 10**9  # 2000-01-01: the generated files' modification time
SYNTHETIC_NOTE = "SYNTHETIC generated pictures (stripes and blobs), not insects: a smoke run only"


def resolve(data: str | None, cache_dir: str | None = None) -> tuple[Dataset, str]:
    """--data value -> (Dataset, layout note). None: data/kaggle_bee_vs_wasp, else a kagglehub download.
    'synthetic': generated once into <cache_dir>/synthetic/ (default cache: models.cache_root()), an ordinary
    Kaggle-layout folder: its fingerprint is the same however it is opened later (export reads the folder)."""
    if data == "synthetic":
        from models import cache_root
        from train.synthetic import make_dataset

        folder = os.path.join(cache_dir or cache_root(), SYNTHETIC)
        if not os.path.exists(os.path.join(folder, "labels.csv")):  # written last: the set is complete
            make_dataset(folder, n_per_class=250, seed=0)
            ds = open_dataset(folder)
            for s in ds.samples:  # same pictures, same times: a set made again (cache deleted) keeps its fingerprint
                os.utime(s.path, ns=(SYNTHETIC_MTIME_NS, SYNTHETIC_MTIME_NS))
        return open_dataset(folder), SYNTHETIC_NOTE
    if data is None:
        data = DEFAULT_DATA if os.path.isdir(DEFAULT_DATA) else _download()
    return open_dataset(data), ""


def _download() -> str:
    try:
        import kagglehub

        print(f"No --data given and no {os.path.relpath(DEFAULT_DATA)}: downloading Kaggle dataset {KAGGLE_HANDLE} ...", file=sys.stderr)
        return kagglehub.dataset_download(KAGGLE_HANDLE)
    except Exception as e:  # noqa: BLE001 - kagglehub raises many kinds; all mean "not available"
        raise DatasetError(
            f"could not download {KAGGLE_HANDLE} ({type(e).__name__}). Options: unpack the Kaggle archive to "
            f"{os.path.relpath(DEFAULT_DATA)}, pass --data DIR (Kaggle layout or DIR/train|val[/test]/<class>/), "
            "or --data synthetic for an offline smoke run") from None


@dataclass
class Split:
    images: np.ndarray  # uint8 (N, S, S, 3), decoded by the model's preprocessing (memory-mapped)
    labels: np.ndarray  # int64 (N,)
    features: np.ndarray | None = None  # the frozen part's outputs for `images` (fine-tuning regimes), or None
    flipped: np.ndarray | None = None  # ... and for the horizontally flipped images (augmentation, test-time views)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> "Split":
        pick = (lambda a: None if a is None else a[idx])
        return Split(self.images[idx], self.labels[idx], pick(self.features), pick(self.flipped))

    def inputs(self, idx, spec: Preprocessing, flip: np.ndarray | None = None) -> np.ndarray:
        """float32 network inputs of items `idx` (flip: per item, the horizontally mirrored one)."""
        if self.features is not None:
            if flip is not None and flip.all():
                return np.asarray(self.flipped[idx], dtype=np.float32)
            x = self.features[idx] if flip is None else np.where(
                flip.reshape(-1, *[1] * (self.features.ndim - 1)), self.flipped[idx], self.features[idx])
            return x.astype(np.float32)
        x = self.images[idx]
        if flip is not None:
            x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
        return spec.normalize(x)

    def views(self, idx, spec: Preprocessing, tta: str) -> list[np.ndarray]:
        """The inputs of items `idx` under each test-time view of `tta` (models.inference.TTA), in its order."""
        out = []
        for view in TTA[tta]:
            out.append(self.inputs(idx, spec, None if view == "identity" else np.ones(len(self.labels[idx]), bool)))
        return out


def _decode(args):
    path, spec = args
    try:
        return spec.load_array(path), None
    except ImageError as e:
        return None, str(e)


def _decoder_init(parent: int) -> None:
    """Decode workers end with the process that started them, even one killed with SIGKILL, and leave
    Ctrl+C to it (the terminal sends it to every process of the group)."""
    from util import runtime

    runtime.die_with_parent(parent)
    runtime.helper_signals()


def load_splits(ds: Dataset, spec: Preprocessing, cache_dir: str, workers: int = 0) -> tuple[dict[str, Split], dict]:
    """Decoded splits from the cache (built on first use; a damaged one is said so and built again).
    Returns (splits, info) where info has the cache key, the skipped files with their reasons, and whether
    the cache was hit."""
    what = json.dumps(spec.as_dict(), sort_keys=True)
    key = hashlib.sha256(f"{ds.fingerprint()}|{what}|{CACHE_VERSION}".encode()).hexdigest()[:16]
    folder = os.path.join(cache_dir, "images", key)
    try:
        meta = read_json(os.path.join(folder, "meta.json"))
        splits = None if meta is None else _open_cache(folder, meta, spec.size)
    except (CacheDamaged, DamagedFile) as e:
        print(f"note: the decoded-image cache {folder} is damaged ({e}); decoding the images again", file=sys.stderr)
        forget(folder)
        meta = splits = None
    hit = splits is not None
    if not hit:
        meta = _build_cache(ds, spec, folder, workers)
        splits = _open_cache(folder, meta, spec.size)
    return splits, {"cache": folder, "cache_hit": hit, "skipped": meta["skipped"], "decode_seconds": meta.get("seconds")}


class CacheDamaged(Exception):
    """A cache folder whose files are truncated, unreadable or inconsistent (it is rebuilt)."""


def forget(folder: str) -> None:
    """Mark a damaged cache folder incomplete (its meta.json, written last, goes); building it again replaces
    every file atomically, so processes that share it (data-parallel ranks) never see a folder vanish."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(folder, "meta.json"))


def load_array(path: str, mmap: bool = False) -> np.ndarray:
    """np.load of a cached array; CacheDamaged (naming the file) if it is absent, truncated or not an array."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:  # missing, truncated (mmap length, reshape), bad header
        raise CacheDamaged(f"{os.path.basename(path)}: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:80]}") from None


def _open_cache(folder: str, meta: dict, size: int) -> dict[str, Split]:
    """The cached splits, checked against each other and meta.json; CacheDamaged when anything is off.
    Memory-mapped: data-parallel ranks on one machine share the page cache instead of one copy each."""
    splits = {sp: Split(load_array(os.path.join(folder, f"{sp}_x.npy"), mmap=True), load_array(os.path.join(folder, f"{sp}_y.npy")))
              for sp in SPLITS}
    for sp, s in splits.items():
        if s.images.shape[1:] != (size, size, 3) or s.images.dtype != np.uint8 or len(s.images) != len(s.labels):
            raise CacheDamaged(f"{sp}: {len(s.labels)} labels for images of shape {s.images.shape}")
    total = sum(len(s) for s in splits.values())
    if not isinstance(meta, dict) or "skipped" not in meta or meta.get("images", total) != total:
        raise CacheDamaged(f"meta.json does not describe these {total} images")
    return splits


def _build_cache(ds: Dataset, spec: Preprocessing, folder: str, workers: int) -> dict:
    workers = workers or min(4, os.cpu_count() or 1)
    skipped, size, t0 = [], spec.size, time.perf_counter()
    jobs = [(s.path, spec) for s in ds.samples]
    pool = ProcessPoolExecutor(workers, initializer=_decoder_init, initargs=(os.getpid(),))
    try:
        with tqdm(total=len(jobs), unit="img", desc=f"decode {size}px", leave=False, disable=None, file=sys.stderr) as bar:
            results = []
            for r in pool.map(_decode, jobs, chunksize=64):
                results.append(r)
                bar.update()
    except BaseException:  # interrupted: drop the queued chunks instead of decoding them all first
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    for sp in SPLITS:
        xs, ys = [], []
        for s, (arr, err) in zip(ds.samples, results):
            if s.split != sp:
                continue
            if arr is None:
                skipped.append({"path": os.path.relpath(s.path, ds.root), "reason": err})
                continue
            xs.append(arr)
            ys.append(s.label)
        x = np.stack(xs) if xs else np.zeros((0, size, size, 3), np.uint8)
        for name, arr in ((f"{sp}_x.npy", x), (f"{sp}_y.npy", np.asarray(ys, np.int64))):
            with atomic_path(os.path.join(folder, name)) as tmp, open(tmp, "wb") as f:
                np.save(f, arr)
    meta = {"skipped": skipped, "size": size, "images": len(ds.samples) - len(skipped),
            "seconds": round(time.perf_counter() - t0, 2)}
    write_json(os.path.join(folder, "meta.json"), meta)  # written last: marks the cache complete
    return meta


def shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """[lo, hi) of rank's part when n items are cut into `world` contiguous parts as even as possible
    (the first n % world parts one longer; some parts are empty when n < world)."""
    q, r = divmod(n, world)
    lo = rank * q + min(rank, r)
    return lo, lo + q + (rank < r)


def batches(split: Split, batch_size: int, spec: Preprocessing, rng: np.random.Generator | None = None,
            augment: bool = False, rank: int = 0, world: int = 1):
    """Yield (x float32, y int64) batches (`split.inputs`); shuffled and randomly h-flipped when rng is given.

    Data-parallel (world > 1): the permutation and the flips are drawn for the whole batch exactly as in
    one process, then this rank gets its `shard` of it, so the ranks' shards of each batch are together
    the single-process batch (no padding, no duplicates; the last one may be empty on some ranks)."""
    n = len(split)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, batch_size):
        idx = order[i:i + batch_size]
        flip = rng.random(len(idx)) < 0.5 if augment and rng is not None else None
        if world > 1:
            lo, hi = shard(len(idx), rank, world)
            idx, flip = idx[lo:hi], None if flip is None else flip[lo:hi]
        yield split.inputs(idx, spec, flip), split.labels[idx]


def eval_batches(split: Split, batch_size: int, spec: Preprocessing, tta: str):
    """Yield lists of inputs, one per test-time view, of consecutive batches of `split` (evaluation, in order)."""
    for i in range(0, len(split), batch_size):
        yield split.views(np.arange(i, min(i + batch_size, len(split))), spec, tta)
