"""Gradio demo: upload an insect photo, pick any optimizer's exported model, see the prediction.

    python serve/app.py                                   # newest run's manifest, http://127.0.0.1:7860
    python serve/app.py --manifest runs/hym/export/manifest.json --port 7861 --backend onnx-int8

Reads one export manifest.json and only the files it names inside its own folder (serve/manifest.py);
serves its models with ONNX Runtime (float, or INT8 where it passed its proof) or Paddle Inference (serve/engines.py); the page and its API are in
serve/ui.py. API, with gradio_client: `classify(image, model_name[, backend])` and `compare_all(image[, backend])`.
Every request body is limited (serve/bodylimit.py); Gradio's temporary files live in a folder of the
demo's own, removed on exit, where uploads go after --upload-max-age and the total is capped at --max-temp-size
(serve/tempspace.py); requests for any other host name than this machine's and --host (--allowed-hosts adds a
reverse proxy's) are refused (DNS rebinding); SIGTERM and Ctrl+C stop it cleanly.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import models  # noqa: E402  (first: quiets Paddle)
from util import runtime  # noqa: E402
from serve.engines import AUTO, CHOICES, Engines, cpu_threads  # noqa: E402
from serve.manifest import ManifestError, load, newest  # noqa: E402

UNITS = {"b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}  # as Gradio reads --max-file-size: 20mb = 20 MiB


def size_arg(text: str) -> int:
    """'20mb' -> 20971520 (argparse type)."""
    found = re.fullmatch(r"\s*(\d+)\s*([kmg]?b)\s*", text.lower())
    if not found:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 512kb, 1mb or 20mb")
    return int(found[1]) * UNITS[found[2]]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest", help="export manifest.json (default: the newest under runs/)")
    p.add_argument("--runs", default=os.path.join(ROOT, "runs"), help="where to look for the newest run (default: runs/)")
    p.add_argument("--backend", choices=list(CHOICES), default=AUTO,
                   help="initial backend, switchable on the page (default auto: each model's fastest that passed its proof)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--concurrency", type=int, default=min(4, os.cpu_count() or 1),
                   help="requests computed at the same time; more wait in the queue (default: min(4, cores))")
    p.add_argument("--max-file-size", type=size_arg, default="20mb", help="upload size limit (default 20mb)")
    p.add_argument("--max-body-size", type=size_arg, default="1mb",
                   help="limit of every other request body, answered 413 before it is read (default 1mb)")
    p.add_argument("--max-temp-size", type=size_arg, default="256mb",
                   help="cap of the demo's temporary folder; an upload that could pass it is refused (default 256mb)")
    p.add_argument("--upload-max-age", type=seconds_arg, default=60,
                   help="seconds an upload is kept after it arrives (default 60)")
    p.add_argument("--allowed-hosts", default="", help="comma-separated host names the demo answers besides "
                   "localhost, 127.0.0.1 and --host, e.g. a reverse proxy's name ('*': any; not recommended)")
    return p.parse_args(argv)


def seconds_arg(text: str) -> float:
    """'60' -> 60.0 (argparse type): a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0, e.g. 60")
    return value


def allowed_hosts(args) -> list[str]:
    """The Host header values the demo answers: this machine's names, --host, and --allowed-hosts."""
    extra = [h.strip() for h in args.allowed_hosts.split(",") if h.strip()]
    return list(dict.fromkeys(["localhost", "127.0.0.1", "::1", args.host, *extra]))


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT (Ctrl+C), in place of Paddle's C++ handlers (which print a
    'FatalError: Termination signal' block and abort) and Python's KeyboardInterrupt."""
    stop = threading.Event()
    runtime.on_stop_signals(lambda *_: stop.set())
    return stop


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    try:
        manifest = load(args.manifest or newest(args.runs))
    except ManifestError as e:
        print(f"serve/app.py: {e}", file=sys.stderr)
        return 2
    for line in manifest.refused:
        print(f"serve/app.py: {line}", file=sys.stderr)
    stop = stop_on_signals()
    # Gradio's uploads and its copies of the files it shows go to a folder of the demo's own (read by Gradio
    # at import): it never serves another app's cached files, and the folder goes when the demo stops.
    temp = tempfile.mkdtemp(prefix="insect-demo-")
    os.environ["GRADIO_TEMP_DIR"] = temp
    os.environ["GRADIO_EXAMPLES_CACHE"] = os.path.join(temp, "examples")
    try:
        return serve(args, manifest, stop, temp, t0)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def serve(args, manifest, stop: threading.Event, temp: str, t0: float) -> int:
    from gradio.utils import get_upload_folder  # gradio takes seconds to import: only once there is a manifest
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from serve.bodylimit import BodyLimit
    from serve.tempspace import DiskLimit, TempSpace
    from serve.ui import Demo, build

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one log line per internal HTTP request otherwise
    concurrency = max(1, args.concurrency)
    engines = Engines(manifest, threads=cpu_threads(concurrency))  # sessions load on first use
    page = build(Demo(manifest, engines, get_upload_folder()), args.backend)
    # Unbounded queue: a burst waits rather than being refused; `concurrency` requests compute at once.
    page.queue(default_concurrency_limit=concurrency, max_size=None)
    if stop.is_set():
        return 0
    space = TempSpace(temp, args.max_temp_size, args.upload_max_age)
    guards = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(args)),  # first: DNS rebinding
              Middleware(BodyLimit, limit=args.max_body_size, upload_limit=args.max_file_size),
              Middleware(DiskLimit, space=space, upload_limit=args.max_file_size)]
    try:
        page.launch(server_name=args.host, server_port=args.port, max_file_size=args.max_file_size,
                    show_error=False, quiet=True, ssr_mode=False, prevent_thread_lock=True, footer_links=["api"],
                    app_kwargs={"middleware": guards})
    except OSError as e:  # port taken, address not on this machine
        print(f"serve/app.py: cannot listen on {args.host}:{args.port} ({str(e).split('.')[0]}); "
              "pick another --port", file=sys.stderr)
        return 2
    space.keep_current()  # Gradio's copies of the examples and plots the page shows
    print(f"Serving {len(manifest.models)} models of run {manifest.run} ({manifest.path}) "
          f"at http://{args.host}:{args.port}, ready in {time.perf_counter() - t0:.1f} s; "
          f"temporary files in {temp} (removed on exit)", flush=True)
    while not stop.wait(0.5) and page.is_running:
        space.tidy()
    page.close(verbose=False)
    print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
