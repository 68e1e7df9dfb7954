"""What a run trains: the network, its preprocessing, and which part of it learns (the fine-tuning regime)."""
from __future__ import annotations

from dataclasses import dataclass

import models
from models.inference import check_tta
from models.efficientnet import NUM_BLOCKS, Top

# regime -> first trainable block of efficientnet_lite0 (None: every layer trains, no feature cache)
REGIMES = {"head": NUM_BLOCKS, "top": NUM_BLOCKS - 1, "all": None}
REGIME_HELP = {"head": "a new classifier on the frozen backbone's pooled features (cached once)",
               "top": "the last MBConv block, the head conv and a new classifier (block-15 inputs cached once)",
               "all": "every layer, from the initial weights (pretrained or not)"}


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
        if self.regime not in REGIMES:
            raise ValueError(f"unknown fine-tuning regime {self.regime!r}; choose one of {', '.join(REGIMES)}")
        if self.regime != "all" and self.model != "efficientnet_lite0":
            raise ValueError(f"--finetune {self.regime} needs --model efficientnet_lite0 (the model with a cached "
                             f"frozen part); {self.model} trains with --finetune all")

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
        return REGIMES[self.regime]

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
