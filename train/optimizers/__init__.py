"""The optimizer registry: every optimizer the sweep trains with, by name, with documented defaults.

    from train.optimizers import NAMES, DEFAULTS, create, hyperparams
    opt = create("qhm", model.parameters())                   # DEFAULTS["qhm"]
    opt = create("lookahead", model.parameters(), inner="sgd", k=10)
    opt.set_lr(0.05); opt.step(); opt.clear_grad()
    paddle.save(opt.state_dict(), "opt.pdopt"); opt.set_state_dict(paddle.load("opt.pdopt"))

Built-ins wrap paddle.optimizer classes (hyperparameter names are Paddle's, except that Lamb's
`lamb_weight_decay` is called `weight_decay` here like everywhere else). qhm, qhadam, lion, adabelief and
lookahead are written from scratch in this package, one file each, the update rule in the paper's symbols.
This module is the one home of the defaults (DEFAULTS, each value with its source: the classes take no
defaults of their own) and of which optimizers decay decoupled (DECOUPLED). Every optimizer returned
supports step, clear_grad, set_lr, get_lr, state_dict and set_state_dict, in the portable state format
of base.py.

The defaults are chosen so that no optimizer diverges or stalls on the default profile (smallcnn, 64 px,
batch 64, a few epochs, cosine decay): one learning rate for all does not work (RMSProp and Adadelta
ended near chance that way). What was checked is in docs/optimizers.md.
"""
from __future__ import annotations

import inspect

import paddle

from train.optimizers import _check
from train.optimizers.adabelief import AdaBelief
from train.optimizers.base import PortableState
from train.optimizers.lion import Lion
from train.optimizers.lookahead import Lookahead
from train.optimizers.qhadam import QHAdam
from train.optimizers.qhm import QHM

NAMES = ("sgd", "momentum", "rmsprop", "adam", "adadelta", "adagrad", "adamax", "adamw", "lamb",
         "qhm", "lookahead", "qhadam", "lion", "adabelief")

DEFAULTS: dict[str, dict] = {
    "sgd": {
        "learning_rate": 0.1,         # He et al. 2016 (ResNet, BN CNNs): initial lr 0.1; Paddle's 0.001 stalls
        "weight_decay": 0.0,          # Paddle default (none)
    },
    "momentum": {
        "learning_rate": 0.1,         # He et al. 2016 (ResNet): lr 0.1 with momentum 0.9
        "momentum": 0.9,              # Sutskever et al. 2013 / Paddle default
        "use_nesterov": False,        # Paddle default
        "weight_decay": 0.0,          # Paddle default (none)
    },
    "rmsprop": {
        "learning_rate": 0.001,       # Hinton, Coursera NN lecture 6e (RMSProp's source): 0.001
        "rho": 0.9,                   # Hinton lecture 6e: 0.9 (Paddle default 0.95)
        "epsilon": 1e-6,              # Paddle default
        "momentum": 0.0,              # Paddle default
        "centered": False,            # Paddle default
        "weight_decay": 0.0,          # Paddle default (none)
    },
    "adam": {
        "learning_rate": 0.001,       # Kingma & Ba 2015, Algorithm 1
        "beta1": 0.9,                 # Kingma & Ba 2015
        "beta2": 0.999,               # Kingma & Ba 2015
        "epsilon": 1e-8,              # Kingma & Ba 2015 / Paddle default
        "weight_decay": 0.0,          # Paddle default (none)
    },
    "adadelta": {
        "learning_rate": 1.0,         # Zeiler 2012: the update has no learning rate (= 1); Paddle's 0.001 stalls
        "rho": 0.95,                  # Zeiler 2012, Sec. 4 / Paddle default
        "epsilon": 1e-6,              # Zeiler 2012, Sec. 4 / Paddle default
        "weight_decay": 0.0,          # Paddle default (none)
    },
    "adagrad": {
        "learning_rate": 0.01,        # Duchi et al. 2011 give none; 0.01 is the customary default (PyTorch, TF)
        "epsilon": 1e-6,              # Paddle default
        "initial_accumulator_value": 0.0,  # Paddle default
        "weight_decay": 0.0,          # Paddle default (none)
    },
    "adamax": {
        "learning_rate": 0.002,       # Kingma & Ba 2015, Sec. 7.1 (AdaMax): 0.002
        "beta1": 0.9,                 # Kingma & Ba 2015, Sec. 7.1
        "beta2": 0.999,               # Kingma & Ba 2015, Sec. 7.1
        "epsilon": 1e-8,              # Paddle default
        "weight_decay": 0.0,          # Paddle default (none)
    },
    "adamw": {
        "learning_rate": 0.001,       # Loshchilov & Hutter 2019 (Adam's 0.001)
        "beta1": 0.9,                 # Loshchilov & Hutter 2019 / Paddle default
        "beta2": 0.999,               # Loshchilov & Hutter 2019 / Paddle default
        "epsilon": 1e-8,              # Paddle default
        "weight_decay": 0.01,         # Paddle default (decoupled coefficient)
    },
    "lamb": {
        "learning_rate": 0.01,        # You et al. 2020 tune lr per batch size; Paddle's 0.001 is slow at batch 64
        "beta1": 0.9,                 # You et al. 2020 / Paddle default
        "beta2": 0.999,               # You et al. 2020 / Paddle default
        "epsilon": 1e-6,              # You et al. 2020 / Paddle default
        "weight_decay": 0.01,         # Paddle default (lamb_weight_decay, decoupled, inside the trust ratio)
    },
    "qhm": {
        "learning_rate": 1.0,         # Ma & Yarats 2019 (ImageNet ResNet): momentum's 0.1 / (1 − 0.9), dampened units
        "beta": 0.999,                # Ma & Yarats 2019 rule of thumb
        "nu": 0.7,                    # Ma & Yarats 2019 rule of thumb
        "weight_decay": 0.0,          # qhoptim default
    },
    "lookahead": {
        "inner": "adam",              # Zhang et al. 2019 evaluate Lookahead around Adam and SGD; Adam needs no lr tuning
        "k": 5,                       # Zhang et al. 2019
        "alpha": 0.5,                 # Zhang et al. 2019
        # + the inner optimizer's own defaults (filled in below)
    },
    "qhadam": {
        "learning_rate": 0.001,       # Ma & Yarats 2019: Adam's 0.001, unchanged
        "beta1": 0.995,               # Ma & Yarats 2019 recommendation (with nu1 = 0.7)
        "beta2": 0.999,               # Ma & Yarats 2019 (Adam's)
        "nu1": 0.7,                   # Ma & Yarats 2019 recommendation
        "nu2": 1.0,                   # Ma & Yarats 2019 recommendation
        "epsilon": 1e-8,              # Ma & Yarats 2019 (Adam's)
        "weight_decay": 0.0,          # qhoptim default
    },
    "lion": {
        "learning_rate": 3e-4,        # Chen et al. 2023: 3-10x below AdamW's 1e-3 (their code's 1e-4 is slow here)
        "beta1": 0.9,                 # Chen et al. 2023
        "beta2": 0.99,                # Chen et al. 2023
        "weight_decay": 0.0,          # Chen et al. 2023 official code default
    },
    "adabelief": {
        "learning_rate": 0.001,       # Zhuang et al. 2020
        "beta1": 0.9,                 # Zhuang et al. 2020
        "beta2": 0.999,               # Zhuang et al. 2020
        "epsilon": 1e-16,             # Zhuang et al. 2020 official code (added inside and outside the sqrt)
        "weight_decay": 0.0,          # Zhuang et al. 2020 official code default
    },
}
DEFAULTS["lookahead"].update({k: v for k, v in DEFAULTS[DEFAULTS["lookahead"]["inner"]].items()})

