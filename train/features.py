"""The feature cache of the fine-tuning regimes: the frozen part of a pretrained network runs once per image.

Regimes (`--finetune`): "head" trains a new classifier on the pooled features of the whole ImageNet
backbone; "top" also trains its last MBConv block and head conv; "all" trains every layer (no cache).
For "head" and "top", the frozen part (eval mode: its BatchNorm statistics stay ImageNet's) is exported
once to ONNX and run with ONNX Runtime on every core — the fastest engine this project has on a CPU —
over every decoded image and over its horizontal mirror image, so that the flip augmentation (training) and
the flip test-time view (validation, test: models.inference.TTA) survive caching. Outputs are stored per split as memory-mapped .npy files (float32 for
pooled vectors, float16 for feature maps), keyed by everything that determines them: the dataset
fingerprint, the preprocessing, the cut point, the frozen weights' hash and the augmentation. Every
optimizer, `--tune` trial, seed and `--parallel` worker reads the same files.
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import sys
import threading
import time

import numpy as np
from tqdm import tqdm

from models import inference
from models.efficientnet import NUM_BLOCKS, Frozen, frozen_sha
from util.io import DamagedFile, atomic_path, read_json, temp_dir, write_json
from train.data import SPLITS, CacheDamaged, Split, forget, load_array

VERSION = 2  # bump when what is cached changes (2: flipped val and test images too)
AUGMENTATION = "hflip"
BATCH = 32


def cache_key(fingerprint: str, spec, cut: int, weights: str) -> str:
    what = json.dumps({"data": fingerprint, "preprocessing": spec.as_dict(), "cut": cut, "weights": weights,
                       "augmentation": AUGMENTATION, "version": VERSION}, sort_keys=True)
    return hashlib.sha256(what.encode()).hexdigest()[:16]


def attach(splits: dict[str, Split], net, cut: int, spec, fingerprint: str, cache_dir: str, device: str = "cpu") -> dict:
    """Add the frozen part's features to `splits` (computed on first use, then read memory-mapped).
    Returns info: cache folder, hit or not, extraction seconds and images/s."""
    folder = os.path.join(cache_dir, "features", cache_key(fingerprint, spec, cut, frozen_sha(net, cut)))
    try:
        meta = read_json(os.path.join(folder, "meta.json"))
        found = None if meta is None else _open(folder, splits, meta)
    except (CacheDamaged, DamagedFile) as e:
        print(f"note: the feature cache {folder} is damaged ({e}); computing the features again", file=sys.stderr)
        forget(folder)
        found = None
    hit = found is not None
    if not hit:
        meta = _extract(splits, net, cut, spec, folder, device)
        found = _open(folder, splits, meta)
    for sp, split in splits.items():
        split.features, split.flipped = found[sp]
    return {"cache": folder, "cache_hit": hit, **{k: meta[k] for k in ("images", "seconds", "images_per_s", "engine")}}


def _open(folder: str, splits: dict[str, Split], meta: dict) -> dict:
    """split -> (features, flipped features), memory-mapped and checked against the images;
    CacheDamaged when a file is truncated, unreadable or of another length."""
    if not isinstance(meta, dict) or any(k not in meta for k in ("images", "seconds", "images_per_s", "engine")):
        raise CacheDamaged("meta.json lacks what extraction writes")
    out = {}
    for sp, split in splits.items():
        names = [f"{sp}.npy", f"{sp}_flipped.npy"]
        arrays = [load_array(os.path.join(folder, n), mmap=True) for n in names]
        for n, a in zip(names, arrays):
            if len(a) != len(split) or (len(a) and a.ndim < 2):
                raise CacheDamaged(f"{n} holds {len(a)} rows for {len(split)} images")
        out[sp] = (arrays[0], arrays[1])
    return out


def frozen_runner(net, cut: int, size: int, workdir: str, device: str):
    """The frozen part as an ONNX Runtime session on every core (CUDA when usable), exported into workdir."""
    inference.save_static(Frozen(net, cut), workdir, [None, 3, size, size])
    inference.to_onnx(workdir, 13)
    dev = inference.Device(paddle=device, onnx=inference.CUDA_EP if device.startswith("gpu") else inference.CPU_EP,
                           threads=inference.usable_cores(), onednn=False)
    return inference.OnnxRunner(os.path.join(workdir, "model.onnx"), dev)


def _extract(splits: dict[str, Split], net, cut: int, spec, folder: str, device: str) -> dict:
    work = temp_dir(folder, "frozen")  # a killed extraction's is removed by the next run (remove_stale_temps)
    try:
        frozen = frozen_runner(net, cut, spec.size, work, device)
        jobs = [(sp, flipped) for flipped in (False, True) for sp in SPLITS if sp in splits]
        total = sum(len(splits[sp]) for sp, _ in jobs)
        t0 = time.perf_counter()
        with tqdm(total=total, unit="img", desc=f"features ({'pooled' if cut == NUM_BLOCKS else f'block {cut} input'})",
                  leave=False, disable=None, file=sys.stderr, dynamic_ncols=True) as bar:
            for sp, flipped in jobs:
                _extract_split(frozen, splits[sp].images, spec, flipped,
                               os.path.join(folder, f"{sp}{'_flipped' if flipped else ''}.npy"), cut, bar)
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta = {"seconds": round(seconds, 2), "images": total, "images_per_s": round(total / max(seconds, 1e-9), 1),
            "engine": f"ONNX Runtime ({frozen.provider}, {runner_threads(frozen)} threads)", "cut": cut}
    write_json(os.path.join(folder, "meta.json"), meta)  # written last: marks the cache complete
    return meta


def runner_threads(runner) -> int:
    return int(runner.session.get_session_options().intra_op_num_threads)


def _batches(images: np.ndarray, spec, flipped: bool):
    """Normalized batches, prepared on a second thread while ONNX Runtime (which releases the GIL) runs."""
    q: queue.Queue = queue.Queue(maxsize=2)

    def work():
        for i in range(0, len(images), BATCH):
            x = images[i:i + BATCH]
            q.put((i, spec.normalize(x[:, :, ::-1] if flipped else x)))
        q.put(None)

    threading.Thread(target=work, daemon=True).start()
    while (item := q.get()) is not None:
        yield item


def _extract_split(frozen, images: np.ndarray, spec, flipped: bool, path: str, cut: int, bar) -> None:
    dtype = np.float32 if cut == NUM_BLOCKS else np.float16
    out = None
    with atomic_path(path) as tmp:
        for i, x in _batches(images, spec, flipped):
            y = frozen(x)
            if out is None:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(len(images), *y.shape[1:]))
            out[i:i + len(y)] = y
            bar.update(len(y))
        if out is None:  # an empty split
            with open(tmp, "wb") as f:
                np.save(f, np.zeros((0,), dtype))
        else:
            out.flush()
            del out


def load(ds, setup, init_state: dict | None, cache_dir: str, workers: int = 0, device: str = "cpu") -> tuple[dict, dict]:
    """The splits a run trains on: decoded images (train/data.py's cache) and, for the head/top regimes, the
    frozen part's features of them (this cache; the frozen part's weights are those of `init_state`).
    Returns (splits, info) with both caches' details."""
    from train.data import load_splits

    splits, info = load_splits(ds, setup.spec, cache_dir, workers)
    if setup.cut is not None:
        info["features"] = attach(splits, setup.network(init_state), setup.cut, setup.spec, ds.fingerprint(), cache_dir, device)
    return splits, info
