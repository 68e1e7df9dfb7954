"""The command line of `train/run_all.py`, turned into one frozen plan (train/plan.py): every default resolved here,
`auto` included, each check written once; anything wrong is one line and exit status 2 (argparse's error).
Nothing downstream reads the arguments."""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile

from models import cards
from models.networks import cache_root
from models.inference import TTA
from train import optimizers
from train.budget import DEFAULT_MINUTES
from train.plan import Plan
from train.setup import regime_problem
from train.tune import DEFAULT_BUDGET, GRID_POINTS, TARGET_SHARE
from util import runtime


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=None, help="dataset folder (Kaggle layout with labels.csv, or DIR/train|val[/test]/<class>/), "
                   "or 'synthetic' for a generated offline smoke set; default: data/kaggle_bee_vs_wasp, else a kagglehub download")
    p.add_argument("--optimizers", default=",".join(optimizers.NAMES), help="comma list of optimizers to train, from: " + ", ".join(optimizers.NAMES))
    p.add_argument("--epochs", type=int, default=None, help="epochs per optimizer, cosine learning-rate decay over them "
                   "(default: the model card's for the regime: " + "; ".join(
                       f"{m} " + ", ".join(f"{r} {e}" for r, e in c.epochs.items()) for m, c in cards.CARDS.items()) + ")")
    p.add_argument("--out", default=None, help="run directory; default runs/<dataset>-<model>[-<finetune>]-<size>px-<epochs>ep-seed<seed>")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights, data order and augmentation")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"), help="gpu when usable (auto), or force one")
    p.add_argument("--model", default=cards.DEFAULT, choices=cards.MODELS, help="network: efficientnet_lite0 (ImageNet "
                   "weights, no download), smallcnn (from scratch), mobilenet_v2/resnet50 (with --pretrained: Paddle's weights, downloaded)")
    p.add_argument("--finetune", default="auto", choices=("auto", *cards.REGIME_HELP), help="which part of the network "
                   "trains: " + "; ".join(f"{k}: {v}" for k, v in cards.REGIME_HELP.items()) + "; auto: the model card's "
                   "for the device (efficientnet_lite0: head on a CPU, all on a GPU)")
    p.add_argument("--pretrained", action="store_true", help="start mobilenet_v2/resnet50 from Paddle's ImageNet weights "
                   "(needs a download; efficientnet_lite0 is always pretrained)")
    p.add_argument("--image-size", type=int, default=None, help="images become SIZE x SIZE (default: the model's, "
                   + ", ".join(f"{m} {c.size}" for m, c in cards.CARDS.items()) + ")")
    p.add_argument("--batch-size", type=int, default=None, help="training batch size (default: "
                   + ", ".join(f"{m} {c.batch_size}" for m, c in cards.CARDS.items()) + ")")
    p.add_argument("--tta", default="hflip", choices=tuple(TTA), help="test-time views whose logits the model averages: "
                   "hflip (the photo and its mirror image), or none; used alike by validation, calibration, the test "
                   "figures and the exported models")
    p.add_argument("--lr", default="", help="learning-rate overrides, e.g. 'adam=3e-4,sgd=0.1' (defaults: train/optimizers DEFAULTS)")
    p.add_argument("--cache-dir", default=cache_root(), help="where decoded images, features and converted weights "
                   "are cached (env WHICH_OPTIMIZER_CACHE sets the default)")
    p.add_argument("--workers", type=int, default=0, help="image-decoding processes (0: one per core, at most 4)")
    p.add_argument("--allow-split-overlap", action="store_true", help="train even when labels.csv lists a file in two "
                   "splits (test accuracy is then partly measured on training images)")
    p.add_argument("--parallel", type=int, default=1, help="train this many optimizers at once, each in its own process "
                   "on its own GPU (or a share of the CPU threads); results equal the sequential sweep's")
    g = p.add_argument_group("honest comparison (learning-rate search, seeds, time to accuracy; train/compare.py)")
    g.add_argument("--budget", type=float, default=None, metavar="MINUTES", help="run the richest comparison that fits "
                   "this many minutes (defaults -> 3 seeds -> learning-rate search + 3 seeds -> + 5 seeds), estimated "
                   "from what this machine measures; 0: the plain sweep (every optimizer once at its default); default: "
                   + ", ".join(f"{m:g} on a {d.upper()}" for d, m in DEFAULT_MINUTES.items())
                   + "; --tune, --seeds and --target choose the protocol instead")
    g.add_argument("--tune", action="store_true", help="choose each optimizer's learning rate on the validation split from "
                   f"a {GRID_POINTS}-point log grid (3 decades) around its default, then train the chosen one")
    g.add_argument("--tune-budget", type=float, default=DEFAULT_BUDGET, help="search cost per optimizer in full trainings of it "
                   f"(before early stopping); trials shrink epochs and training subset by sqrt(budget/{GRID_POINTS}) each")
    g.add_argument("--seeds", type=int, default=1, help="train every optimizer with N seeds (different initial weights and "
                   "data order): mean ± std, 95%% CI and groups of statistically tied optimizers")
    g.add_argument("--target", type=float, default=None, help="time-to-accuracy target, a validation accuracy in (0, 1]; "
                   f"default {round(100 * TARGET_SHARE)}%% of the best optimizer's final mean validation accuracy")
    return p