# Learning rates per training profile. "scratch" (every layer from random weights) and "head" (a new classifier
# on a frozen pretrained backbone's features: a convex problem, checked on hymenoptera: all 14 reach 95-96 %
# validation in 10 epochs) use DEFAULTS. "finetune" (pretrained conv layers that train too: --finetune top|all)
# takes each rate 10x lower, the usual fine-tuning rule (Li et al. 2020, "Rethinking the Hyperparameters for
# Fine-tuning", ICLR: the best effective rate for fine-tuning is well below training from scratch; the
# torchvision transfer-learning tutorial fine-tunes with SGD 0.001, momentum 0.9, batch 4, i.e. ~0.01 at
# batch 32): weights that already work are not thrown away in the first epoch. Adadelta has no real rate
# (Zeiler's update is unit-free) and keeps its 1.0 scaled the same way. Checked: docs/optimizers.md.
PROFILES = ("scratch", "head", "finetune")
FINETUNE_FACTOR = 0.1


def _profile_lr(name: str, profile: str) -> dict:
    if profile not in PROFILES:
        raise ValueError(f"unknown training profile {profile!r}; choose from {', '.join(PROFILES)}")
    if profile != "finetune" or name == "lookahead":
        return {}
    return {"learning_rate": float(f"{DEFAULTS[name]['learning_rate'] * FINETUNE_FACTOR:.6g}")}  # 0.01, not 0.010000000000000002

