"""The identities the papers state, checked on a small network with a real loss:
QHM (Ma & Yarats 2019): ν=1 is momentum with dampening, ν=β is Nesterov momentum, ν=0 or β=0 is SGD.
QHAdam: ν1=ν2=1 is Adam. Lookahead (Zhang et al. 2019): k=1, α=1 is the inner optimizer; α=0 keeps
the weights at the slow weights. And QHM's fast path (two merged_momentum_ kernels, the default) is the
rule written in QHM._update, weight decay and state round trips between the two included.
Schedule-Free (Defazio et al. 2024): β=0 is SGD / Adam without momentum, x is the average of the z's,
eval()/train() swap x and y exactly, a checkpoint taken at x resumes exactly. Cautious (Liang et al. 2024):
a full mask is the inner optimizer. Muon (Jordan et al. 2024): a matrix's update has nearly equal singular
values, vectors follow AdamW. ADOPT: the first step only sets v. Prodigy: d grows from d0. Adan: β2=0 is Adam."""
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


# ---- Schedule-Free ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_schedule_free_sgd_without_interpolation_is_sgd(wd):
    sf, _ = train("sf_sgd", learning_rate=0.3, momentum=0.0, weight_decay=wd)  # β = 0: y = z, an SGD iterate
    sgd, _ = train("sgd", learning_rate=0.3, weight_decay=wd)
    assert_moved(sf)
    assert_same(sf, sgd)


def test_schedule_free_adamw_without_interpolation_is_adam_without_momentum():
    # β1 = 0: y = z, whose step is Adam's with β1 = 0 (ε is outside √v, Adam's outside √v̂: 1e-12 makes it moot)
    sf, _ = train("sf_adamw", learning_rate=0.01, beta1=0.0, epsilon=1e-12)
    adam, _ = train("adam", learning_rate=0.01, beta1=0.0, epsilon=1e-12)
    assert_moved(sf)
    assert_same(sf, adam)


def sf_run(name, steps, **overrides):
    """(network, optimizer, [z of every parameter after each step]) after `steps` steps."""
    net = mlp()
    opt = create(name, net.parameters(), **overrides)
    zs = []
    for x, y in DATA[:steps]:
        paddle.nn.functional.cross_entropy(net(paddle.to_tensor(x)), paddle.to_tensor(y)).backward()
        opt.step()
        opt.clear_grad()
        zs.append([opt.state_dict()["state"][f"{i}:z"].numpy().copy() for i in range(len(INIT))])
    return net, opt, zs


def test_schedule_free_x_is_the_average_of_the_z_iterates():
    """Constant γ, no warmup: c_{t+1} = 1/t, so x is the plain mean of z_2..z_{t+1} (Polyak averaging)."""
    net, opt, zs = sf_run("sf_sgd", 12, learning_rate=0.3)
    opt.eval()
    assert_same([p.numpy() for p in net.parameters()], [np.mean([z[i] for z in zs], axis=0) for i in range(len(INIT))])


def test_schedule_free_eval_and_train_swap_x_and_y_exactly():
    net = mlp()
    opt = create("sf_adamw", net.parameters(), learning_rate=0.01, warmup_steps=3)
    opt.eval(), opt.train()                                    # before the first step: x = y = θ, nothing moves
    np.testing.assert_array_equal(net.parameters()[0].numpy(), INIT[0])
    _, opt, _ = sf_run("sf_adamw", 7, learning_rate=0.01, warmup_steps=3)
    params = opt._parameter_list
    y = [p.numpy() for p in params]
    opt.eval()
    x = [p.numpy() for p in params]
    assert max(np.abs(a - b).max() for a, b in zip(x, y)) > 1e-4
    for i, xi in enumerate(x):
        np.testing.assert_array_equal(xi, opt.state_dict()["state"][f"{i}:x"].numpy())
    opt.eval()                                                 # twice: still x
    np.testing.assert_array_equal(params[0].numpy(), x[0])
    with pytest.raises(RuntimeError, match="eval mode.*call optimizer.train()"):
        opt.step()
    opt.train()
    opt.train()
    for p, yi in zip(params, y):
        np.testing.assert_array_equal(p.numpy(), yi)           # bit for bit


@pytest.mark.parametrize("name", ["sf_sgd", "sf_adamw"])
def test_schedule_free_resumes_from_a_checkpoint_taken_at_x(name, tmp_path):
    """The loop saves the model between eval() and train() (at x): set_state_dict puts y back, so a resumed
    run equals the uninterrupted one whichever point the model file holds."""
    lr = {"learning_rate": 0.3 if name == "sf_sgd" else 0.01, "warmup_steps": 4}
    whole, _, _ = run(lambda ps: create(name, ps, **lr), DATA)
    net, opt, _ = sf_run(name, 15, **lr)
    opt.eval()
    at_x = [p.numpy() for p in net.parameters()]
    paddle.save(opt.state_dict(), str(tmp_path / "opt.pdopt"))
    resumed, _, _ = run(lambda ps: create(name, ps, **lr), DATA[15:], init=at_x, state=paddle.load(str(tmp_path / "opt.pdopt")))
    assert_same(resumed, whole, rtol=0, atol=0)


@pytest.mark.parametrize("wrapper", ["lookahead", "cautious"])
def test_wrappers_expose_their_inner_optimizers_eval_and_train(wrapper):
    opt = create(wrapper, mlp().parameters(), inner="sf_sgd")
    assert opt.eval == opt.inner.eval and opt.train == opt.inner.train
    plain = create(wrapper, mlp().parameters(), inner="adam")
    assert not hasattr(plain, "eval") and not hasattr(plain, "train")


