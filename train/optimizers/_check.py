"""Hyperparameter validation shared by the registry and the from-scratch optimizers.

Each checker takes (name, value) and returns the value as the type Paddle wants, or raises
ValueError naming the hyperparameter and the bad value.
"""
from __future__ import annotations

import math


def _show(value) -> str:
    """repr of a bad value, cut to one short line (a tensor passed by mistake must not flood the terminal)."""
    r = " ".join(repr(value).split())
    return r if len(r) <= 60 else r[:57] + "..."


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"invalid {name}: {_show(value)} (must be a finite number)")
    return float(value)


def _in_range(inside, allowed: str, integer: bool = False):
    """A checker: a finite number (an int, if `integer`) for which inside(value) holds; `allowed` says which."""
    must = f"must be {'an integer ' if integer else ''}{allowed}"

    def check(name: str, value):
        if integer:
            v = value if isinstance(value, int) and not isinstance(value, bool) else None
        else:
            v = _number(name, value)
        if v is None or not inside(v):
            raise ValueError(f"invalid {name}: {_show(value)} ({must})")
        return v
    return check


positive = _in_range(lambda v: v > 0, "> 0")                  # learning rates, epsilons
nonnegative = _in_range(lambda v: v >= 0, ">= 0")             # weight decay, initial accumulator values
unit = _in_range(lambda v: 0 <= v < 1, "in [0, 1)")           # decay rates: betas, rho, momentum
closed_unit = _in_range(lambda v: 0 <= v <= 1, "in [0, 1]")   # mixing weights: QHM's nu, Lookahead's alpha
open_unit = _in_range(lambda v: 0 < v < 1, "in (0, 1)")       # Rprop's shrink factor eta_minus
above_one = _in_range(lambda v: v > 1, "> 1")                 # Rprop's growth factor eta_plus
count = _in_range(lambda v: v >= 1, ">= 1", integer=True)     # Lookahead's k, ASGD's batch_num, Muon's ns_steps
natural = _in_range(lambda v: v >= 0, ">= 0", integer=True)   # Schedule-Free's warmup_steps (0: none)


def boolean(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"invalid {name}: {_show(value)} (must be True or False)")
    return value


# The checker of each hyperparameter, by name: a name means the same thing in every optimizer (the registry
# checks the built-ins' values with these; the optimizers written here check their own in their constructors).
BY_NAME = {
    "learning_rate": positive, "weight_decay": nonnegative, "epsilon": positive,
    "beta1": unit, "beta2": unit, "beta3": unit, "rho": unit, "momentum": unit,
    "use_nesterov": boolean, "centered": boolean, "initial_accumulator_value": nonnegative,
    "momentum_decay": nonnegative, "batch_num": count,
    "eta_minus": open_unit, "eta_plus": above_one, "step_min": positive, "step_max": positive,
}
