"""The identities the papers state, checked on a small network with a real loss:
QHM (Ma & Yarats 2019): ν=1 is momentum with dampening, ν=β is Nesterov momentum, ν=0 or β=0 is SGD.
QHAdam: ν1=ν2=1 is Adam. Lookahead (Zhang et al. 2019): k=1, α=1 is the inner optimizer; α=0 keeps
the weights at the slow weights. And QHM's fast path (two merged_momentum_ kernels, the default) is the
rule written in QHM._update, weight decay and state round trips between the two included."""
from __future__ import annotations

import models  # noqa: F401  (first: quiets Paddle)
import numpy as np
import paddle
import pytest

from train.optimizers import QHM, create, hyperparams

RNG = np.random.default_rng(0)
INIT = [RNG.standard_normal(s).astype("float32") * 0.5 for s in ((6, 8), (8,), (8, 3), (3,))]
DATA = [(RNG.standard_normal((16, 6)).astype("float32"), RNG.integers(0, 3, 16)) for _ in range(30)]


def mlp(init=INIT):
    net = paddle.nn.Sequential(paddle.nn.Linear(6, 8), paddle.nn.Tanh(), paddle.nn.Linear(8, 3))
    for p, x in zip(net.parameters(), init):
        p.set_value(x)
    return net


def run(build, batches, init=INIT, state=None, snapshots=()):
    """Train mlp(init) with the optimizer build(parameters) (loaded with `state` first), a step per batch.
    Returns the final parameters, the parameters at each step number in `snapshots`, and the optimizer."""
    net = mlp(init)
    opt = build(net.parameters())
    if state is not None:
        opt.set_state_dict(state)
    seen = {}
    for t, (x, y) in enumerate(batches, start=1):
        loss = paddle.nn.functional.cross_entropy(net(paddle.to_tensor(x)), paddle.to_tensor(y))
        loss.backward()
        opt.step()
        opt.clear_grad()
        if t in snapshots:
            seen[t] = [p.numpy() for p in net.parameters()]
    return [p.numpy() for p in net.parameters()], seen, opt


def train(name, steps=len(DATA), snapshots=(), **overrides):
    """Parameters after `steps` steps of create(name, **overrides) (and at each step number in `snapshots`)."""
    final, seen, _ = run(lambda ps: create(name, ps, **overrides), DATA[:steps], snapshots=snapshots)
    return final, seen


def assert_same(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def assert_moved(a):
    assert max(np.abs(x - x0).max() for x, x0 in zip(a, INIT)) > 1e-2


ALPHA, BETA = 0.5, 0.9


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_qhm_nu1_is_momentum_with_dampening(wd):
    # dampened buffer g = (1-β)·v with v Paddle's undampened buffer, so α·g = α(1-β)·v
    qhm, _ = train("qhm", learning_rate=ALPHA, beta=BETA, nu=1.0, weight_decay=wd)
    mom, _ = train("momentum", learning_rate=ALPHA * (1 - BETA), momentum=BETA, weight_decay=wd)
    assert_moved(qhm)
    assert_same(qhm, mom)


def test_qhm_nu_beta_is_nesterov():
    qhm, _ = train("qhm", learning_rate=ALPHA, beta=BETA, nu=BETA)
    nag, _ = train("momentum", learning_rate=ALPHA * (1 - BETA), momentum=BETA, use_nesterov=True)
    plain, _ = train("momentum", learning_rate=ALPHA * (1 - BETA), momentum=BETA)
    assert_same(qhm, nag)
    assert max(np.abs(a - b).max() for a, b in zip(qhm, plain)) > 1e-4  # and Nesterov is not plain momentum


@pytest.mark.parametrize("beta,nu", [(BETA, 0.0), (0.0, 0.7)])
def test_qhm_without_momentum_is_sgd(beta, nu):
    qhm, _ = train("qhm", learning_rate=0.3, beta=beta, nu=nu)
    sgd, _ = train("sgd", learning_rate=0.3)
    assert_moved(qhm)
    assert_same(qhm, sgd)


def test_qhadam_nu1_nu2_one_is_adam():
    qh, _ = train("qhadam", learning_rate=0.01, beta1=0.9, beta2=0.999, nu1=1.0, nu2=1.0, epsilon=1e-8)
    adam, _ = train("adam", learning_rate=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8)
    assert_moved(qh)
    assert_same(qh, adam)


@pytest.mark.parametrize("inner,lr", [("adam", 0.01), ("sgd", 0.3), ("qhm", 0.3)])
def test_lookahead_k1_alpha1_is_inner(inner, lr):
    la, _ = train("lookahead", inner=inner, k=1, alpha=1.0, learning_rate=lr)
    ref, _ = train(inner, learning_rate=lr)
    assert_moved(la)
    assert_same(la, ref)


def test_lookahead_alpha0_stays_at_slow_weights():
    k = 5
    _, seen = train("lookahead", inner="adam", k=k, alpha=0.0, learning_rate=0.01, snapshots=(3, 5, 10, 12, 15))
    for t in (5, 10, 15):  # every sync resets the fast weights to φ = φ_0
        assert_same(seen[t], INIT, rtol=0, atol=0)
    for t in (3, 12):      # in between, the inner optimizer moves them
        assert_moved(seen[t])


def qhm(fused, **overrides):
    """A QHM builder on the fast path (fused=True, what create() returns) or on the rule (QHM._update)."""
    return lambda ps: QHM(ps, **hyperparams("qhm", **overrides), fused=fused)


@pytest.mark.parametrize("wd", [0.0, 0.01])
@pytest.mark.parametrize("beta", [BETA, 0.999])
def test_qhm_fast_path_is_the_rule(beta, wd):
    hp = {"learning_rate": ALPHA, "beta": beta, "nu": 0.7, "weight_decay": wd}
    fast, _, _ = run(qhm(True, **hp), DATA)
    rule, _, _ = run(qhm(False, **hp), DATA)
    assert create("qhm", mlp().parameters()).fused  # the registry's QHM is the fast path
    assert_moved(fast)
    assert_same(fast, rule)


@pytest.mark.parametrize("first", [True, False], ids=["fast-then-rule", "rule-then-fast"])
def test_qhm_state_moves_between_fast_path_and_rule(first, tmp_path):
    hp = {"learning_rate": ALPHA, "beta": BETA, "nu": 0.7, "weight_decay": 0.01}
    whole, _, _ = run(qhm(True, **hp), DATA)
    half, _, opt = run(qhm(first, **hp), DATA[:15])
    paddle.save(opt.state_dict(), str(tmp_path / "opt.pdopt"))
    resumed, _, _ = run(qhm(not first, **hp), DATA[15:], init=half, state=paddle.load(str(tmp_path / "opt.pdopt")))
    assert_same(resumed, whole)
