"""Gradio demo: upload an insect photo, pick any optimizer's exported model, see the prediction.

    python serve/app.py                                   # newest run's manifest, http://127.0.0.1:7860
    python serve/app.py --manifest runs/hym/export/manifest.json --port 7861 --backend onnx

Reads one export manifest.json only (see serve/manifest.py) and serves its models with ONNX Runtime
or Paddle Inference. Photos go through `models.preprocess`, the function training and export use, so
the page gives what the exported model gives. API (gradio_client): `classify(image, model_name,
backend)` and `compare_all(image, backend)`; backend is optional.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import models  # noqa: E402  (first: quiets Paddle)
from serve.engines import BACKENDS, Engines, cpu_threads  # noqa: E402
from serve.manifest import Manifest, ManifestError, load, newest  # noqa: E402


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


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


class Demo:
    """The two things the page and the API do: classify with one model, compare all models."""

    def __init__(self, manifest: Manifest, engines: Engines, upload_dir: str):
        self.m, self.engines, self.upload_dir = manifest, engines, os.path.realpath(upload_dir)

    def _input(self, image, backend: str):
        """The uploaded file's path -> (1, 3, S, S) batch via models.preprocess, plus seconds taken.

        Only files Gradio stored from an upload are accepted: a path written into a request is refused.
        """
        import gradio as gr

        if backend not in BACKENDS:
            raise _error(gr, f"Unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}.")
        path = image.get("path") if isinstance(image, dict) else None
        if image is None or (isinstance(image, dict) and not path):
            raise _error(gr, "No image: upload a photo (JPEG, PNG, WebP, ...) or pick an example, then try again.")
        if not path or os.path.commonpath([os.path.realpath(path), self.upload_dir]) != self.upload_dir:
            raise _error(gr, "Only uploaded files are classified: send the image as a file upload.")
        t = time.perf_counter()
        try:
            x = models.preprocess(os.path.realpath(path), self.m.size)[None]
        except models.ImageError as e:
            raise _error(gr, f"Cannot classify this file: {e}") from None
        return x, time.perf_counter() - t

    def _run(self, backend: str, name: str, x):
        import gradio as gr

        try:
            return self.engines.run(backend, name, x)
        except (RuntimeError, OSError, ValueError) as e:  # a model file that loads but will not run
            first = (str(e).splitlines() or [type(e).__name__])[0][:200]
            raise _error(gr, f"{BACKENDS[backend]} could not run {name}: {first}") from None

    def where(self, backend: str) -> str:
        return f"{BACKENDS[backend]} on {self.engines.device(backend)}"

    def classify(self, image, model_name: str, backend: str = "onnx"):
        """Classify one photo with one model: ({class: probability}, markdown with accuracy/device/time)."""
        import gradio as gr

        entry = self.m.models.get(model_name)
        if entry is None:
            raise _error(gr, f"Unknown model {model_name!r}: choose one of {', '.join(self.m.models)}.")
        x, t_pre = self._input(image, backend)
        probs, t_model = self._run(backend, model_name, x)
        confidences = {c: float(p) for c, p in zip(self.m.classes, probs[0])}
        info = (f"**{model_name}**: test accuracy **{_pct(entry.accuracy(backend))}** "
                f"({entry.test_images} test images, measured on the exported model)  \n"
                f"Ran with **{self.where(backend)}** in **{1000 * (t_pre + t_model):.1f} ms** "
                f"(preprocess {1000 * t_pre:.1f} ms + model {1000 * t_model:.1f} ms)")
        return confidences, info

    def compare_all(self, image, backend: str = "onnx"):
        """Run the photo through every model: rows of optimizer, class, confidence, test accuracy, latency."""
        x, t_pre = self._input(image, backend)
        rows = []
        for name, entry in self.m.models.items():
            probs, secs = self._run(backend, name, x)
            k = int(probs[0].argmax())
            acc = entry.accuracy(backend)
            rows.append([name, self.m.classes[k], round(100 * float(probs[0][k]), 2),
                         None if acc is None else round(100 * acc, 2), round(1000 * secs, 2)])
        votes = {}
        for r in rows:
            votes[r[1]] = votes.get(r[1], 0) + 1
        top = max(votes, key=votes.get)
        info = (f"{votes[top]} of {len(rows)} models say **{top}**. {self.where(backend)}; "
                f"preprocessing once: {1000 * t_pre:.1f} ms.")
        return rows, info


def _error(gr, message: str):
    """A one-line message shown on the page (and returned to API callers); no server traceback."""
    return gr.Error(message, duration=None, print_exception=False)


def build(demo: Demo, backend: str):
    """The page: Classify tab (with Compare all) and Leaderboard tab."""
    import gradio as gr

    m = demo.m
    choices = [(f"{name} (test acc {_pct(e.accuracy())})", name) for name, e in m.models.items()]
    devices = " · ".join(demo.where(b) for b in BACKENDS)
    with gr.Blocks(title="Which optimizer? Insect classifier", analytics_enabled=False) as page:
        gr.Markdown(f"# Bee, wasp or other?\nRun **{m.run}**: one small CNN trained once per optimizer. "
                    f"Pick a model, upload a photo, or compare all models at once.  \nDevices: {devices}")
        if m.unavailable:
            gr.Markdown("Not served: " + "; ".join(f"{k} ({v})" for k, v in m.unavailable.items()))
        with gr.Tab("Classify"):
            with gr.Row():
                with gr.Column():
                    image = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                     label="Photo", elem_id="photo")
                    model = gr.Dropdown(choices, value=choices[0][1], label="Model (optimizer, test accuracy)")
                    engine = gr.Radio([(v, k) for k, v in BACKENDS.items()], value=backend, label="Backend")
                    with gr.Row():
                        classify_btn = gr.Button("Classify", variant="primary", elem_id="classify")
                        compare_btn = gr.Button("Compare all models", elem_id="compare")
                with gr.Column():
                    label = gr.Label(num_top_classes=len(m.classes), label="Prediction", elem_id="prediction")
                    info = gr.Markdown(elem_id="info")
            table = gr.Dataframe(headers=["optimizer", "predicted class", "confidence (%)", "test accuracy (%)",
                                          "latency (ms)"], datatype=["str", "str", "number", "number", "number"],
                                 interactive=False, label="All models on this photo", elem_id="compare-table")
            compare_info = gr.Markdown()
            if m.examples:
                gr.Examples([[p] for p in m.examples], inputs=[image], cache_examples=False,
                            label="Examples from the test split")
        with gr.Tab("Leaderboard"):
            gr.Markdown(m.leaderboard_md or "The run's leaderboard.md is not available.")
            for plot in m.plots:
                gr.Image(plot, label=os.path.basename(plot), interactive=False, type="filepath")

        # preprocess=False: the function gets the upload's file record and hands its path to
        # models.preprocess, so decoding, EXIF rotation and the bomb guard are the shared code's.
        gr.on([classify_btn.click, image.upload], demo.classify, inputs=[image, model, engine],
              outputs=[label, info], api_name="classify", preprocess=False)
        compare_btn.click(demo.compare_all, inputs=[image, engine], outputs=[table, compare_info],
                          api_name="compare_all", preprocess=False)
    return page


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    try:
        manifest = load(args.manifest or newest(args.runs))
    except ManifestError as e:
        print(f"serve/app.py: {e}", file=sys.stderr)
        return 2
    import gradio as gr
    from gradio.utils import get_upload_folder

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per internal HTTP request otherwise

    concurrency = max(1, args.concurrency)
    engines = Engines(manifest, threads=cpu_threads(concurrency))
    page = build(Demo(manifest, engines, get_upload_folder()), args.backend)
    # Unbounded queue: a burst waits instead of being refused; `concurrency` requests run at once.
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
    try:
        page.block_thread()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
