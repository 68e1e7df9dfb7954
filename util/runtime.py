"""Process-wide runtime set-up shared by every entry point: quiet logs, device choice, stop signals.

Imported by models/__init__ before paddle, so glog noise and Paddle's import-time warnings never
reach a user's terminal.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings

os.environ.setdefault("GLOG_minloglevel", "2")  # glog: errors only
os.environ.setdefault("GLOG_v", "0")
os.environ.setdefault("FLAGS_print_ir", "0")
warnings.filterwarnings("ignore", message="No ccache found")
logging.getLogger("matplotlib").setLevel(logging.WARNING)  # Paddle installs a root handler at INFO
logging.getLogger("paddle.utils.download").setLevel(logging.WARNING)  # per-try download chatter
warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance")


def gpus() -> int:
    """How many CUDA devices Paddle can use here: 0 with a CPU-only Paddle or no card. The one GPU check."""
    import paddle

    return paddle.device.cuda.device_count() if paddle.device.is_compiled_with_cuda() else 0


def pick_device(pref: str = "auto") -> str:
    """'auto' | 'cpu' | 'gpu' -> the Paddle device string actually used ('gpu:0' or 'cpu').

    'gpu' raises if Paddle has no usable CUDA device; 'auto' falls back to CPU quietly.
    """
    import paddle

    if pref not in ("auto", "cpu", "gpu"):
        raise ValueError(f"--device must be auto, cpu or gpu (got {pref!r})")
    has_gpu = gpus() > 0
    if pref == "gpu" and not has_gpu:
        raise RuntimeError("--device gpu: no CUDA device usable by Paddle (install paddlepaddle-gpu, check nvidia-smi)")
    dev = "gpu:0" if has_gpu and pref != "cpu" else "cpu"
    paddle.set_device(dev)
    return dev


INTERRUPTED = 130  # exit status of an entry point stopped by SIGTERM or Ctrl+C (128 + SIGINT, the shell's convention)


_received: list[int] = []  # stop signals received by this process (on_stop_signals' default handler)
_held = 0  # depth of the `stops_held` blocks running now


def _interrupt(signum, frame):
    _received.append(signum)
    # The interrupt can strike inside any constructor (a progress bar's __init__); such half-built objects may
    # fail in __del__ when collected, and Python would print "Exception ignored ... Traceback" on the way out.
    sys.unraisablehook = _ignore
    if not _held:
        raise KeyboardInterrupt


@contextlib.contextmanager
def stops_held():
    """Run the block to its end even if a stop signal arrives, then raise KeyboardInterrupt. For Paddle calls
    that run Python from C++ (paddle.jit.save translates the model's forward): an exception raised inside them
    can leave Paddle's C++ side broken, and the process aborts ("std::bad_alloc", exit -6) instead of stopping.
    Keep such blocks short: a user's Ctrl+C waits for them."""
    global _held
    _held += 1
    try:
        yield
    finally:
        _held -= 1
    check_stop()


def _ignore(unraisable) -> None:
    """sys.unraisablehook once a stop signal arrived: the process is stopping, destructor errors are noise."""


def check_stop() -> None:
    """Raise KeyboardInterrupt again if a stop signal arrived. Paddle turns an interrupt raised inside its own
    code (jit.save's transformation, paddle.load) into a RuntimeError or ValueError: code that catches such
    errors (a damaged file, one model's failure) calls this first, so that Ctrl+C stops instead of being
    taken for a fault."""
    if _received:
        raise KeyboardInterrupt


def on_stop_signals(handler=_interrupt) -> None:
    """Route SIGTERM and SIGINT (Ctrl+C) to `handler` (default: raise KeyboardInterrupt in the main thread),
    with Paddle's own C++ handlers switched off: they print a 'FatalError: Termination signal' block and
    abort. Every entry point calls it first thing in main() (paddle is imported by then, via `models`)."""
    import signal

    import paddle

    paddle.disable_signal_handler()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def helper_signals() -> None:
    """For helper processes forked by an entry point (image decoders): Ctrl+C, which the terminal sends to
    the whole process group, is left to the parent (it stops them); SIGTERM ends them at once, quietly."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def die_with_parent(parent: int) -> None:
    """Make this (child) process end when `parent` does, even when the parent is killed with SIGKILL and
    cannot clean up: Linux prctl(PR_SET_PDEATHSIG, SIGKILL); elsewhere a daemon thread polls getppid()."""
    import signal
    import sys
    import threading
    import time

    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0:  # 1 = PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)
            return

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
