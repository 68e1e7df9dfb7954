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


def positive(name: str, value) -> float:
    """A finite number > 0 (learning rates, epsilons)."""
    v = _number(name, value)
    if v <= 0:
        raise ValueError(f"invalid {name}: {_show(value)} (must be > 0)")
    return v


def nonnegative(name: str, value) -> float:
    """A finite number >= 0 (weight decay, initial accumulator values)."""
    v = _number(name, value)
    if v < 0:
        raise ValueError(f"invalid {name}: {_show(value)} (must be >= 0)")
    return v


def unit(name: str, value) -> float:
    """A decay rate in [0, 1) (betas, rho, momentum)."""
    v = _number(name, value)
    if not 0 <= v < 1:
        raise ValueError(f"invalid {name}: {_show(value)} (must be in [0, 1))")
    return v


def closed_unit(name: str, value) -> float:
    """A mixing weight in [0, 1] (QHM's nu, Lookahead's alpha)."""
    v = _number(name, value)
    if not 0 <= v <= 1:
        raise ValueError(f"invalid {name}: {_show(value)} (must be in [0, 1])")
    return v


def boolean(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"invalid {name}: {_show(value)} (must be True or False)")
    return value


def count(name: str, value) -> int:
    """An integer >= 1 (Lookahead's k)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"invalid {name}: {_show(value)} (must be an integer >= 1)")
    return value
