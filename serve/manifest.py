"""The demo's and serve/predict.py's view of an export manifest (models/manifest.py reads and checks its format).

Every file the manifest names — models, leaderboard markdown, plots, the winner's mistakes, examples —
must resolve (links followed) to a file inside the manifest's own folder. An entry that does not is
refused: it is never opened, never handed to Gradio, and `Manifest.refused` holds one line saying so
(the demo prints them once at start). Nothing else on disk is ever opened.

A model is served with each backend whose files passed their proof: ONNX Runtime and Paddle Inference always,
its INT8 ONNX model only when its INT8 proof passed (`int8.status` "ok"; manifests without INT8 serve float).
`ModelEntry.fastest` is the default backend: the proven one with the lowest batch-1 latency measured at export.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import models
from models import manifest as contract
from models.manifest import ManifestError, newest  # noqa: F401  (what the demo and predict use)
from util.io import within

MAX_MARKDOWN = 1 << 20  # leaderboard.md is a table; read at most 1 MiB of it
INT8 = "onnx-int8"  # export/int8.py BACKEND
NO_INT8 = "no INT8 model: exported without --int8"
SERVED = ("onnx", INT8, "paddle")  # the backends a manifest's files can be run with (serve/engines.py names them)


class Refused(ValueError):
    """One named file is outside the export folder or missing; the message is the refusal line."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    onnx: str  # absolute, inside the export folder
    paddle_model: str
    paddle_params: str
    test_acc: dict  # {"trained": x, "paddle": x, "onnx": x}
    test_images: int
    best_val_acc: float | None = None  # what the run's winner is chosen on
    best_epoch: int | None = None
    temperature: float = 1.0  # inside the exported model (export/exporter.py); 1.0: not calibrated (older export)
    threshold: float = 0.0  # below this top probability the answer is "not sure" (0: always an answer)
    int8_onnx: str | None = None  # absolute, inside the export folder; only when its INT8 proof passed
    int8_status: str = NO_INT8  # why there is no INT8 model to serve, or "ok"
    latency_ms: dict = field(default_factory=dict)  # backend -> batch-1 latency measured at export

    def accuracy(self, backend: str | None = None) -> float | None:
        """Test accuracy measured on the exported files for `backend`, else the trained checkpoint's."""
        acc = self.test_acc.get(backend) if backend else None
        return acc if acc is not None else self.test_acc.get("trained")

    @property
    def backends(self) -> list[str]:
        """The backends whose files passed their proof, in SERVED order."""
        return [b for b in SERVED if b != INT8 or self.int8_onnx]

    def fastest(self) -> str:
        """The proven backend with the lowest batch-1 latency measured at export (none measured: the first)."""
        return min(self.backends, key=lambda b: self.latency_ms.get(b, float("inf")))


@dataclass
class Manifest:
    path: str
    folder: str
    run: str  # the run folder's name
    classes: tuple[str, ...]
    size: int
    preprocessing: models.Preprocessing
    input_name: str
    models: dict[str, ModelEntry]  # servable ones, best validation accuracy first (ties: run order)
    winner: str  # the servable model to offer first: the run's winner, else the best on validation
    winner_note: str = ""  # set when the run's winner is not among the servable models
    run_winner: str | None = None  # the winner the manifest names (chosen on validation by export/training)
    dataset: dict = field(default_factory=dict)  # {"name": str, "synthetic": bool}
    unavailable: dict[str, str] = field(default_factory=dict)  # name -> reason
    examples: list[str] = field(default_factory=list)
    leaderboard_md: str = ""
    plots: list[str] = field(default_factory=list)
    mistakes: str | None = None  # the winner's misclassified test images (one PNG)
    refused: list[str] = field(default_factory=list)  # one line per manifest entry not used

    @property
    def synthetic(self) -> bool:
        return bool(self.dataset.get("synthetic"))


def inside(folder: str, rel, what: str) -> str:
    """The real path of `rel` (relative to `folder`) if it is a file inside `folder` after following links;
    else Refused with the line to show."""
    if not isinstance(rel, str) or not rel:
        raise Refused(f"refused {what}: no file name")
    path = os.path.realpath(os.path.join(folder, rel))
    if not within(path, folder):
        raise Refused(f"refused {what} {rel!r}: outside the export folder {folder} (links followed); not opened")
    if not os.path.isfile(path):
        raise Refused(f"refused {what} {rel!r}: no such file in the export folder")
    return path


def _files(folder: str, rels, what: str, refused: list) -> list[str]:
    """The entries of `rels` that are files inside `folder`; one line in `refused` per other entry."""
    out = []
    for rel in rels if isinstance(rels, list) else [rels] if rels else []:
        try:
            out.append(inside(folder, rel, what))
        except Refused as e:
            hint = " (older exports named the run folder's files: rerun python export/to_onnx.py)" \
                if isinstance(rel, str) and rel.startswith("../") and what != "example" else ""
            refused.append(f"{e}{hint}")
    return out


