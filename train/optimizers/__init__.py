"""The optimizer registry: every optimizer the sweep trains with, one record (OptimInfo) per name.

    from train.optimizers import NAMES, DEFAULTS, REGISTRY, create, hyperparams
    opt = create("qhm", model.parameters())                   # DEFAULTS["qhm"]
    opt = create("lookahead", model.parameters(), inner="sgd", k=10)
    opt = create("cautious", model.parameters(), learning_rate=1e-3)   # C-AdamW: the inner's hyperparameters
    opt.set_lr(0.05); opt.step(); opt.clear_grad()
    paddle.save(opt.state_dict(), "opt.pdopt"); opt.set_state_dict(paddle.load("opt.pdopt"))
    if hasattr(opt, "eval"): opt.eval(); ...evaluate, save...; opt.train()   # Schedule-Free: x, then y again

A record (after timm's OptimInfo) holds everything known about one optimizer: its class (Paddle's built-in,
or one written here, one file each, the update rule in the paper's symbols), its family (for grouping in
tables and plots), a one-line description, its defaults (each value with its source: the classes take no
defaults of their own), whether its weight decay is decoupled, its learning rate per training profile, and
how the built-ins' hyperparameters map onto Paddle's keywords. NAMES, DEFAULTS, DECOUPLED, FAMILIES and
PROFILES are read off the records. Adding an optimizer = its file + one record in REGISTRY below.

Hyperparameter names mean the same thing everywhere (`learning_rate`, `beta1`, `beta2`, `epsilon`,
`weight_decay`, `momentum`, `warmup_steps`, ...: _check.BY_NAME checks each). Every optimizer returned
supports step, clear_grad, set_lr, get_lr, state_dict and set_state_dict, in the portable state format of
base.py; Schedule-Free ones (and wrappers around them) also eval() and train().

The defaults are chosen so that no optimizer diverges or stalls on the default profiles: one learning rate
for all does not work (RMSProp and Adadelta ended near chance that way). What was checked is in
docs/optimizers.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import paddle

from train.optimizers import _check
from train.optimizers.adabelief import AdaBelief
from train.optimizers.adan import Adan
from train.optimizers.adopt import ADOPT
from train.optimizers.base import portable
from train.optimizers.cautious import Cautious
from train.optimizers.lion import Lion
from train.optimizers.lookahead import Lookahead
from train.optimizers.muon import Muon
from train.optimizers.prodigy import Prodigy
from train.optimizers.qhadam import QHAdam
from train.optimizers.qhm import QHM
from train.optimizers.schedule_free import SFSGD, SFAdamW

# Training profiles. "scratch" (every layer from random weights) and "head" (a new classifier on a frozen
# pretrained backbone's features: a convex problem, checked on hymenoptera, docs/optimizers.md) use the
# record's learning_rate. "finetune" (pretrained conv layers that train too: --finetune top|all) takes it
# 10x lower, the usual fine-tuning rule (Li et al. 2020, "Rethinking the Hyperparameters for Fine-tuning",
# ICLR: the best effective rate for fine-tuning is well below training from scratch; the torchvision
# transfer-learning tutorial fine-tunes with SGD 0.001, momentum 0.9, batch 4, i.e. ~0.01 at batch 32):
# weights that already work are not thrown away in the first epoch. A record's `profile_lr` overrides this
# rule where its method says otherwise (with the reason). Adadelta has no real rate (Zeiler's update is
# unit-free) and keeps its 1.0 scaled the same way.
PROFILES = ("scratch", "head", "finetune")
FINETUNE_FACTOR = 0.1


@dataclass(frozen=True)
class OptimInfo:
    """One optimizer, everything the registry knows about it."""
    name: str
    opt_class: type              # Paddle's class (with portable state) or ours; a wrapper's class takes (inner, **own)
    family: str                  # for grouping in tables and plots
    description: str             # one line
    defaults: dict               # every hyperparameter it takes -> default (learning_rate: the scratch profile's)
    builtin: bool = False        # Paddle's own optimizer (hyperparameters checked here with _check.BY_NAME)
    decoupled: bool = False      # weight_decay is decoupled (θ ← θ − ηλθ outside the rule), not L2 added to g
    profile_lr: dict = field(default_factory=dict)   # profile -> learning rate where the PROFILES rule does not apply
    paddle_names: dict = field(default_factory=dict)  # built-ins: our name (or tuple of names) -> Paddle's keyword
    fixed: dict = field(default_factory=dict)         # built-ins: Paddle keywords always passed

    @property
    def wrapper(self) -> bool:
        """Wraps another registry optimizer (`inner`), whose hyperparameters it takes and passes on."""
        return "inner" in self.defaults

    def learning_rate(self, profile: str) -> float:
        """The default learning rate in `profile` (PROFILES)."""
        if profile not in PROFILES:
            raise ValueError(f"unknown training profile {profile!r}; choose from {', '.join(PROFILES)}")
        if profile in self.profile_lr:
            return self.profile_lr[profile]
        lr = self.defaults["learning_rate"]
        return float(f"{lr * FINETUNE_FACTOR:.6g}") if profile == "finetune" else lr  # 0.01, not 0.010000000000000002


_P = paddle.optimizer
_ADAM_FAMILY, _SGD_FAMILY, _ADAGRAD_FAMILY = "Adam family", "SGD family", "AdaGrad family"

REGISTRY: dict[str, OptimInfo] = {info.name: info for info in [
    OptimInfo("sgd", portable(_P.SGD), _SGD_FAMILY, "plain stochastic gradient descent", builtin=True, defaults={
        "learning_rate": 0.1,         # He et al. 2016 (ResNet, BN CNNs): initial lr 0.1; Paddle's 0.001 stalls
        "weight_decay": 0.0,          # Paddle default (none)
    }),
    OptimInfo("momentum", portable(_P.Momentum), _SGD_FAMILY, "heavy-ball momentum (Polyak 1964), optional Nesterov",
              builtin=True, defaults={
        "learning_rate": 0.1,         # He et al. 2016 (ResNet): lr 0.1 with momentum 0.9
        "momentum": 0.9,              # Sutskever et al. 2013 / Paddle default
        "use_nesterov": False,        # Paddle default
        "weight_decay": 0.0,          # Paddle default (none)
    }),
    OptimInfo("rmsprop", portable(_P.RMSProp), _ADAGRAD_FAMILY, "gradient divided by a running RMS (Hinton 2012)",
              builtin=True, defaults={
        "learning_rate": 0.001,       # Hinton, Coursera NN lecture 6e (RMSProp's source): 0.001
        "rho": 0.9,                   # Hinton lecture 6e: 0.9 (Paddle default 0.95)
        "epsilon": 1e-6,              # Paddle default
        "momentum": 0.0,              # Paddle default
        "centered": False,            # Paddle default
        "weight_decay": 0.0,          # Paddle default (none)
    }),
    OptimInfo("adam", portable(_P.Adam), _ADAM_FAMILY, "bias-corrected first and second moments (Kingma & Ba 2015)",
              builtin=True, defaults={
        "learning_rate": 0.001,       # Kingma & Ba 2015, Algorithm 1
        "beta1": 0.9,                 # Kingma & Ba 2015
        "beta2": 0.999,               # Kingma & Ba 2015
        "epsilon": 1e-8,              # Kingma & Ba 2015 / Paddle default
        "weight_decay": 0.0,          # Paddle default (none)
    }),
    OptimInfo("adadelta", portable(_P.Adadelta), _ADAGRAD_FAMILY, "unit-free RMS ratio of steps and gradients (Zeiler 2012)",
              builtin=True, defaults={
        "learning_rate": 1.0,         # Zeiler 2012: the update has no learning rate (= 1); Paddle's 0.001 stalls
        "rho": 0.95,                  # Zeiler 2012, Sec. 4 / Paddle default
        "epsilon": 1e-6,              # Zeiler 2012, Sec. 4 / Paddle default
        "weight_decay": 0.0,          # Paddle default (none)
    }),
    OptimInfo("adagrad", portable(_P.Adagrad), _ADAGRAD_FAMILY, "gradient divided by the root of all past squares (Duchi et al. 2011)",
              builtin=True, defaults={
        "learning_rate": 0.01,        # Duchi et al. 2011 give none; 0.01 is the customary default (PyTorch, TF)
        "epsilon": 1e-6,              # Paddle default
        "initial_accumulator_value": 0.0,  # Paddle default
        "weight_decay": 0.0,          # Paddle default (none)
    }),
    OptimInfo("adamax", portable(_P.Adamax), _ADAM_FAMILY, "Adam with an infinity-norm second moment (Kingma & Ba 2015)",
              builtin=True, defaults={
        "learning_rate": 0.002,       # Kingma & Ba 2015, Sec. 7.1 (AdaMax): 0.002
        "beta1": 0.9,                 # Kingma & Ba 2015, Sec. 7.1
        "beta2": 0.999,               # Kingma & Ba 2015, Sec. 7.1
        "epsilon": 1e-8,              # Paddle default
        "weight_decay": 0.0,          # Paddle default (none)
    }),
    OptimInfo("adamw", portable(_P.AdamW), _ADAM_FAMILY, "Adam with decoupled weight decay (Loshchilov & Hutter 2019)",
              builtin=True, decoupled=True, defaults={
        "learning_rate": 0.001,       # Loshchilov & Hutter 2019 (Adam's 0.001)
        "beta1": 0.9,                 # Loshchilov & Hutter 2019 / Paddle default
        "beta2": 0.999,               # Loshchilov & Hutter 2019 / Paddle default
        "epsilon": 1e-8,              # Paddle default
        "weight_decay": 0.01,         # Paddle default (decoupled coefficient)
    }),
    # Paddle's Lamb skips the trust ratio for parameters without weight decay unless always_adapt=True;
    # the paper applies it to every layer, so we always do.
    OptimInfo("lamb", portable(_P.Lamb), _ADAM_FAMILY, "Adam step scaled per layer by a trust ratio (You et al. 2020)",
              builtin=True, decoupled=True, paddle_names={"weight_decay": "lamb_weight_decay"},
              fixed={"always_adapt": True}, defaults={
        "learning_rate": 0.01,        # You et al. 2020 tune lr per batch size; Paddle's 0.001 is slow at batch 64
        "beta1": 0.9,                 # You et al. 2020 / Paddle default
        "beta2": 0.999,               # You et al. 2020 / Paddle default
        "epsilon": 1e-6,              # You et al. 2020 / Paddle default
        "weight_decay": 0.01,         # Paddle default (lamb_weight_decay, decoupled, inside the trust ratio)
    }),
    OptimInfo("qhm", QHM, _SGD_FAMILY, "quasi-hyperbolic momentum: SGD and momentum averaged (Ma & Yarats 2019)", defaults={
        "learning_rate": 1.0,         # Ma & Yarats 2019 (ImageNet ResNet): momentum's 0.1 / (1 − 0.9), dampened units
        "beta": 0.999,                # Ma & Yarats 2019 rule of thumb
        "nu": 0.7,                    # Ma & Yarats 2019 rule of thumb
        "weight_decay": 0.0,          # qhoptim default
    }),
    OptimInfo("lookahead", Lookahead, "wrappers", "k fast steps of any optimizer, then one slow step back (Zhang et al. 2019)",
              defaults={
        "inner": "adam",              # Zhang et al. 2019 evaluate Lookahead around Adam and SGD; Adam needs no lr tuning
        "k": 5,                       # Zhang et al. 2019
        "alpha": 0.5,                 # Zhang et al. 2019
    }),
    OptimInfo("qhadam", QHAdam, _ADAM_FAMILY, "quasi-hyperbolic Adam (Ma & Yarats 2019)", defaults={
        "learning_rate": 0.001,       # Ma & Yarats 2019: Adam's 0.001, unchanged
        "beta1": 0.995,               # Ma & Yarats 2019 recommendation (with nu1 = 0.7)
        "beta2": 0.999,               # Ma & Yarats 2019 (Adam's)
        "nu1": 0.7,                   # Ma & Yarats 2019 recommendation
        "nu2": 1.0,                   # Ma & Yarats 2019 recommendation
        "epsilon": 1e-8,              # Ma & Yarats 2019 (Adam's)
        "weight_decay": 0.0,          # qhoptim default
    }),
    OptimInfo("lion", Lion, "sign-based", "sign of an interpolated momentum (Chen et al. 2023)", decoupled=True, defaults={
        "learning_rate": 3e-4,        # Chen et al. 2023: 3-10x below AdamW's 1e-3 (their code's 1e-4 is slow here)
        "beta1": 0.9,                 # Chen et al. 2023
        "beta2": 0.99,                # Chen et al. 2023
        "weight_decay": 0.0,          # Chen et al. 2023 official code default
    }),
    OptimInfo("adabelief", AdaBelief, _ADAM_FAMILY, "Adam with the variance of g around its mean (Zhuang et al. 2020)",
              decoupled=True, defaults={
        "learning_rate": 0.001,       # Zhuang et al. 2020
        "beta1": 0.9,                 # Zhuang et al. 2020
        "beta2": 0.999,               # Zhuang et al. 2020
        "epsilon": 1e-16,             # Zhuang et al. 2020 official code (added inside and outside the sqrt)
        "weight_decay": 0.0,          # Zhuang et al. 2020 official code default
    }),
    OptimInfo("nadam", portable(_P.NAdam), _ADAM_FAMILY, "Adam with Nesterov momentum and Dozat's momentum schedule (Dozat 2016)",
              builtin=True, defaults={
        "learning_rate": 0.002,       # Dozat 2016 (Incorporating Nesterov Momentum into Adam) / Paddle default
        "beta1": 0.9,                 # Paddle default (= PyTorch's)
        "beta2": 0.999,               # Paddle default (= PyTorch's)
        "epsilon": 1e-8,              # Paddle default
        "momentum_decay": 0.004,      # Paddle default ψ of μ_t = β1·(1 − 0.5·0.96^(tψ)) (= PyTorch's)
        "weight_decay": 0.0,          # Paddle default (none)
    }),
    # RAdam's rectification r_t ≈ √(ρ_t/ρ∞), with ρ_t ≈ t early on, keeps its step at 5-20 % of Adam's for
    # the head profile's ~80 steps (a built-in warmup that never ends there: 81.8 % val on hymenoptera at
    # 0.001); 10x Adam's rate restores Adam's step size (0.003 / 0.01 / 0.03: 94.8 / 96.1 / 96.1 % val).
    OptimInfo("radam", portable(_P.RAdam), _ADAM_FAMILY, "Adam with the variance of its adaptive rate rectified (Liu et al. 2020)",
              builtin=True, profile_lr={"head": 0.01}, defaults={
        "learning_rate": 0.001,       # Liu et al. 2020 (Adam's; RAdam replaces the warmup, not the rate) / Paddle default
        "beta1": 0.9,                 # Liu et al. 2020 / Paddle default
        "beta2": 0.999,               # Liu et al. 2020 / Paddle default
        "epsilon": 1e-8,              # Paddle default
        "weight_decay": 0.0,          # Paddle default (none)
    }),
    OptimInfo("asgd", portable(_P.ASGD), _SGD_FAMILY, "Paddle's ASGD: SGD on the mean of the last n gradients (SAG-style)",
              builtin=True, defaults={
        "learning_rate": 0.1,         # SGD's (He et al. 2016): the step is SGD's on averaged gradients; Paddle's 0.001 stalls
        "batch_num": 8,               # Paddle: batches per epoch (SAG); one stored gradient each, so kept small: 245/32 ≈ 8 on hymenoptera
        "weight_decay": 0.0,          # Paddle default (none)
    }),
    # Paddle's Rprop has no weight decay and ignores the global learning rate after the first step.
    OptimInfo("rprop", portable(_P.Rprop), "sign-based", "per-weight step sizes grown or shrunk by gradient sign (Riedmiller & Braun 1993)",
              builtin=True, paddle_names={("eta_minus", "eta_plus"): "etas", ("step_min", "step_max"): "learning_rate_range"},
              defaults={
        "learning_rate": 0.001,       # Paddle default (initial step Δ0; the paper's 0.1 is for full-batch training)
        "eta_minus": 0.5,             # Riedmiller & Braun 1993
        "eta_plus": 1.2,              # Riedmiller & Braun 1993
        "step_min": 1e-5,             # Paddle default (learning_rate_range[0])
        "step_max": 50.0,             # Riedmiller & Braun 1993 / Paddle default
    }),
    # The reference's 1.0 (its README: "10x-50x larger than classical rates") overshoots on the head: epoch-1
    # train loss 1.60 (a blank 2-class head starts at 0.69), final val loss 0.37, evaluated at x. 0.3 does not:
    # hymenoptera val 96.1 / 94.8 / 94.8 % at 0.1 / 0.3 / 1.0 (77 images: 1 image = 1.3 points), val loss 0.12 / 0.11 /
    # 0.37; insects4 (304 val images, 320 px, 30 epochs) val 93.8 / 95.1 / 96.4 % at 0.03 / 0.1 / 0.3.
    OptimInfo("sf_sgd", SFSGD, "schedule-free", "Schedule-Free SGD: gradient at an interpolation, evaluate the average (Defazio et al. 2024)",
              profile_lr={"head": 0.3}, defaults={
        "learning_rate": 1.0,         # Defazio et al. 2024 reference code default (README: 10-50x classical SGD rates)
        "momentum": 0.9,              # Defazio et al. 2024 reference code default (β)
        "weight_decay": 0.0,          # Defazio et al. 2024 reference code default
        "warmup_steps": 0,            # Defazio et al. 2024 reference code default (no warmup)
    }),
    OptimInfo("sf_adamw", SFAdamW, "schedule-free", "Schedule-Free AdamW (Defazio et al. 2024; AlgoPerf 2024 self-tuning winner)",
              decoupled=True, defaults={
        "learning_rate": 0.0025,      # Defazio et al. 2024 reference code default
        "beta1": 0.9,                 # Defazio et al. 2024 reference code default
        "beta2": 0.999,               # Defazio et al. 2024 reference code default
        "epsilon": 1e-8,              # Defazio et al. 2024 reference code default
        "weight_decay": 0.0,          # Defazio et al. 2024 reference code default
        "warmup_steps": 0,            # Defazio et al. 2024 reference code default (no warmup)
    }),
    # Liu et al.'s 0.2·√max(A,B) matches AdamW's steady-state update RMS in LLM training (0.2-0.4); in the
    # head profile's ~80 steps AdamW's update is ~η per entry (m̂/√v̂ ≈ ±1), Muon's 0.2·η: 1/0.2 = 5x the rate
    # makes them equal (hymenoptera val: 89.6 % at 0.001; 96.1 % at 0.003, 0.005, 0.01).
    OptimInfo("muon", Muon, "orthogonalized", "Newton–Schulz-orthogonalized momentum for matrices, AdamW for the rest (Jordan et al. 2024)",
              decoupled=True, profile_lr={"head": 0.005}, defaults={
        "learning_rate": 0.001,       # Liu et al. 2025: with the 0.2·√max(A,B) scale AdamW's rate carries over (adamw: 0.001)
        "momentum": 0.95,             # Jordan et al. 2024 (code default)
        "use_nesterov": True,         # Jordan et al. 2024 (code default)
        "ns_steps": 5,                # Jordan et al. 2024 (code default)
        "beta1": 0.9,                 # AdamW part: registry adamw's (Liu et al. 2025 reuse AdamW's settings)
        "beta2": 0.999,               # AdamW part: registry adamw's
        "epsilon": 1e-8,              # AdamW part: registry adamw's
        "weight_decay": 0.01,         # Liu et al. 2025: AdamW's decay for both parts (registry adamw: 0.01)
    }),
    OptimInfo("adan", Adan, _ADAM_FAMILY, "Adam with a momentum of gradient differences (Xie et al. 2022)", decoupled=True,
              defaults={
        "learning_rate": 0.001,       # Xie et al. 2022 code default
        "beta1": 0.98,                # Xie et al. 2022 code default (paper's β1 = 0.02)
        "beta2": 0.92,                # Xie et al. 2022 code default (paper's β2 = 0.08)
        "beta3": 0.99,                # Xie et al. 2022 code default (paper's β3 = 0.01)
        "epsilon": 1e-8,              # Xie et al. 2022 code default
        "weight_decay": 0.0,          # Xie et al. 2022 code default (proximal when > 0)
    }),
    # Prodigy estimates its own step size d·η, which adapts to the distance left to travel: fine-tuning
    # keeps η = 1 (the method's point; the authors never lower it, only schedule it).
    OptimInfo("prodigy", Prodigy, "LR-free", "Adam with its step size estimated from the distance travelled (Mishchenko & Defazio 2024)",
              decoupled=True, profile_lr={"finetune": 1.0}, defaults={
        "learning_rate": 1.0,         # Mishchenko & Defazio 2024: a multiplier on the estimated rate, "leave it at 1"
        "beta1": 0.9,                 # Mishchenko & Defazio 2024 code default
        "beta2": 0.999,               # Mishchenko & Defazio 2024 code default
        "beta3": 0.999 ** 0.5,        # Mishchenko & Defazio 2024 code default (√β2)
        "epsilon": 1e-8,              # Mishchenko & Defazio 2024 code default
        "weight_decay": 0.0,          # Mishchenko & Defazio 2024 code default (decoupled when > 0)
        "d0": 1e-6,                   # Mishchenko & Defazio 2024 code default (initial estimate)
        "d_coef": 1.0,                # Mishchenko & Defazio 2024 code default
    }),
    OptimInfo("adopt", ADOPT, _ADAM_FAMILY, "Adam normalising g by the previous second moment (Taniguchi et al. 2024)", defaults={
        "learning_rate": 0.001,       # Taniguchi et al. 2024 code default
        "beta1": 0.9,                 # Taniguchi et al. 2024 code default
        "beta2": 0.9999,              # Taniguchi et al. 2024 code default
        "epsilon": 1e-6,              # Taniguchi et al. 2024 code default
        "weight_decay": 0.0,          # Taniguchi et al. 2024 code default (coupled)
    }),
    OptimInfo("cautious", Cautious, "wrappers", "any optimizer's update masked where it disagrees with the gradient (Liang et al. 2024)",
              defaults={
        "inner": "adamw",             # Liang et al. 2024: C-AdamW, the paper's main optimizer
    }),
]}

NAMES = tuple(REGISTRY)
FAMILIES = tuple(dict.fromkeys(info.family for info in REGISTRY.values()))
DECOUPLED = tuple(n for n, info in REGISTRY.items() if info.decoupled)


def hyperparams(name: str, profile: str = "scratch", **overrides) -> dict:
    """The full hyperparameter dict `create(name, ..., **overrides)` uses: the record's defaults with the
    training profile's learning rate (PROFILES), updated by overrides.

    For a wrapper (lookahead, cautious), the inner optimizer's defaults and every override that is not the
    wrapper's own go to the inner optimizer. Raises ValueError for an unknown optimizer, profile or
    hyperparameter name."""
    if name not in REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(NAMES)}")
    info = REGISTRY[name]
    if info.wrapper:
        inner = overrides.pop("inner", info.defaults["inner"])
        if inner not in REGISTRY or REGISTRY[inner].wrapper:
            raise ValueError(f"invalid inner: {inner!r} ({name} wraps one of "
                             f"{', '.join(n for n, i in REGISTRY.items() if not i.wrapper)})")
        own = {k: overrides.pop(k, v) for k, v in info.defaults.items() if k != "inner"}
        return {"inner": inner, **own, **hyperparams(inner, profile, **overrides)}
    for key in overrides:
        if key not in info.defaults:
            raise ValueError(f"unknown hyperparameter {key!r} for {name}; it takes {', '.join(info.defaults)}")
    return {**info.defaults, "learning_rate": info.learning_rate(profile), **overrides}


DEFAULTS: dict[str, dict] = {name: hyperparams(name) for name in NAMES}


def create(name: str, parameters, **overrides) -> paddle.optimizer.Optimizer:
    """Build optimizer `name` over `parameters` (a list, e.g. model.parameters()) with DEFAULTS[name]
    updated by `overrides`. Raises ValueError naming any unknown name or bad value."""
    hp = hyperparams(name, **overrides)
    parameters = list(parameters)
    info = REGISTRY[name]
    if info.wrapper:
        own = {k: hp.pop(k) for k in info.defaults if k != "inner"}
        return info.opt_class(create(hp.pop("inner"), parameters, **hp), **own)
    if not info.builtin:
        return info.opt_class(parameters, **hp)
    hp = {k: _check.BY_NAME[k](k, v) for k, v in hp.items()}
    if "weight_decay" in hp and not info.decoupled:
        hp["weight_decay"] = hp["weight_decay"] or None  # 0: no L2 regularizer op at all
    for ours, theirs in info.paddle_names.items():
        hp[theirs] = tuple(hp.pop(k) for k in ours) if isinstance(ours, tuple) else hp.pop(ours)
    return info.opt_class(parameters=parameters, **hp, **info.fixed)


__all__ = ["DECOUPLED", "DEFAULTS", "FAMILIES", "NAMES", "PROFILES", "REGISTRY", "OptimInfo", "create",
           "hyperparams", "QHM", "QHAdam", "Lion", "AdaBelief", "Lookahead", "SFSGD", "SFAdamW", "Muon", "Adan",
           "Prodigy", "ADOPT", "Cautious"]