def plan(argv=None, description: str = "") -> Plan:
    """The plan of this invocation; argparse's one-line error (exit 2) for anything wrong."""
    p = parser(description)
    a = p.parse_args(argv)
    card = cards.get(a.model)
    names = tuple(o.strip() for o in a.optimizers.split(",") if o.strip())
    lr = _lr_overrides(p, a.lr)
    launched = int(os.environ.get("PADDLE_TRAINERS_NUM", "1")) > 1  # under paddle.distributed.launch
    main_rank = int(os.environ.get("PADDLE_TRAINER_ID", "0")) == 0
    device = _device(p, a.device)
    finetune = card.default_regime(gpu=device == "gpu") if a.finetune == "auto" else a.finetune
    for problem in _problems(a, names, finetune, launched):
        p.error(problem)
    cache_dir = os.path.abspath(a.cache_dir)
    problem = folder_problem(cache_dir, "--cache-dir", make=True) or (
        folder_problem(a.out, "--out") if a.out and main_rank else None)
    if problem:  # not a usage mistake: the folder's one line, without the usage text
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    forced = a.tune or a.seeds > 1 or a.target is not None
    if forced and a.budget is not None:  # the named protocol wins
        print("note: --tune/--seeds/--target name the protocol, so --budget is not used", file=sys.stderr)
    budget = None if forced or a.parallel > 1 or launched else (DEFAULT_MINUTES[device] if a.budget is None else a.budget)
    return Plan(data=a.data, optimizers=names, model=a.model, finetune=finetune,
                pretrained=a.pretrained or card.pretrained_always, epochs=a.epochs or card.default_epochs(finetune),
                batch_size=a.batch_size or card.batch_size, image_size=a.image_size or card.size, tta=a.tta, seed=a.seed,
                device=device, lr=tuple(lr.items()), out=os.path.abspath(a.out) if a.out else None, cache_dir=cache_dir,
                workers=a.workers, parallel=a.parallel, allow_split_overlap=a.allow_split_overlap, tune=a.tune,
                tune_budget=a.tune_budget, seeds=a.seeds, target=a.target, budget=budget)


def _device(p, pref: str) -> str:
    """'auto' | 'cpu' | 'gpu' -> 'gpu' when Paddle can use a CUDA device (and it is not refused), else 'cpu'."""
    if pref == "cpu":
        return "cpu"
    if runtime.gpus() > 0:
        return "gpu"
    if pref == "gpu":
        p.error("--device gpu: no CUDA device usable by Paddle (install paddlepaddle-gpu, check nvidia-smi)")
    return "cpu"


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


def _problems(a, names: tuple, finetune: str, launched: bool) -> list[str]:
    problems = [x for x in [regime_problem(a.model, finetune)] if x]
    unknown = [o for o in names if o not in optimizers.NAMES]
    if unknown:
        problems.append(f"unknown optimizer(s) {', '.join(unknown)}; choose from {', '.join(optimizers.NAMES)}")
    problems += [f"--{k.replace('_', '-')} must be at least 1" for k in ("epochs", "image_size", "batch_size", "parallel", "seeds")
                 if getattr(a, k) is not None and getattr(a, k) < 1]
    if a.budget is not None and not (a.budget >= 0 and math.isfinite(a.budget)):
        problems.append("--budget must be a number of minutes, at least 0 (0: the plain sweep)")
    if not a.tune_budget > 0 or not math.isfinite(a.tune_budget):
        problems.append("--tune-budget must be a number above 0, e.g. 0.5")
    if a.target is not None and not 0 < a.target <= 1:
        problems.append("--target must be a validation accuracy in (0, 1], e.g. 0.9")
    if (a.tune or a.seeds > 1 or a.target is not None) and (a.parallel > 1 or launched):
        problems.append("--tune/--seeds/--target run in a single process for now: drop --parallel / the distributed launcher")
    if a.parallel > 1 and launched:
        problems.append("--parallel runs whole optimizers side by side; do not combine it with paddle.distributed.launch")
    return problems


def folder_problem(path: str, flag: str, make: bool = False) -> str | None:
    """Why `path` cannot be used as a writable folder (one line), or None. Made when `make` (else only
    its nearest existing parent is checked, so that a later error leaves no empty folder behind)."""
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{flag} {path} is a file, not a folder; give a folder (it is made if absent)"
    there = os.path.abspath(path)
    while not os.path.exists(there) and os.path.dirname(there) != there:
        there = os.path.dirname(there)
    if not os.path.isdir(there):
        return f"{flag} {path} cannot be made: {there} is a file, not a folder"
    try:
        if make:
            os.makedirs(path, exist_ok=True)
            there = path
        with tempfile.TemporaryFile(dir=there):
            pass
    except OSError as e:
        return f"{flag} {path} cannot be written to ({e.strerror or type(e).__name__}); give a writable folder"
    return None
