"""Gradio demo: upload an insect photo, pick any optimizer's exported model, see the prediction.

    python serve/app.py                                   # newest run's manifest, http://127.0.0.1:7860
    python serve/app.py --manifest runs/hym/export/manifest.json --port 7861 --backend onnx

Reads one export manifest.json only (serve/manifest.py) and serves its models with ONNX Runtime or
Paddle Inference (serve/engines.py); the page and its API are in serve/ui.py. API, with gradio_client:
`classify(image, model_name[, backend])` and `compare_all(image[, backend])`.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import models  # noqa: E402,F401  (first: quiets Paddle)
from serve.engines import BACKENDS, Engines, cpu_threads  # noqa: E402
from serve.manifest import ManifestError, load, newest  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest", help="export manifest.json (default: the newest under runs/)")
    p.add_argument("--runs", default=os.path.join(ROOT, "runs"), help="where to look for the newest run (default: runs/)")
    p.add_argument("--backend", choices=sorted(BACKENDS), default="onnx", help="initial backend (switchable on the page)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--concurrency", type=int, default=min(4, os.cpu_count() or 1),
                   help="requests computed at the same time; more wait in the queue (default: min(4, cores))")
    p.add_argument("--max-file-size", default="20mb", help="upload size limit (default 20mb)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    try:
        manifest = load(args.manifest or newest(args.runs))
    except ManifestError as e:
        print(f"serve/app.py: {e}", file=sys.stderr)
        return 2
    from gradio.utils import get_upload_folder  # gradio takes seconds to import: only once there is a manifest

    from serve.ui import Demo, build

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one log line per internal HTTP request otherwise
    concurrency = max(1, args.concurrency)
    engines = Engines(manifest, threads=cpu_threads(concurrency))  # sessions load on first use
    page = build(Demo(manifest, engines, get_upload_folder()), args.backend)
    # Unbounded queue: a burst waits rather than being refused; `concurrency` requests compute at once.
    page.queue(default_concurrency_limit=concurrency, max_size=None)
    try:
        page.launch(server_name=args.host, server_port=args.port, max_file_size=args.max_file_size,
                    show_error=False, quiet=True, ssr_mode=False, prevent_thread_lock=True, footer_links=["api"])
    except OSError as e:  # port taken, address not on this machine
        print(f"serve/app.py: cannot listen on {args.host}:{args.port} ({str(e).split('.')[0]}); "
              "pick another --port", file=sys.stderr)
        return 2
    print(f"Serving {len(manifest.models)} models of run {manifest.run} ({manifest.path}) "
          f"at http://{args.host}:{args.port}, ready in {time.perf_counter() - t0:.1f} s", flush=True)
    page.block_thread()  # until Ctrl+C
    return 0


if __name__ == "__main__":
    sys.exit(main())
