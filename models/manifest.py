"""The export manifest (runs/<run>/export/manifest.json), the contract between export and serving: its format,
its one writer (`document` + `write`, called by export) and its one reader (`read`, called by the demo, predict,
and export itself to skip unchanged models).

Format 2, every path relative to the manifest's folder and inside it:
  format, created, run (".."), model, classes, preprocessing (models.Preprocessing.as_dict: the image size
  lives here), dataset {name, synthetic}, input {name, dtype, layout}, output {name, meaning}, device,
  winner + winner_chosen_by (validation accuracy, never test), examples [photos copied from the test split],
  tta (the test-time views inside every exported model: models.inference.TTA; absent in older manifests: none),
  leaderboard {markdown, plots, mistakes} (copies of the run's reports), models {optimizer: {status,
  paddle {model, params}, onnx, opset, test_acc {trained, paddle, onnx}, test_images, max_abs_diff,
  latency_ms, throughput_ips, export_seconds, checkpoint_sha256, best_val_acc, best_epoch,
  calibration {temperature (inside the exported model), threshold (below it the answer is "not sure")},
  int8 (export/to_onnx.py --int8 only; export/int8.py) {status ("ok" | "int8 parity failed: ..." | "failed: ..."),
  onnx (only when ok), plan {method, photos, seed, split "train", min_agreement, max_acc_change, version},
  calibration_photos, quantization, kept_float + float_nodes (what stays float), agreement, export_seconds,
  proof_seconds, bytes}}}; an INT8 model's figures sit beside the float backends' under "onnx-int8" (test_acc,
  max_abs_diff, latency_ms "onnx-int8_b1", throughput_ips "onnx-int8_b32").
The input is one float32 NCHW RGB batch of preprocessing.size x preprocessing.size images made by that
preprocessing; the output is calibrated probabilities over `classes` (OUTPUT; older manifests: plain softmax,
no calibration block).
"""
from __future__ import annotations

import glob
import json
import os
from datetime import datetime, timezone

from models.networks import preprocessing
from models.preprocess import Preprocessing
from util.io import DamagedFile, read_json, write_json

FORMAT = 2
OUTPUT = ("calibrated probabilities: softmax(mean over the test-time views (tta) of the logits / the model's "
          "calibration.temperature)")
FILE = "manifest.json"
INPUT_NAME = "x"
RUN_FIRST = "Run these two commands first:\n  python train/run_all.py\n  python export/to_onnx.py"


class ManifestError(RuntimeError):
    """The manifest is missing or unusable; the message says what to do (no traceback for users)."""


def document(*, model: str, classes: list, spec: Preprocessing, tta: str, dataset: dict, output_name: str | None, device: dict,
             winner: str | None, winner_chosen_by: str | None, examples: list, leaderboard: dict, models: dict) -> dict:
    return {"format": FORMAT, "run": "..", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": model, "classes": list(classes), "preprocessing": spec.as_dict(), "tta": tta, "dataset": dataset,
            "input": {"name": INPUT_NAME, "dtype": "float32", "layout": "NCHW RGB"},
            "output": {"name": output_name, "meaning": OUTPUT}, "device": device,
            "winner": winner, "winner_chosen_by": winner_chosen_by if winner else None,
            "examples": examples, "leaderboard": leaderboard, "models": models}


def _content(manifest: dict) -> str:
    return json.dumps({k: v for k, v in manifest.items() if k != "created"}, sort_keys=True, default=str)


def write(path: str, manifest: dict, previous: dict) -> dict:
    """Write `manifest` atomically unless its content (apart from its creation time) equals `previous`;
    returns the manifest now on disk."""
    if _content(manifest) == _content(previous):
        return previous
    write_json(path, manifest)
    return manifest


def read(path: str) -> dict:
    """The manifest at `path`, checked: readable, this format, the fields every reader needs, and a
    preprocessing equal to this checkout's for its model. ManifestError (one line + what to do) otherwise."""
    if not os.path.isfile(path):
        raise ManifestError(f"manifest not found: {path}\n{RUN_FIRST}")
    try:
        m = read_json(path)
    except (DamagedFile, OSError) as e:
        raise ManifestError(f"{path}: not a readable manifest ({type(e).__name__}); rerun python export/to_onnx.py") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ManifestError(f"{path}: unknown manifest format {m.get('format') if isinstance(m, dict) else None!r} "
                            f"(this checkout reads format {FORMAT}); rerun python export/to_onnx.py")
    try:
        tuple(m["classes"]), m["input"]["name"], m["models"].items()  # noqa: B018 - each must be there and usable
        spec = Preprocessing.from_dict(m["preprocessing"])
        ours = preprocessing(m["model"], spec.size)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ManifestError(f"{path}: manifest lacks or garbles {e}; rerun python export/to_onnx.py") from None
    if spec != ours:
        raise ManifestError(f"{path}: exported with a different preprocessing than this checkout's for {m['model']}; "
                            "rerun python export/to_onnx.py with this checkout")
    return m


def spec_of(m: dict) -> Preprocessing:
    """The preprocessing of a manifest `read` returned."""
    return Preprocessing.from_dict(m["preprocessing"])


def newest(runs_dir: str) -> str:
    """The manifest of the most recently exported run under `runs_dir`."""
    found = glob.glob(os.path.join(runs_dir, "*", "export", FILE))
    if not found:
        raise ManifestError(f"no export manifest found under {runs_dir}.\n{RUN_FIRST}")
    return max(found, key=os.path.getmtime)
