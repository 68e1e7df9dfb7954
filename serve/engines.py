"""Run exported models with ONNX Runtime or Paddle Inference, on GPU when usable, else CPU.

Sessions are created on first use and cached: an ONNX Runtime session is shared by all threads
(its `run` is thread-safe); Paddle predictors are not, so each model keeps a small pool of clones,
one per request running at the same moment.
"""
from __future__ import annotations

import os
import queue
import threading
import time

import numpy as np

from models import inference
from serve.manifest import Manifest

BACKENDS = {"onnx": "ONNX Runtime", "paddle": "Paddle Inference"}


def cpu_threads(concurrency: int) -> int:
    """Intra-op threads per inference so that `concurrency` requests together fill the cores."""
    return max(1, (os.cpu_count() or 1) // max(1, concurrency))


class Engines:
    """Every servable model of one manifest, for both backends, created lazily and cached."""

    def __init__(self, manifest: Manifest, threads: int = 1):
        self.manifest = manifest
        self.threads = threads
        self._lock = threading.Lock()
        self._onnx: dict = {}
        self._paddle: dict = {}  # name -> (base runner, pool of idle clones)
        self._device = None

    # -- devices ---------------------------------------------------------------------------------
    def _where(self) -> inference.Device:
        if self._device is None:
            self._device = inference.choose_device("auto", self.threads)  # GPU when usable, else CPU
        return self._device

    def where(self, backend: str) -> str:
        """Where `backend` runs, in plain words: 'CPU, ONNX Runtime' or 'GPU 0, Paddle Inference'."""
        d = self._where()
        if backend == "onnx":
            taken = [r.provider for r in self._onnx.values()][:1] or [d.onnx]  # CUDA can fall back to CPU
            place = "GPU 0" if taken[0] == inference.CUDA_EP else "CPU"
        else:
            place = f"GPU {d.paddle.split(':')[1]}" if d.paddle.startswith("gpu") else "CPU"
        return f"{place}, {BACKENDS[backend]}"

    # -- sessions (models.inference, the same runners export proved the files with) ---------------
    def _onnx_runner(self, name: str) -> inference.OnnxRunner:
        with self._lock:
            if name not in self._onnx:
                m = self.manifest  # the file is checked against the manifest before ONNX Runtime opens it
                self._onnx[name] = inference.OnnxRunner(m.models[name].onnx, self._where(),
                                                        expect=(m.input_name, m.size, len(m.classes)))
            return self._onnx[name]

    def _paddle_runner(self, name: str) -> inference.PaddleRunner:
        """An idle Paddle runner for `name` (a clone of the cached one when all are busy)."""
        with self._lock:
            if name not in self._paddle:
                entry = self.manifest.models[name]
                base = inference.PaddleRunner(entry.paddle_model, entry.paddle_params, self._where())
                self._paddle[name] = (base, queue.SimpleQueue())
                return base
            base, idle = self._paddle[name]
        try:
            return idle.get_nowait()
        except queue.Empty:
            return base.clone()

    # -- inference -------------------------------------------------------------------------------
    def run(self, backend: str, name: str, x: np.ndarray) -> tuple[np.ndarray, float]:
        """Probabilities (N, C) from model `name` for the NCHW float32 batch `x`, and seconds taken; inference.Refused
        when the model's file is refused or its output is not probabilities."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if name not in self.manifest.models:
            raise KeyError(name)
        if backend == "onnx":
            runner = self._onnx_runner(name)
            t = time.perf_counter()
            probs, secs = runner(x), time.perf_counter() - t
        else:
            runner = self._paddle_runner(name)
            try:
                t = time.perf_counter()
                probs, secs = runner(x), time.perf_counter() - t
            finally:
                self._paddle[name][1].put(runner)
        return inference.check_probabilities(probs, len(self.manifest.classes), f"{name} ({BACKENDS[backend]})"), secs
