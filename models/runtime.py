"""Process-wide runtime set-up shared by every entry point: quiet logs and device choice.

Imported by models/__init__ before paddle, so glog noise and Paddle's import-time warnings never
reach a user's terminal.
"""
from __future__ import annotations

import logging
import os
import warnings

os.environ.setdefault("GLOG_minloglevel", "2")  # glog: errors only
os.environ.setdefault("GLOG_v", "0")
os.environ.setdefault("FLAGS_print_ir", "0")
warnings.filterwarnings("ignore", message="No ccache found")
logging.getLogger("matplotlib").setLevel(logging.WARNING)  # Paddle installs a root handler at INFO
logging.getLogger("paddle.utils.download").setLevel(logging.WARNING)  # per-try download chatter
warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance")


def pick_device(pref: str = "auto") -> str:
    """'auto' | 'cpu' | 'gpu' -> the Paddle device string actually used ('gpu:0' or 'cpu').

    'gpu' raises if Paddle has no usable CUDA device; 'auto' falls back to CPU quietly.
    """
    import paddle

    if pref not in ("auto", "cpu", "gpu"):
        raise ValueError(f"--device must be auto, cpu or gpu (got {pref!r})")
    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if pref == "gpu" and not has_gpu:
        raise RuntimeError("--device gpu: no CUDA device usable by Paddle (install paddlepaddle-gpu, check nvidia-smi)")
    dev = "gpu:0" if has_gpu and pref != "cpu" else "cpu"
    paddle.set_device(dev)
    return dev
