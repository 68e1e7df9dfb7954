"""The demo's page and API: `classify` (one model) and `compare_all` (every model) over one manifest.

Both receive the upload's file record, not decoded pixels (`preprocess=False`), and hand its path to
serve/decode.py (the model's `models.Preprocessing`, large images gated), so decoding, EXIF rotation and
the decompression-bomb guard are the shared code's and the answer equals the exported model's for that
file. User errors become one-line messages on the page (`gr.Error`), which gradio_client callers
receive as `AppError`. Every percentage is written by serve/text.py's `pct`.
"""
from __future__ import annotations

import os
import time

import gradio as gr

import models
from serve import decode
from serve.engines import AUTO, BACKENDS, CHOICES, Engines, NotServed
from serve.manifest import Manifest, ModelEntry
from serve.text import SYNTHETIC, answer, knows, unsure_note
from util.fmt import pct

HEADERS = ["optimizer", "answer", "model confidence", "best val accuracy", "test accuracy", "latency (ms)", "backend"]
CONFIDENCE = ("model confidence: the model's probability for each class, calibrated on the validation split "
              "(of the answers given with 80% confidence, about 80% were right there)")


def _error(message: str) -> gr.Error:
    """A one-line message shown on the page until closed; no server traceback for user errors."""
    return gr.Error(message, duration=None, print_exception=False)


def choice_label(m: Manifest, e: ModelEntry) -> str:
    """How a model is listed: its validation accuracy (what the winner is chosen on), test accuracy beside."""
    mark = " · the run's winner" if e.name == m.run_winner else " · best on validation" if e.name == m.winner else ""
    return f"{e.name}: val {pct(e.best_val_acc)}, test {pct(e.accuracy())}{mark}"


class Demo:
    """What the page and the API do, over one manifest and its engines."""

    def __init__(self, manifest: Manifest, engines: Engines, upload_dir: str):
        self.m, self.engines, self.upload_dir = manifest, engines, os.path.realpath(upload_dir)

    def where(self, backend: str) -> str:
        return self.engines.where(backend)

    def _input(self, image, backend: str):
        """The upload's file record -> (1, 3, S, S) float32 batch from the model's preprocessing, and seconds taken.

        Only files in the demo's upload folder are read: a server path written into a request is refused
        (Gradio refuses it first; this is the second lock).
        """
        if backend not in CHOICES:
            raise _error(f"Unknown backend {backend!r}: choose one of {', '.join(CHOICES)}.")
        path = image.get("path") if isinstance(image, dict) else None
        if image is None or (isinstance(image, dict) and not path):
            raise _error("No image: upload a photo (JPEG, PNG, WebP, ...) or pick an example, then try again.")
        real = os.path.realpath(path) if isinstance(path, str) else ""
        if not real or os.path.commonpath([real, self.upload_dir]) != self.upload_dir:
            raise _error("Only uploaded files are classified: send the image as a file upload.")
        t = time.perf_counter()
        try:
            x = decode.preprocess(real, self.m.preprocessing)[None]
        except models.ImageError as e:
            raise _error(f"Cannot classify this file: {e}") from None
        return x, time.perf_counter() - t

    def _run(self, backend: str, name: str, x):
        try:
            return self.engines.run(backend, name, x)
        except NotServed as e:
            raise _error(f"{e}.") from None
        except (RuntimeError, OSError, ValueError) as e:  # a model file that loads but will not run
            first = (str(e).splitlines() or [type(e).__name__])[0][:200]
            raise _error(f"{CHOICES[backend]} could not run {name}: {first}") from None

    def classify(self, image, model_name: str, backend: str = AUTO):
        """One photo, one model -> ({class: model confidence}, markdown: the answer with what it means)."""
        entry = self.m.models.get(model_name)
        if entry is None:
            raise _error(f"Unknown model {model_name!r}: choose one of {', '.join(self.m.models)}.")
        x, t_pre = self._input(image, backend)
        probs, t_model, used = self._run(backend, model_name, x)
        confidences = {c: float(p) for c, p in zip(self.m.classes, probs[0])}
        ranked = sorted(confidences.items(), key=lambda kv: -kv[1])
        lines = [f"## {answer(self.m.classes, probs[0], entry.threshold)}", "", "| class | model confidence |", "|---|---|"]
        lines += [f"| {c} | {pct(p)} |" for c, p in ranked]
        lines += ["", f"*{CONFIDENCE}.*  ", knows(self.m.classes)]
        lines += [unsure_note(entry.threshold), ""] if entry.threshold > 0 else [""]
        if self.m.synthetic:
            lines += [f"**{SYNTHETIC}**", ""]
        winner = " (the run's winner)" if model_name == self.m.run_winner else ""
        lines += [f"**{model_name}**{winner}: best validation accuracy **{pct(entry.best_val_acc)}**, "
                  f"test accuracy **{pct(entry.accuracy(used))}** on {entry.test_images} test images "
                  f"(measured on the exported model)  ",
                  f"Ran on **{self.where(used)}**{' (the fastest that passed its proof)' if backend == AUTO else ''} "
                  f"in **{1000 * (t_pre + t_model):.1f} ms** (preprocess {1000 * t_pre:.1f} ms + model {1000 * t_model:.1f} ms)"]
        return confidences, "\n".join(lines)

    def compare_all(self, image, backend: str = AUTO):
        """One photo through every model (best on validation first) -> (rows of HEADERS, markdown summary). A model
        without a proven file for `backend` runs its fastest proven one; the backend column says which ran."""
        x, t_pre = self._input(image, backend)
        rows, votes, ran = [], {}, []
        for name, entry in self.m.models.items():
            probs, secs, used = self._run(self.engines.resolve(backend, name, fallback=True), name, x)
            ran.append(used)
            k = int(probs[0].argmax())
            said = answer(self.m.classes, probs[0], entry.threshold)
            rows.append([name, said, pct(float(probs[0][k])), pct(entry.best_val_acc),
                         pct(entry.accuracy(used)), round(1000 * secs, 2), BACKENDS[used]])
            said = said if said in self.m.classes else "not sure"
            votes[said] = votes.get(said, 0) + 1
        top = max(votes, key=votes.get)
        info = (f"{votes[top]} of {len(rows)} models say **{top}**. {knows(self.m.classes)}  \n"
                f"Ran on {' · '.join(dict.fromkeys(self.where(u) for u in ran))}; preprocessing once: {1000 * t_pre:.1f} ms.")
        return rows, info


