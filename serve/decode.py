"""Photos -> model input for the demo and serve/predict.py: the model's `models.Preprocessing`, large images gated.

Decoding a 40-megapixel PNG takes 0.3 GB (RGB) to 0.8 GB (RGBA: models.load_rgb composites on white)
for a moment, and glibc keeps such freed blocks in its arenas: eight clients sending one each left
the server 2 GB larger, for good. So images above `LARGE` pixels decode at most `cores` at a time
(decoding is CPU-bound: more at once buys nothing), and after each the C heap is trimmed
(`malloc_trim`), which hands the freed pages back to the system. bench/bench_serve.py measures it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading
import warnings

import numpy as np
from PIL import Image

import models
from models.inference import usable_cores

LARGE = 4_000_000  # pixels (12 MB decoded): above this, a decode waits for the gate and trims after
_gate = threading.BoundedSemaphore(max(1, usable_cores()))


def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


_trim = _malloc_trim()


def pixels(path: str) -> int:
    """Width x height from the file's header (nothing decoded); 0 when PIL cannot tell."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: models.load_rgb decides
            with Image.open(path) as img:
                return img.size[0] * img.size[1]
    except (OSError, ValueError, Image.DecompressionBombError):
        return 0  # models.load_rgb says what is wrong with it


def preprocess(path: str, spec: models.Preprocessing) -> np.ndarray:
    """`spec(path)` (CHW float32), the large images one core each, heap trimmed after."""
    if pixels(path) <= LARGE:
        return spec(path)
    with _gate:
        try:
            return spec(path)
        finally:
            if _trim is not None:
                _trim(0)
