"""The run directory (runs/<run>/), the whole contract between training and export: every file name of a run and
of an optimizer's folder (below; nothing else spells them), one writer of config.json (`config_document`), one
reader of the whole folder (`RunDir`).

config.json holds each setting once:
  settings       what the user chose: model, finetune, pretrained, epochs, batch_size, seed, tta (test-time views;
                 "none" for runs written before it existed)
  preprocessing  the model's `models.Preprocessing` at --image-size (the image size lives here)
  classes, optimizers (run order), hyperparams (per optimizer), data (root, layout, fingerprint, counts,
  sizes, skipped, missing, notes, synthetic, decode/feature cache details), device, lr_schedule,
  augmentation, distributed, versions, and with --tune the search plan.
A run resumes only where its `identity` (settings + image size + data fingerprint) is unchanged.
Per optimizer: <name>/best.pdparams (the whole network at the best validation accuracy), last.pdstate,
history.json, result.json (with the calibration fitted on validation), test_predictions.json, curves.png,
confusion.png; with --seeds <name>/seed<s>/ the same; with --tune tune/<name>/lr_<rate>/ per trial.
results.json: the winner (models/ranking.py) and one row per optimizer (train/summary.py). Runs written before
config.json had "settings" (flat keys) are read too.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from models.networks import preprocessing
from models.preprocess import Preprocessing
from util.io import DamagedFile, read_json

SETTINGS = ("model", "finetune", "pretrained", "epochs", "batch_size", "seed", "tta")
# what runs written before a setting existed did, for each such setting
BEFORE = {"tta": "none"}
# ---- every file name of a run folder (this module is the only place they are spelled) -----------------------
CONFIG, RESULTS = "config.json", "results.json"  # the run's settings (written first) and results (written last)
LEADERBOARD, COMPARE, LEADERBOARD_PNG, CALIBRATION, CONFUSION, MISTAKES = (
    "leaderboard.md", "compare.png", "leaderboard.png", "calibration.png", "confusion.png", "mistakes.png")
BOARD = (LEADERBOARD, COMPARE, LEADERBOARD_PNG, CALIBRATION, CONFUSION, MISTAKES)  # what people look at (export copies)
VAL_CURVES, LR_SENSITIVITY = "val_curves.png", "lr_sensitivity.png"  # with --seeds / --tune
EXPORT = "export"  # export/to_onnx.py's folder inside the run
# per optimizer (runs/<run>/<optimizer>/, and each of its seed and trial folders):
CHECKPOINT = "best.pdparams"  # the whole network at the best validation accuracy
LAST = "last.pdstate"  # what resume needs: model + optimizer state, finished epoch, best so far, history
HISTORY = "history.json"  # one row per epoch
RESULT = "result.json"  # the optimizer's result row, written last: it is done
PREDICTIONS = "test_predictions.json"  # the best checkpoint's calibrated test probabilities
CURVES = "curves.png"  # and CONFUSION, its own confusion matrix


def init_weights(run: str, seed: int, base_seed: int) -> str:
    """The initial weights every optimizer of seed `seed` starts from."""
    return os.path.join(run, "init.pdparams" if seed == base_seed else f"init_seed{seed}.pdparams")


def optimizer_dir(run: str, name: str, seed: int | None = None, base_seed: int | None = None) -> str:
    """An optimizer's folder; with --seeds, seed `seed`'s (the base seed's is the optimizer folder itself)."""
    return os.path.join(run, name) if seed is None or seed == base_seed else os.path.join(run, name, f"seed{seed}")


def trial_dir(run: str, name: str, lr: float) -> str:
    """A learning-rate trial's folder (--tune)."""
    return os.path.join(run, "tune", name, f"lr_{lr:.3g}")


class RunDirError(ValueError):
    """Not a usable run directory; the message is one line saying what to do."""


def config_document(settings: dict, spec: Preprocessing, **rest) -> dict:
    """config.json's content: the settings and the preprocessing, then everything else as given."""
    missing = [k for k in SETTINGS if k not in settings]
    if missing:
        raise ValueError(f"settings lack {', '.join(missing)}")
    return {"settings": {k: settings[k] for k in SETTINGS}, "preprocessing": spec.as_dict(), **rest}


def identity(settings: dict, spec: Preprocessing, fingerprint: str | None) -> dict:
    """What must match for a run directory to be resumed."""
    return {**{k: settings[k] for k in SETTINGS}, "image_size": spec.size, "data_fingerprint": fingerprint}


@dataclass
class RunDir:
    path: str
    config: dict

    @property
    def settings(self) -> dict:
        """The user's settings; older runs stored them as flat keys (finetune then was always "all")."""
        if isinstance(self.config.get("settings"), dict):
            return {**BEFORE, **self.config["settings"]}
        old = {**{k: self.config.get(k) for k in SETTINGS}, **BEFORE}
        old["finetune"] = old["finetune"] or "all"
        old["pretrained"] = bool(old["pretrained"])
        return old

    @property
    def model(self) -> str:
        return self.settings["model"]

    @property
    def preprocessing(self) -> Preprocessing:
        if "preprocessing" in self.config:
            return Preprocessing.from_dict(self.config["preprocessing"])
        return preprocessing(self.model, int(self.config["image_size"]))  # older runs: the model's at their size

    @property
    def image_size(self) -> int:
        return self.preprocessing.size

    @property
    def classes(self) -> list:
        return list(self.config["classes"])

    @property
    def data(self) -> dict:
        return self.config.get("data") or {}

    @property
    def optimizers(self) -> list:
        """The run's optimizers in order (config.json), else every folder holding a best checkpoint."""
        return list(self.config.get("optimizers") or sorted(
            d for d in os.listdir(self.path) if os.path.isfile(os.path.join(self.path, d, CHECKPOINT))))

    def identity(self) -> dict:
        return identity(self.settings, self.preprocessing, self.data.get("fingerprint"))

    def results(self) -> dict:
        """results.json ({} before the first sweep finished); DamagedFile when unreadable."""
        summary = read_json(os.path.join(self.path, RESULTS), {}) or {}
        if not isinstance(summary, dict):
            raise DamagedFile(f"{os.path.join(self.path, RESULTS)} is unreadable (not a run's results)")
        return summary

    def checkpoint(self, name: str) -> str:
        return os.path.join(self.path, name, CHECKPOINT)


def read(path: str) -> RunDir:
    """The run directory at `path`; RunDirError (one line) if it is not one, DamagedFile if config.json is damaged."""
    path = os.path.abspath(path)
    cfg_path = os.path.join(path, CONFIG)
    if not os.path.isdir(path):
        raise RunDirError(f"run folder {path} does not exist")
    if not os.path.isfile(cfg_path):
        raise RunDirError(f"{path} is not a run folder (no {CONFIG}): give a folder written by train/run_all.py")
    config = read_json(cfg_path)
    if not isinstance(config, dict):
        raise DamagedFile(f"{cfg_path} is unreadable (not a run's settings)")
    run = RunDir(path, config)
    try:
        run.settings["model"], run.preprocessing, run.classes  # noqa: B018 - the fields every stage needs
    except (KeyError, TypeError, ValueError) as e:
        raise RunDirError(f"{cfg_path} lacks {e}: not a run written by train/run_all.py") from None
    return run


def newest(runs_dir: str) -> str | None:
    """The run folder under `runs_dir` whose config.json is newest, or None."""
    found = [os.path.join(runs_dir, d) for d in os.listdir(runs_dir)] if os.path.isdir(runs_dir) else []
    found = [d for d in found if os.path.isfile(os.path.join(d, CONFIG))]
    return max(found, key=lambda d: os.path.getmtime(os.path.join(d, CONFIG))) if found else None
