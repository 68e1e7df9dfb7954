"""Read an export manifest.json (written by export/to_onnx.py) for the demo, and nothing else.

Every path in a manifest is relative to its folder. Model files must stay inside that export folder
(after resolving links); the example photos and the leaderboard files may sit elsewhere (the dataset,
the run folder) because the manifest names them. Nothing outside this list is ever opened.
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field

import models

FORMAT = 2
RUN_FIRST = "Run these two commands first:\n  python train/run_all.py\n  python export/to_onnx.py"


class ManifestError(RuntimeError):
    """The manifest is missing or unusable; the message says what to do (no traceback for users)."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    onnx: str  # absolute, inside the export folder
    paddle_model: str
    paddle_params: str
    test_acc: dict  # {"trained": x, "paddle": x, "onnx": x}
    test_images: int

    def accuracy(self, backend: str | None = None) -> float | None:
        """Test accuracy measured on the exported files for `backend`, else the trained checkpoint's."""
        acc = self.test_acc.get(backend) if backend else None
        return acc if acc is not None else self.test_acc.get("trained")


@dataclass
class Manifest:
    path: str
    folder: str
    run: str  # the run folder's name
    classes: tuple[str, ...]
    size: int
    preprocessing: models.Preprocessing
    input_name: str
    models: dict[str, ModelEntry]  # servable ones, best test accuracy first
    unavailable: dict[str, str] = field(default_factory=dict)  # name -> reason
    examples: list[str] = field(default_factory=list)
    leaderboard_md: str = ""
    plots: list[str] = field(default_factory=list)


def newest(runs_dir: str) -> str:
    """The manifest of the most recently exported run under `runs_dir`."""
    found = glob.glob(os.path.join(runs_dir, "*", "export", "manifest.json"))
    if not found:
        raise ManifestError(f"no export manifest found under {runs_dir}.\n{RUN_FIRST}")
    return max(found, key=os.path.getmtime)


def _inside(folder: str, rel: str, what: str) -> str:
    """Resolve `rel` against `folder`; refuse anything that escapes it or is not a file."""
    if not isinstance(rel, str) or not rel:
        raise ManifestError(f"manifest: {what} has no file name")
    path = os.path.realpath(os.path.join(folder, rel))
    if os.path.commonpath([path, folder]) != folder:
        raise ManifestError(f"manifest: {what} {rel!r} points outside the export folder; refusing to load it")
    if not os.path.isfile(path):
        raise ManifestError(f"manifest: {what} {rel!r} is missing")
    return path


def _named_file(folder: str, rel) -> str | None:
    """A file the manifest names outside the model list (example, leaderboard): its path if it exists."""
    if not isinstance(rel, str) or not rel:
        return None
    path = os.path.realpath(os.path.join(folder, rel))
    return path if os.path.isfile(path) else None


def load(path: str) -> Manifest:
    """Parse and check a manifest; models whose status is not "ok" or whose files are missing are
    listed in `unavailable` with the reason instead of failing the whole demo."""
    if not os.path.isfile(path):
        raise ManifestError(f"manifest not found: {path}\n{RUN_FIRST}")
    try:
        with open(path, encoding="utf-8") as f:
            m = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path}: not a readable manifest ({type(e).__name__}); rerun python export/to_onnx.py") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ManifestError(f"{path}: unknown manifest format {m.get('format') if isinstance(m, dict) else None!r} "
                            f"(this demo reads format {FORMAT}); rerun python export/to_onnx.py")
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    try:
        classes, input_name, entries = tuple(m["classes"]), m["input"]["name"], m["models"]
        spec = models.Preprocessing.from_dict(m["preprocessing"])
        ours = models.preprocessing(m["model"], spec.size)
    except (KeyError, TypeError, ValueError) as e:
        raise ManifestError(f"{path}: manifest lacks or garbles {e}; rerun python export/to_onnx.py") from None
    if spec != ours:
        raise ManifestError(f"{path}: exported with a different preprocessing than this checkout's for {m['model']}; "
                            "rerun python export/to_onnx.py with this checkout")

    servable, unavailable = {}, {}
    for name, e in entries.items():
        status = e.get("status", "missing status") if isinstance(e, dict) else "malformed entry"
        if status != "ok":
            unavailable[name] = status
            continue
        try:
            servable[name] = ModelEntry(
                name=name,
                onnx=_inside(folder, e.get("onnx"), f"{name} ONNX model"),
                paddle_model=_inside(folder, (e.get("paddle") or {}).get("model"), f"{name} Paddle model"),
                paddle_params=_inside(folder, (e.get("paddle") or {}).get("params"), f"{name} Paddle params"),
                test_acc=dict(e.get("test_acc") or {}),
                test_images=int(e.get("test_images") or 0))
        except ManifestError as err:
            unavailable[name] = str(err).removeprefix("manifest: ")
    if not servable:
        detail = "; ".join(f"{k}: {v}" for k, v in unavailable.items()) or "it lists no models"
        raise ManifestError(f"{path}: no servable model ({detail}); rerun python export/to_onnx.py")
    ranked = sorted(servable.values(), key=lambda s: -(s.accuracy() or 0.0))

    board = m.get("leaderboard") or {}
    md_path = _named_file(folder, board.get("markdown"))
    leaderboard_md = ""
    if md_path:
        with open(md_path, encoding="utf-8", errors="replace") as f:
            leaderboard_md = f.read()
    return Manifest(
        path=os.path.abspath(path), folder=folder,
        run=os.path.basename(os.path.realpath(os.path.join(folder, str(m.get("run") or "..")))),  # "run": the run folder
        classes=classes, size=spec.size, preprocessing=spec, input_name=input_name, models={s.name: s for s in ranked},
        unavailable=unavailable,
        examples=[p for p in (_named_file(folder, r) for r in m.get("examples") or []) if p],
        leaderboard_md=leaderboard_md,
        plots=[p for p in (_named_file(folder, r) for r in board.get("plots") or []) if p])