def _number(v, default: float, lo: float, hi: float) -> float:
    """A number of the manifest within [lo, hi], else `default` (older manifests have none)."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi else default


def _int8(folder: str, name: str, block, refused: list) -> tuple[str | None, str]:
    """(the INT8 model's path when its proof passed and its file is inside the folder, else None; its status)."""
    if not isinstance(block, dict):
        return None, NO_INT8
    status = str(block.get("status") or "missing status")
    if status != "ok":
        return None, status
    try:
        return inside(folder, block.get("onnx"), f"{name} INT8 ONNX model"), status
    except Refused as err:
        refused.append(f"{err}; {name} is served in float only")
        return None, str(err).removeprefix("refused ")


def _val_rank(entries: dict, order: list) -> list:
    """Names, best validation accuracy first; ties and unknown accuracies keep the run's order."""
    return sorted(order, key=lambda n: -(entries[n].best_val_acc if entries[n].best_val_acc is not None else -1.0))


def load(path: str) -> Manifest:
    """Parse and check a manifest; models whose status is not "ok" or whose files are missing or outside
    are listed in `unavailable` with the reason instead of failing the whole demo."""
    m = contract.read(path)
    folder = os.path.dirname(os.path.realpath(path))
    classes, input_name, entries, spec = tuple(m["classes"]), m["input"]["name"], m["models"], contract.spec_of(m)

    servable, unavailable, refused = {}, {}, []
    for name, e in entries.items():
        status = e.get("status", "missing status") if isinstance(e, dict) else "malformed entry"
        if status != "ok":
            unavailable[name] = status
            continue
        try:
            paddle_files = e.get("paddle") if isinstance(e.get("paddle"), dict) else {}
            val = e.get("best_val_acc")
            cal = e.get("calibration") if isinstance(e.get("calibration"), dict) else {}
            int8_file, int8_status = _int8(folder, name, e.get("int8"), refused)
            lat = e.get("latency_ms") if isinstance(e.get("latency_ms"), dict) else {}
            servable[name] = ModelEntry(
                name=name,
                onnx=inside(folder, e.get("onnx"), f"{name} ONNX model"),
                paddle_model=inside(folder, paddle_files.get("model"), f"{name} Paddle model"),
                paddle_params=inside(folder, paddle_files.get("params"), f"{name} Paddle params"),
                test_acc=dict(e.get("test_acc") or {}),
                test_images=int(e.get("test_images") or 0),
                best_val_acc=float(val) if isinstance(val, (int, float)) else None,
                best_epoch=e.get("best_epoch"), temperature=_number(cal.get("temperature"), 1.0, 1e-6, 1e6),
                threshold=_number(cal.get("threshold"), 0.0, 0.0, 1.0), int8_onnx=int8_file, int8_status=int8_status,
                latency_ms={b: _number(lat.get(f"{b}_b1"), float("inf"), 0.0, 1e9) for b in SERVED
                            if f"{b}_b1" in lat})
        except Refused as err:
            unavailable[name] = str(err).removeprefix("refused ")
            refused.append(f"{err}; model {name} not served")
    if not servable:
        detail = "; ".join(f"{k}: {v}" for k, v in unavailable.items()) or "it lists no models"
        raise ManifestError(f"{path}: no servable model ({detail}); rerun python export/to_onnx.py")
    ranked = _val_rank(servable, list(servable))

    named, note = m.get("winner"), ""
    if isinstance(named, str) and named in servable:
        winner = named
    else:
        winner = ranked[0]
        if isinstance(named, str) and named:
            why = unavailable.get(named, "not exported")
            note = f"The run's winner, {named}, is not served here ({why}); {winner} is the best on validation of those that are."

    board = m.get("leaderboard") if isinstance(m.get("leaderboard"), dict) else {}
    leaderboard_md = ""
    for md_path in _files(folder, board.get("markdown"), "leaderboard markdown", refused)[:1]:
        with open(md_path, encoding="utf-8", errors="replace") as f:
            leaderboard_md = f.read(MAX_MARKDOWN)
    dataset = m.get("dataset") if isinstance(m.get("dataset"), dict) else {}
    return Manifest(
        path=os.path.abspath(path), folder=folder,
        run=os.path.basename(os.path.realpath(os.path.join(folder, str(m.get("run") or "..")))),  # a name only, never opened
        classes=classes, size=spec.size, preprocessing=spec, input_name=input_name, models={n: servable[n] for n in ranked},
        winner=winner, winner_note=note, run_winner=named if isinstance(named, str) and named else None,
        dataset={"name": str(dataset.get("name") or ""), "synthetic": dataset.get("synthetic") is True},
        unavailable=unavailable,
        examples=_files(folder, m.get("examples") or [], "example", refused),
        leaderboard_md=leaderboard_md,
        plots=_files(folder, board.get("plots") or [], "plot", refused),
        mistakes=next(iter(_files(folder, board.get("mistakes"), "mistakes image", refused)), None),
        refused=refused)
