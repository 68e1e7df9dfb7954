"""Run exported models with ONNX Runtime (float or INT8) or Paddle Inference, on GPU when usable, else CPU.

Sessions are created on first use and cached: an ONNX Runtime session is shared by all threads
(its `run` is thread-safe); Paddle predictors are not, so each model keeps a small pool of clones,
one per request running at the same moment. `resolve` turns a choice ("auto": the model's fastest proven
backend, serve/manifest.py) into the backend that runs; every answer says which one it was.
"""
from __future__ import annotations

import os
import queue
import threading
import time

import numpy as np

from models import inference
from serve.manifest import INT8, SERVED, Manifest

BACKENDS = dict(zip(SERVED, ("ONNX Runtime", "ONNX Runtime INT8", "Paddle Inference")))
AUTO = "auto"
CHOICES = {AUTO: "fastest that passed its proof", **BACKENDS}  # what the page and predict offer


class NotServed(ValueError):
    """The backend asked for has no proven file for that model; the message is one line saying what to choose."""


def cpu_threads(concurrency: int) -> int:
    """Intra-op threads per inference so that `concurrency` requests together fill the cores."""
    return max(1, (os.cpu_count() or 1) // max(1, concurrency))


class Engines:
    """Every servable model of one manifest, for both backends, created lazily and cached."""

    def __init__(self, manifest: Manifest, threads: int = 1):
        self.manifest = manifest
        self.threads = threads
        self._lock = threading.Lock()
        self._onnx: dict = {}  # (name, "onnx" | INT8) -> runner
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
        if backend in ("onnx", INT8):
            taken = [r.provider for r in self._onnx.values()][:1] or [d.onnx]  # CUDA can fall back to CPU
            place = "GPU 0" if taken[0] == inference.CUDA_EP else "CPU"
        else:
            place = f"GPU {d.paddle.split(':')[1]}" if d.paddle.startswith("gpu") else "CPU"
        return f"{place}, {BACKENDS[backend]}"

    # -- sessions (models.inference, the same runners export proved the files with) ---------------
    def _onnx_runner(self, name: str, backend: str) -> inference.OnnxRunner:
        with self._lock:
            if (name, backend) not in self._onnx:
                m, e = self.manifest, self.manifest.models[name]  # checked against the manifest before ONNX Runtime opens it
                self._onnx[name, backend] = inference.OnnxRunner(e.int8_onnx if backend == INT8 else e.onnx, self._where(),
                                                                 expect=(m.input_name, m.size, len(m.classes)))
            return self._onnx[name, backend]

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
    def resolve(self, backend: str, name: str, fallback: bool = False) -> str:
        """The backend that runs model `name` for the choice `backend`: AUTO -> the model's fastest proven one; a
        backend without a proven file for it -> NotServed (with `fallback`: its fastest proven one instead)."""
        if backend not in CHOICES:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(CHOICES)}")
        entry = self.manifest.models[name]
        if backend == AUTO or (fallback and backend not in entry.backends):
            return entry.fastest()
        if backend not in entry.backends:
            raise NotServed(f"{name} has no {BACKENDS[backend]} model that passed its proof ({entry.int8_status}); "
                            f"choose {AUTO} or one of {', '.join(entry.backends)}")
        return backend

    def run(self, backend: str, name: str, x: np.ndarray) -> tuple[np.ndarray, float, str]:
        """Probabilities (N, C) from model `name` for the NCHW float32 batch `x`, seconds taken, and the backend that
        ran (`resolve`); inference.Refused when the model's file is refused or its output is not probabilities."""
        if name not in self.manifest.models:
            raise KeyError(name)
        backend = self.resolve(backend, name)
        if backend in ("onnx", INT8):
            runner = self._onnx_runner(name, backend)
            t = time.perf_counter()
            probs, secs = runner(x), time.perf_counter() - t
        else:
            runner = self._paddle_runner(name)
            try:
                t = time.perf_counter()
                probs, secs = runner(x), time.perf_counter() - t
            finally:
                self._paddle[name][1].put(runner)
        return inference.check_probabilities(probs, len(self.manifest.classes), f"{name} ({BACKENDS[backend]})"), secs, backend