def build(demo: Demo, backend: str) -> gr.Blocks:
    """The page: a Classify tab (with Compare all and the examples) and a Leaderboard tab."""
    m = demo.m
    choices = [(choice_label(m, e), name) for name, e in m.models.items()]
    offered = [b for b in CHOICES if b == AUTO or any(b in e.backends for e in m.models.values())]
    devices = " · ".join(demo.where(b) for b in offered if b in BACKENDS)
    with gr.Blocks(title="Which optimizer? Insect classifier", analytics_enabled=False) as page:
        if m.synthetic:
            gr.Markdown(f"> ⚠️ **{SYNTHETIC}**", elem_id="synthetic-banner")
        gr.Markdown(f"# Which optimizer? {' / '.join(m.classes)}\nRun **{m.run}**: one network trained once per optimizer; "
                    f"the models are listed best on **validation** first (the test split never chooses). "
                    f"Pick a model and upload a photo, or compare all models at once.  \n{knows(m.classes)}  \n"
                    f"Runs on: {devices}")
        notes = ([m.winner_note] if m.winner_note else []) + \
            (["Not served: " + "; ".join(f"{k} ({v})" for k, v in m.unavailable.items())] if m.unavailable else [])
        if notes:
            gr.Markdown("  \n".join(notes))
        with gr.Tab("Classify"):
            with gr.Row():
                with gr.Column():
                    image = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"], height=360,
                                     label="Photo", elem_id="photo")
                    model = gr.Dropdown(choices, value=m.winner, elem_id="model",
                                        label="Model (optimizer: best validation accuracy, test accuracy)")
                    engine = gr.Radio([(CHOICES[b], b) for b in offered], value=backend if backend in offered else AUTO,
                                      label="Backend", elem_id="backend")
                    with gr.Row():
                        classify_btn = gr.Button("Classify", variant="primary", elem_id="classify")
                        compare_btn = gr.Button("Compare all models", elem_id="compare")
                with gr.Column():
                    # The API's first output (exact model confidences for gradio_client); the page shows `info`,
                    # whose percentages have the one format of serve/text.py (gr.Label rounds to whole percents).
                    label = gr.Label(num_top_classes=len(m.classes), label="Model confidence", visible=False)
                    info = gr.Markdown(knows(m.classes), elem_id="prediction")
            table = gr.Dataframe(headers=HEADERS, datatype=["str"] * 5 + ["number", "str"],
                                 interactive=False, label="All models on this photo", elem_id="compare-table")
            compare_info = gr.Markdown()
            if m.examples:
                gr.Examples([[p] for p in m.examples], inputs=[image], cache_examples=False,
                            label="Examples from the test split")
        with gr.Tab("Leaderboard"):
            gr.Markdown(m.leaderboard_md or "The run's leaderboard.md is not available.")
            for plot in m.plots:
                gr.Image(plot, label=os.path.basename(plot), interactive=False, type="filepath")
            if m.mistakes:
                gr.Image(m.mistakes, interactive=False, type="filepath", elem_id="mistakes",
                         label=f"Test images the run's winner ({m.run_winner or m.winner}) got wrong")

        gr.on([classify_btn.click, image.upload], demo.classify, inputs=[image, model, engine],
              outputs=[label, info], api_name="classify", preprocess=False)
        compare_btn.click(demo.compare_all, inputs=[image, engine], outputs=[table, compare_info],
                          api_name="compare_all", preprocess=False)
    return page
