"""The run directory (runs/<run>/), the contract between training and export: one writer of config.json
(`config_document`), one reader of the whole folder (`RunDir`).

config.json holds each setting once:
  settings       what the user chose: model, finetune, pretrained, epochs, batch_size, seed, tta (test-time views;
                 "none" for runs written before it existed)
  preprocessing  the model's `models.Preprocessing` at --image-size (the image size lives here)
  classes, optimizers (run order), hyperparams (per optimizer), data (root, layout, fingerprint, counts,
  sizes, skipped, missing, notes, synthetic, decode/feature cache details), device, lr_schedule,
  augmentation, distributed, versions, and with --tune the search plan.
A run resumes only where its `identity` (settings + image size + data fingerprint) is unchanged.
Per optimizer: <name>/best.pdparams (the whole network at the best validation accuracy), last.pdstate,
history.json, result.json, test_predictions.json. results.json: the winner and one row per optimizer
(train/report.py). Runs written before config.json had "settings" (flat keys) are read too.
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
BOARD = ("leaderboard.md", "compare.png", "leaderboard.png", "calibration.png", "confusion.png", "mistakes.png")  # what people look at
CONFIG, RESULTS, CHECKPOINT = "config.json", "results.json", "best.pdparams"


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