# ---- Cautious --------------------------------------------------------------------------------------------

def test_cautious_with_a_full_mask_is_its_inner_optimizer():
    # SGD's update η·g never disagrees with the gradient: the mask is full, the rescaling 1 (float rounding
    # only: u is read back as θ − θ_A and added again)
    cautious, _ = train("cautious", inner="sgd", learning_rate=0.3)
    sgd, _ = train("sgd", learning_rate=0.3)
    assert_moved(cautious)
    assert_same(cautious, sgd, rtol=1e-6, atol=1e-6)
    # C-AdamW's first update is (1 − β1)·g/(…): it agrees with g everywhere, so the first step is AdamW's
    first, _ = train("cautious", steps=1, learning_rate=0.01)
    adamw, _ = train("adamw", steps=1, learning_rate=0.01)
    assert_same(first, adamw, rtol=1e-6, atol=1e-7)


def test_cautious_masks_momentum_that_runs_against_the_gradient():
    cautious, _ = train("cautious", inner="momentum", learning_rate=0.1)
    momentum, _ = train("momentum", learning_rate=0.1)
    assert_moved(cautious)
    assert max(np.abs(a - b).max() for a, b in zip(cautious, momentum)) > 1e-3


# ---- Muon ------------------------------------------------------------------------------------------------

def fixed_gradient_run(name, shapes, steps, **overrides):
    """Parameters after `steps` steps on fixed random gradients (dL/dθ = G exactly, whatever θ)."""
    rng = np.random.default_rng(1)
    params = [paddle.create_parameter(list(s), "float32", default_initializer=paddle.nn.initializer.Assign(
        rng.standard_normal(s).astype("float32"))) for s in shapes]
    opt = create(name, params, **overrides)
    for _ in range(steps):
        sum((p * paddle.to_tensor(rng.standard_normal(p.shape).astype("float32"))).sum() for p in params).backward()
        opt.step()
        opt.clear_grad()
    return [p.numpy() for p in params]


def test_muon_update_of_a_matrix_has_nearly_equal_singular_values():
    rng = np.random.default_rng(0)
    G = rng.standard_normal((64, 32)).astype("float32")        # singular values spread ~6x (Marchenko–Pastur)
    w = paddle.create_parameter([64, 32], "float32", default_initializer=paddle.nn.initializer.Assign(np.zeros((64, 32), "float32")))
    opt = create("muon", [w], learning_rate=0.01, weight_decay=0.0)
    (w * paddle.to_tensor(G)).sum().backward()
    opt.step()
    sv = np.linalg.svd(-w.numpy() / (0.01 * 0.2 * np.sqrt(64)), compute_uv=False)
    g_sv = np.linalg.svd(G, compute_uv=False)
    assert g_sv.max() / g_sv.min() > 4
    assert 0.6 < sv.min() and sv.max() < 1.3 and sv.max() / sv.min() < 1.8, sv   # Jordan's NS: ≈ [0.7, 1.2]


def test_muon_trains_vectors_with_adamw_and_matrices_otherwise():
    shapes = [(6, 8), (8,), (4, 2, 3, 3), (5, 1, 3, 3)]        # a matrix, a bias, a convolution, a depthwise one
    muon = fixed_gradient_run("muon", shapes, 20, learning_rate=0.01)
    adamw = fixed_gradient_run("adamw", shapes, 20, learning_rate=0.01, weight_decay=0.01)
    np.testing.assert_array_equal(muon[1], adamw[1])           # the same Paddle AdamW kernel
    np.testing.assert_array_equal(muon[3], adamw[3])
    for i in (0, 2):
        assert np.abs(muon[i] - adamw[i]).max() > 1e-3


# ---- ADOPT, Prodigy, Adan --------------------------------------------------------------------------------

def test_adopt_first_step_only_sets_the_second_moment():
    first, _ = train("adopt", steps=1, learning_rate=0.01)
    assert_same(first, INIT, rtol=0, atol=0)
    second, _ = train("adopt", steps=2, learning_rate=0.01, beta1=0.9)
    moved = max(np.abs(a - b).max() for a, b in zip(second, INIT))
    assert 0 < moved < 0.01 * (1 - 0.9) + 1e-6                 # α·(1 − β1)·clip(g2/|g1|, 1^¼ = 1); float32


def test_prodigy_d_grows_from_d0():
    net = mlp()
    opt = create("prodigy", net.parameters())
    ds = []
    for x, y in DATA:
        paddle.nn.functional.cross_entropy(net(paddle.to_tensor(x)), paddle.to_tensor(y)).backward()
        opt.step()
        opt.clear_grad()
        ds.append(opt.d)
    assert ds[0] == 1e-6                                       # x = x0 at the first step: r = 0
    assert all(b >= a for a, b in zip(ds, ds[1:]))
    assert ds[-1] > 1e3 * 1e-6, ds[-1]
    assert opt.state_dict()["d"] == ds[-1]


def test_adan_without_the_difference_term_is_adam():
    # β2 = 0: the difference momentum drops out and n is Adam's v with β3
    adan, _ = train("adan", learning_rate=0.01, beta1=0.9, beta2=0.0, beta3=0.999, epsilon=1e-12)
    adam, _ = train("adam", learning_rate=0.01, beta1=0.9, beta2=0.999, epsilon=1e-12)
    assert_moved(adan)
    assert_same(adan, adam)