# Built-ins: name -> (Paddle class, {hyperparameter: checker}, {our name: Paddle's keyword}).
# Fixed keywords: Paddle's Lamb skips the trust ratio for parameters without weight decay unless
# always_adapt=True; the paper applies it to every layer, so we always do.
_P, _c = paddle.optimizer, _check
_BUILTINS = {
    "sgd": (_P.SGD, {"learning_rate": _c.positive, "weight_decay": _c.nonnegative}, {}),
    "momentum": (_P.Momentum, {"learning_rate": _c.positive, "momentum": _c.unit, "use_nesterov": _c.boolean,
                               "weight_decay": _c.nonnegative}, {}),
    "rmsprop": (_P.RMSProp, {"learning_rate": _c.positive, "rho": _c.unit, "epsilon": _c.positive,
                             "momentum": _c.unit, "centered": _c.boolean, "weight_decay": _c.nonnegative}, {}),
    "adam": (_P.Adam, {"learning_rate": _c.positive, "beta1": _c.unit, "beta2": _c.unit, "epsilon": _c.positive,
                       "weight_decay": _c.nonnegative}, {}),
    "adadelta": (_P.Adadelta, {"learning_rate": _c.positive, "rho": _c.unit, "epsilon": _c.positive,
                               "weight_decay": _c.nonnegative}, {}),
    "adagrad": (_P.Adagrad, {"learning_rate": _c.positive, "epsilon": _c.positive,
                             "initial_accumulator_value": _c.nonnegative, "weight_decay": _c.nonnegative}, {}),
    "adamax": (_P.Adamax, {"learning_rate": _c.positive, "beta1": _c.unit, "beta2": _c.unit, "epsilon": _c.positive,
                           "weight_decay": _c.nonnegative}, {}),
    "adamw": (_P.AdamW, {"learning_rate": _c.positive, "beta1": _c.unit, "beta2": _c.unit, "epsilon": _c.positive,
                         "weight_decay": _c.nonnegative}, {}),
    "lamb": (_P.Lamb, {"learning_rate": _c.positive, "beta1": _c.unit, "beta2": _c.unit, "epsilon": _c.positive,
                       "weight_decay": _c.nonnegative}, {"weight_decay": "lamb_weight_decay"}),
}
_FIXED = {"lamb": {"always_adapt": True}}
_OURS = {"qhm": QHM, "qhadam": QHAdam, "lion": Lion, "adabelief": AdaBelief}

# `weight_decay` is coupled L2 (λθ added to the gradient before the rule) for every optimizer except these,
# which decay decoupled (θ ← θ − η·λ·θ, outside the rule; Lamb's λθ enters the trust ratio), as their
# papers have it. Paddle's AdamW and Lamb take weight_decay as that coefficient; ours say so in DECOUPLED.
DECOUPLED = tuple(n for n in NAMES if n in ("adamw", "lamb") or getattr(_OURS.get(n), "DECOUPLED", False))


def _portable(cls):
    """The Paddle optimizer class with position-keyed state dicts (see base.PortableState)."""
    return type(cls.__name__, (PortableState, cls), {"__module__": __name__, "__doc__": cls.__doc__})


_CLASSES = {name: _portable(cls) for name, (cls, _, _) in _BUILTINS.items()}


def _takes(name: str) -> tuple[str, ...]:
    if name == "lookahead":
        return ("inner", "k", "alpha")
    if name in _BUILTINS:
        return tuple(_BUILTINS[name][1])
    params = inspect.signature(_OURS[name]).parameters.values()  # hyperparameters: the required keywords
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty)


def hyperparams(name: str, profile: str = "scratch", **overrides) -> dict:
    """The full hyperparameter dict `create(name, ..., **overrides)` uses: DEFAULTS[name] with the training
    profile's learning rate (PROFILES), updated by overrides.

    For lookahead, the inner optimizer's defaults and every override that is not k/alpha/inner go to the
    inner optimizer. Raises ValueError for an unknown optimizer, profile or hyperparameter name."""
    if name not in NAMES:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(NAMES)}")
    if name == "lookahead":
        inner = overrides.pop("inner", DEFAULTS["lookahead"]["inner"])
        if inner not in NAMES or inner == "lookahead":
            raise ValueError(f"invalid inner: {inner!r} (lookahead wraps one of {', '.join(n for n in NAMES if n != 'lookahead')})")
        own = {k: overrides.pop(k, DEFAULTS["lookahead"][k]) for k in ("k", "alpha")}
        return {"inner": inner, **own, **hyperparams(inner, profile, **overrides)}
    takes = _takes(name)
    for key in overrides:
        if key not in takes:
            raise ValueError(f"unknown hyperparameter {key!r} for {name}; it takes {', '.join(takes)}")
    return {**DEFAULTS[name], **_profile_lr(name, profile), **overrides}


def create(name: str, parameters, **overrides) -> paddle.optimizer.Optimizer:
    """Build optimizer `name` over `parameters` (a list, e.g. model.parameters()) with DEFAULTS[name]
    updated by `overrides`. Raises ValueError naming any unknown name or bad value."""
    hp = hyperparams(name, **overrides)
    parameters = list(parameters)
    if name == "lookahead":
        inner = create(hp.pop("inner"), parameters, **{k: v for k, v in hp.items() if k not in ("k", "alpha")})
        return Lookahead(inner, k=hp["k"], alpha=hp["alpha"])
    if name in _OURS:
        return _OURS[name](parameters, **hp)
    _, checks, rename = _BUILTINS[name]
    kwargs = {rename.get(k, k): checks[k](k, v) for k, v in hp.items()}
    if name not in DECOUPLED:
        kwargs["weight_decay"] = kwargs["weight_decay"] or None  # 0: no L2 regularizer op at all
    return _CLASSES[name](parameters=parameters, **kwargs, **_FIXED.get(name, {}))


__all__ = ["DECOUPLED", "DEFAULTS", "NAMES", "PROFILES", "create", "hyperparams", "QHM", "QHAdam", "Lion", "AdaBelief", "Lookahead"]
