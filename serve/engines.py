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
        self._paddle: dict = {}  # name -> (base predictor, pool of idle clones)
        self._devices: dict = {}

    # -- devices ---------------------------------------------------------------------------------
    def device(self, backend: str) -> str:
        """Where `backend` runs, in words, e.g. 'CPU (CPUExecutionProvider)' or 'GPU 0'."""
        if backend not in self._devices:
            if backend == "onnx":
                import onnxruntime as ort

                cuda = "CUDAExecutionProvider" in ort.get_available_providers()
                self._devices[backend] = "GPU (CUDAExecutionProvider)" if cuda else "CPU (CPUExecutionProvider)"
            else:
                from models.runtime import pick_device

                self._devices[backend] = "GPU 0" if pick_device("auto").startswith("gpu") else "CPU"
        return self._devices[backend]

    # -- sessions --------------------------------------------------------------------------------
    def _onnx_session(self, name: str):
        with self._lock:
            if name not in self._onnx:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.intra_op_num_threads = self.threads
                opts.inter_op_num_threads = 1
                opts.log_severity_level = 3
                providers = ["CPUExecutionProvider"]
                if self.device("onnx").startswith("GPU"):
                    providers.insert(0, "CUDAExecutionProvider")
                self._onnx[name] = ort.InferenceSession(self.manifest.models[name].onnx, opts, providers=providers)
            return self._onnx[name]

    def _paddle_predictor(self, name: str):
        """An idle Paddle predictor for `name` (a clone of the cached one when all are busy)."""
        with self._lock:
            if name not in self._paddle:
                import paddle.inference as pi

                entry = self.manifest.models[name]
                config = pi.Config(entry.paddle_model, entry.paddle_params)
                if self.device("paddle").startswith("GPU"):
                    config.enable_use_gpu(256, 0)
                else:
                    config.disable_gpu()
                    config.set_cpu_math_library_num_threads(self.threads)
                config.disable_glog_info()
                base = pi.create_predictor(config)
                self._paddle[name] = (base, queue.SimpleQueue())
                return base
            base, idle = self._paddle[name]
        try:
            return idle.get_nowait()
        except queue.Empty:
            return base.clone()

    # -- inference -------------------------------------------------------------------------------
    def run(self, backend: str, name: str, x: np.ndarray) -> tuple[np.ndarray, float]:
        """Probabilities (N, C) from model `name` for the NCHW float32 batch `x`, and seconds taken."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if name not in self.manifest.models:
            raise KeyError(name)
        if backend == "onnx":
            session = self._onnx_session(name)
            t = time.perf_counter()
            probs = session.run(None, {self.manifest.input_name: x})[0]
            return probs, time.perf_counter() - t
        predictor = self._paddle_predictor(name)
        try:
            t = time.perf_counter()
            handle = predictor.get_input_handle(predictor.get_input_names()[0])
            handle.reshape(list(x.shape))
            handle.copy_from_cpu(np.ascontiguousarray(x))
            predictor.run()
            probs = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
            return probs, time.perf_counter() - t
        finally:
            self._paddle[name][1].put(predictor)
