"""What a run trains: the network, its preprocessing, and which part of it learns (the fine-tuning regime)."""
from __future__ import annotations

from dataclasses import dataclass

import models
from models import cards
from models.efficientnet import Top
from models.inference import check_tta


@dataclass(frozen=True)
class Setup:
    model: str
    num_classes: int
    image_size: int
    regime: str = "all"
    pretrained: bool = False  # the initial weights are pretrained (efficientnet_lite0 always is)
    tta: str = "none"  # test-time views the model is evaluated, calibrated and exported with (models.inference.TTA)

    def __post_init__(self):
        check_tta(self.tta)
        problem = regime_problem(self.model, self.regime)
        if problem:
            raise ValueError(problem)

    @classmethod
    def of_run(cls, run) -> "Setup":
        """The setup a run directory (models.rundir.RunDir) records."""
        s = run.settings
        return cls(s["model"], len(run.classes), run.image_size, s["finetune"], bool(s["pretrained"]), s["tta"])

    @property
    def spec(self) -> models.Preprocessing:
        return models.preprocessing(self.model, self.image_size)

    @property
    def profile(self) -> str:
        """The optimizers' hyperparameter profile (train/optimizers PROFILES): a head on frozen features,
        pretrained layers fine-tuned, or every layer from scratch."""
        if self.regime == "head":
            return "head"
        return "finetune" if self.pretrained else "scratch"

    @property
    def cut(self) -> int | None:
        """First trainable block: inputs of the trainable part are the frozen part's cached outputs (None: images)."""
        return cards.get(self.model).regimes[self.regime]

    def network(self, state: dict | None = None, pretrained: bool = False):
        """The whole network, with `state` loaded, or with its pretrained weights (new classifier) if asked."""
        net = models.build_model(self.model, self.num_classes, pretrained=pretrained, image_size=self.image_size)
        if state is not None:
            net.set_state_dict(state)
        return net

    def build(self, state: dict | None = None):
        """(whole network with `state` loaded, the part that trains). Checkpoints hold the whole network;
        the optimizer and the forward pass of training use the trainable part, fed by `Split.inputs`."""
        net = self.network(state)
        return net, (net if self.cut is None else Top(net, self.cut))


def regime_problem(model: str, regime: str) -> str | None:
    """Why `model` cannot train in `regime` (one line), or None."""
    card = cards.get(model)
    if regime in card.regimes:
        return None
    if regime in cards.REGIME_HELP:
        have = [m for m, c in cards.CARDS.items() if regime in c.regimes]
        return f"--finetune {regime} needs --model {' or '.join(have)}; {model} trains with --finetune {', '.join(card.regimes)}"
    return f"unknown fine-tuning regime {regime!r}; choose one of {', '.join(cards.REGIME_HELP)}"
