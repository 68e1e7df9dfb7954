"""Every registry optimizer (Paddle built-ins and ours) against the numpy reference rules in
train/optimizers/reference.py: 100 steps on random parameters and gradients, several shapes,
weight decay on and off, float32 tolerance."""
from __future__ import annotations

import models  # noqa: F401  (first: quiets Paddle)
import numpy as np
import paddle
import pytest

from train.optimizers import NAMES, create, hyperparams
from train.optimizers.reference import RULES

SHAPES = [(7,), (4, 5), (3, 2, 3, 3)]
STEPS = 100
WD = {"weight_decay": 0.1}

CASES = [
    ("sgd", {}), ("sgd", WD),
    ("momentum", {}), ("momentum", WD), ("momentum", {"use_nesterov": True}),
    ("momentum", {"use_nesterov": True, **WD}),
    ("rmsprop", {}), ("rmsprop", WD), ("rmsprop", {"centered": True}),
    ("rmsprop", {"centered": True, "momentum": 0.9, **WD}), ("rmsprop", {"momentum": 0.5}),
    ("adam", {}), ("adam", WD),
    ("adadelta", {}), ("adadelta", WD),
    ("adagrad", {}), ("adagrad", {"initial_accumulator_value": 0.1, **WD}),
    ("adamax", {}), ("adamax", WD),
    ("adamw", {"weight_decay": 0.0}), ("adamw", WD),
    ("lamb", {"weight_decay": 0.0}), ("lamb", WD),
    ("qhm", {}), ("qhm", WD), ("qhm", {"beta": 0.9, "nu": 0.5, **WD}),
    ("qhadam", {}), ("qhadam", WD), ("qhadam", {"nu1": 0.3, "nu2": 0.6, "beta1": 0.9}),
    ("lion", {}), ("lion", WD),
    ("adabelief", {}), ("adabelief", WD),
    ("lookahead", {}), ("lookahead", {"inner": "momentum", **WD}), ("lookahead", {"inner": "qhm", "k": 3, "alpha": 0.8}),
]


def problem(seed: int):
    rng = np.random.default_rng(seed)
    theta0 = [rng.standard_normal(s).astype("float32") for s in SHAPES]
    grads = [[rng.standard_normal(s).astype("float32") for s in SHAPES] for _ in range(STEPS)]
    return theta0, grads


def run_paddle(name: str, overrides: dict, theta0, grads):
    params = [paddle.create_parameter(list(x.shape), "float32", default_initializer=paddle.nn.initializer.Assign(x))
              for x in theta0]
    opt = create(name, params, **overrides)
    for gs in grads:
        loss = sum((p * paddle.to_tensor(g)).sum() for p, g in zip(params, gs))  # dloss/dp = g exactly
        loss.backward()
        opt.step()
        opt.clear_grad()
    return [p.numpy() for p in params]


def run_reference(name: str, overrides: dict, theta0, grads):
    rule, hp = RULES[name], hyperparams(name, **overrides)
    out = []
    for i, x in enumerate(theta0):
        theta, state = x.astype("float64"), {}
        for t, gs in enumerate(grads, start=1):
            theta = rule(theta, gs[i].astype("float64"), state, t, **hp)
        out.append(theta)
    return out


def test_every_registry_optimizer_has_cases_with_and_without_weight_decay():
    names = {n for n, _ in CASES}
    assert names == set(NAMES) == set(RULES)
    for n in NAMES:
        decays = {hyperparams(n, **o).get("weight_decay", 0) > 0 for m, o in CASES if m == n}
        assert decays == {True, False}, n


@pytest.mark.parametrize("name,overrides", CASES, ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'defaults'}" for n, o in CASES])
def test_matches_reference_rule(name, overrides):
    theta0, grads = problem(seed=len(name))
    got = run_paddle(name, overrides, theta0, grads)
    want = run_reference(name, overrides, theta0, grads)
    for g, w, x0 in zip(got, want, theta0):
        assert np.abs(w - x0).max() > 1e-3  # the optimizer moved the parameter: the comparison means something
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5)
