"""The plan of one `train/run_all.py` invocation: every setting resolved once (train/cli.py builds it from the
command line), frozen, handed down and never changed (nanoGPT: settle the configuration, then run straight).

The plain sweep is the plan with one seed and no search; --tune adds the learning-rate search, --seeds N the
repeats, --target the time-to-accuracy target (train/compare.py's statistics).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from models import cards, rundir
from models.preprocess import Preprocessing
from train.optimizers import hyperparams as registry_hyperparams
from train.setup import Setup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Plan:
    data: str | None  # --data as given (None: data/kaggle_bee_vs_wasp, else a kagglehub download)
    optimizers: tuple  # in the order they train
    model: str
    finetune: str  # the regime, resolved ("auto" never reaches here)
    pretrained: bool
    epochs: int
    batch_size: int
    image_size: int
    tta: str  # test-time views (models.inference.TTA)
    seed: int
    device: str  # "cpu" | "gpu": what this process trains on (under the launcher each rank takes its own card)
    lr: tuple  # --lr overrides: ((optimizer, learning rate), ...)
    out: str | None  # --out, absolute; None: runs/<dataset>-... (`folder`)
    cache_dir: str  # absolute
    workers: int
    parallel: int
    allow_split_overlap: bool
    tune: bool
    tune_budget: float
    seeds: int
    target: float | None
    budget: float | None = None  # minutes the comparison may take (train/budget.py); None: the protocol is forced

    @property
    def forced(self) -> bool:
        """The protocol was named on the command line (--tune, --seeds, --target), not chosen for a budget."""
        return self.budget is None

    @property
    def card(self) -> cards.Card:
        return cards.get(self.model)

    @property
    def compare(self) -> bool:
        """A comparison beyond one seed at the defaults: search, seeds or a time-to-accuracy target."""
        return self.tune or self.seeds > 1 or self.target is not None

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seed, self.seed + self.seeds))

    @property
    def spec(self) -> Preprocessing:
        return self.card.preprocessing(self.image_size)

    def settings(self) -> dict:
        """config.json's "settings" (models/rundir.py SETTINGS)."""
        return {"model": self.model, "finetune": self.finetune, "pretrained": self.pretrained, "epochs": self.epochs,
                "batch_size": self.batch_size, "seed": self.seed, "tta": self.tta}

    def setup(self, num_classes: int) -> Setup:
        return Setup(self.model, num_classes, self.image_size, self.finetune, self.pretrained, self.tta)

    def hyperparams(self, name: str) -> dict:
        """The registry's hyperparameters for `name` in this plan's profile, with its --lr override if any."""
        lr = dict(self.lr).get(name)
        return registry_hyperparams(name, self.setup(1).profile, **({"learning_rate": lr} if lr is not None else {}))

    def folder(self, dataset_root: str) -> str:
        """The run folder: --out, else runs/<dataset>-<model>[-<regime>]-<size>px-<epochs>ep-seed<seed>[-tuned]
        (deterministic, so the same command resumes)."""
        if self.out:
            return self.out
        regime = f"-{self.finetune}" if len(self.card.regimes) > 1 else ""
        name = (f"{os.path.basename(dataset_root.rstrip('/'))}-{self.model}{regime}-{self.image_size}px-"
                f"{self.epochs}ep-seed{self.seed}{'-tuned' if self.tune else ''}")
        return os.path.join(ROOT, "runs", name)

    def identity(self, fingerprint: str | None) -> dict:
        """What must match for a run folder to be resumed."""
        return rundir.identity(self.settings(), self.spec, fingerprint)
