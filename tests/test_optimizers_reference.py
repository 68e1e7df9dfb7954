"""Every registry optimizer (Paddle built-ins and ours) against an independent numpy oracle: 100 steps on
random parameters and gradients, several shapes, weight decay on and off, float32 tolerance.

The oracle (RULES, below) is a second implementation of each rule for testing only: numpy, float64, one
tensor at a time, no fused kernels. Each rule is `rule(θ, g, s, t, **hyperparameters) -> new θ` (s: the
rule's state, a dict updated in place; t = 1, 2, ...), with the registry's hyperparameter names; Prodigy,
whose step size is estimated from all parameters together, takes lists of tensors (JOINT). For Paddle's
built-ins it follows what the kernels compute where that differs from the paper (ε placement, learning
rate inside a buffer): docs/optimizers.md, "What Paddle's built-ins actually compute", says how.
"""
from __future__ import annotations

import models  # noqa: F401  (first: quiets Paddle)
import numpy as np
import paddle
import pytest

from train.optimizers import DECOUPLED, NAMES, create, hyperparams


def _zeros(s, *names, like):
    for n in names:
        s.setdefault(n, np.zeros_like(like))


def _adam_moments(g, s, t, beta1, beta2):
    _zeros(s, "m", "v", like=g)
    s["m"] = beta1 * s["m"] + (1 - beta1) * g
    s["v"] = beta2 * s["v"] + (1 - beta2) * g * g
    return s["m"] / (1 - beta1 ** t), s["v"] / (1 - beta2 ** t)


def sgd(θ, g, s, t, learning_rate, weight_decay):
    return θ - learning_rate * (g + weight_decay * θ)


def momentum(θ, g, s, t, learning_rate, momentum, use_nesterov, weight_decay):
    g = g + weight_decay * θ
    _zeros(s, "v", like=θ)
    s["v"] = momentum * s["v"] + g
    return θ - learning_rate * (g + momentum * s["v"] if use_nesterov else s["v"])


def rmsprop(θ, g, s, t, learning_rate, rho, epsilon, momentum, centered, weight_decay):
    g = g + weight_decay * θ
    _zeros(s, "r", "mg", "v", like=θ)
    s["r"] = rho * s["r"] + (1 - rho) * g * g
    denom = s["r"]
    if centered:
        s["mg"] = rho * s["mg"] + (1 - rho) * g
        denom = s["r"] - s["mg"] ** 2
    s["v"] = momentum * s["v"] + learning_rate * g / np.sqrt(denom + epsilon)   # ε inside the root, η inside v
    return θ - s["v"]


def adam(θ, g, s, t, learning_rate, beta1, beta2, epsilon, weight_decay):
    m_hat, v_hat = _adam_moments(g + weight_decay * θ, s, t, beta1, beta2)
    return θ - learning_rate * m_hat / (np.sqrt(v_hat) + epsilon)


def adadelta(θ, g, s, t, learning_rate, rho, epsilon, weight_decay):
    g = g + weight_decay * θ
    _zeros(s, "eg2", "edx2", like=θ)
    s["eg2"] = rho * s["eg2"] + (1 - rho) * g * g
    dx = -np.sqrt(s["edx2"] + epsilon) / np.sqrt(s["eg2"] + epsilon) * g
    s["edx2"] = rho * s["edx2"] + (1 - rho) * dx * dx                          # accumulated without η
    return θ + learning_rate * dx


def adagrad(θ, g, s, t, learning_rate, epsilon, initial_accumulator_value, weight_decay):
    g = g + weight_decay * θ
    s.setdefault("G", np.full_like(θ, initial_accumulator_value))
    s["G"] = s["G"] + g * g
    return θ - learning_rate * g / (np.sqrt(s["G"]) + epsilon)


def adamax(θ, g, s, t, learning_rate, beta1, beta2, epsilon, weight_decay):
    g = g + weight_decay * θ
    _zeros(s, "m", "u", like=θ)
    s["m"] = beta1 * s["m"] + (1 - beta1) * g
    s["u"] = np.maximum(beta2 * s["u"] + epsilon, np.abs(g))                   # ε inside the max
    return θ - learning_rate / (1 - beta1 ** t) * s["m"] / s["u"]


def adamw(θ, g, s, t, learning_rate, beta1, beta2, epsilon, weight_decay):
    return adam(θ * (1 - learning_rate * weight_decay), g, s, t, learning_rate, beta1, beta2, epsilon, 0.0)


def lamb(θ, g, s, t, learning_rate, beta1, beta2, epsilon, weight_decay):
    m_hat, v_hat = _adam_moments(g, s, t, beta1, beta2)
    r = m_hat / (np.sqrt(v_hat) + epsilon) + weight_decay * θ
    pn, rn = np.linalg.norm(θ), np.linalg.norm(r)                              # per tensor
    return θ - learning_rate * (pn / rn if pn > 0 and rn > 0 else 1.0) * r


def qhm(θ, g, s, t, learning_rate, beta, nu, weight_decay):
    g = g + weight_decay * θ
    _zeros(s, "buf", like=θ)
    s["buf"] = beta * s["buf"] + (1 - beta) * g
    return θ - learning_rate * ((1 - nu) * g + nu * s["buf"])


def qhadam(θ, g, s, t, learning_rate, beta1, beta2, nu1, nu2, epsilon, weight_decay):
    g = g + weight_decay * θ
    m_hat, v_hat = _adam_moments(g, s, t, beta1, beta2)
    denominator = np.sqrt((1 - nu2) * g * g + nu2 * v_hat) + epsilon
    return θ - learning_rate * ((1 - nu1) * g + nu1 * m_hat) / denominator


def lion(θ, g, s, t, learning_rate, beta1, beta2, weight_decay):
    _zeros(s, "m", like=θ)
    c = beta1 * s["m"] + (1 - beta1) * g
    s["m"] = beta2 * s["m"] + (1 - beta2) * g
    return θ - learning_rate * (np.sign(c) + weight_decay * θ)


def adabelief(θ, g, s, t, learning_rate, beta1, beta2, epsilon, weight_decay):
    θ = θ * (1 - learning_rate * weight_decay)
    _zeros(s, "m", "s", like=θ)
    s["m"] = beta1 * s["m"] + (1 - beta1) * g
    s["s"] = beta2 * s["s"] + (1 - beta2) * (g - s["m"]) ** 2 + epsilon
    m_hat, s_hat = s["m"] / (1 - beta1 ** t), s["s"] / (1 - beta2 ** t)
    return θ - learning_rate * m_hat / (np.sqrt(s_hat) + epsilon)


def nadam(θ, g, s, t, learning_rate, beta1, beta2, epsilon, momentum_decay, weight_decay):
    g = g + weight_decay * θ
    _zeros(s, "m", "v", like=θ)
    mu = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))                     # μ_t (Dozat's schedule)
    mu_next = beta1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))          # μ_{t+1}
    s["prod"] = s.get("prod", 1.0) * mu                                        # Π_{i≤t} μ_i
    s["m"] = beta1 * s["m"] + (1 - beta1) * g                                  # plain β1 in the EMA, μ only in m̂
    s["v"] = beta2 * s["v"] + (1 - beta2) * g * g
    m_hat = mu_next * s["m"] / (1 - s["prod"] * mu_next) + (1 - mu) * g / (1 - s["prod"])
    return θ - learning_rate * m_hat / (np.sqrt(s["v"] / (1 - beta2 ** t)) + epsilon)


def radam(θ, g, s, t, learning_rate, beta1, beta2, epsilon, weight_decay):
    g = g + weight_decay * θ
    _zeros(s, "m", "v", like=θ)
    s["m"] = beta1 * s["m"] + (1 - beta1) * g
    s["v"] = beta2 * s["v"] + (1 - beta2) * g * g
    m_hat = s["m"] / (1 - beta1 ** t)
    rho_inf = 2 / (1 - beta2) - 1
    rho = rho_inf - 2 * t * beta2 ** t / (1 - beta2 ** t)
    if rho <= 5:                                                               # 5, not the paper's 4 (as PyTorch)
        return θ - learning_rate * m_hat
    r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
    return θ - learning_rate * m_hat * r * np.sqrt(1 - beta2 ** t) / (np.sqrt(s["v"]) + epsilon)   # ε outside √v


def asgd(θ, g, s, t, learning_rate, batch_num, weight_decay):
    g = g + weight_decay * θ
    s.setdefault("y", np.zeros((batch_num, *θ.shape)))
    _zeros(s, "d", like=θ)
    i = (t - 1) % batch_num                                                    # SAG's slot, cycled by step count
    s["d"] = s["d"] - s["y"][i] + g                                            # d = sum of the stored gradients
    s["y"][i] = g
    return θ - learning_rate / min(t, batch_num) * s["d"]


def rprop(θ, g, s, t, learning_rate, eta_minus, eta_plus, step_min, step_max):
    _zeros(s, "prev", like=θ)
    s.setdefault("step", np.full_like(θ, learning_rate))                      # Δ_0: the learning rate, once
    agree = g * s["prev"]
    s["step"] = np.clip(s["step"] * np.where(agree > 0, eta_plus, np.where(agree < 0, eta_minus, 1.0)), step_min, step_max)
    g = np.where(agree < 0, 0.0, g)                                            # after a sign change: no move, forget g
    s["prev"] = g
    return θ - np.sign(g) * s["step"]


def _schedule_free(θ, s, t, z_step, gamma, beta):
    """Defazio et al. 2024, Algorithm 1 around a base step; the parameters hold y."""
    if t == 1:
        s.update(z=θ.copy(), x=θ.copy(), weights=0.0)
    s["z"] = s["z"] - z_step
    s["weights"] += gamma ** 2
    c = gamma ** 2 / s["weights"]
    s["x"] = (1 - c) * s["x"] + c * s["z"]
    return (1 - beta) * s["z"] + beta * s["x"]


def sf_sgd(θ, g, s, t, learning_rate, momentum, weight_decay, warmup_steps):
    gamma = learning_rate * min(1.0, t / warmup_steps) if warmup_steps else learning_rate
    return _schedule_free(θ, s, t, gamma * (g + weight_decay * θ), gamma, momentum)


def sf_adamw(θ, g, s, t, learning_rate, beta1, beta2, epsilon, weight_decay, warmup_steps):
    _zeros(s, "v", like=θ)
    s["v"] = beta2 * s["v"] + (1 - beta2) * g * g
    gamma = learning_rate * (min(1.0, t / warmup_steps) if warmup_steps else 1.0) * np.sqrt(1 - beta2 ** t)
    return _schedule_free(θ, s, t, gamma * (g / (np.sqrt(s["v"]) + epsilon) + weight_decay * θ), gamma, beta1)


def newton_schulz(G, steps):
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.T if G.shape[0] > G.shape[1] else G
    X = X / (np.linalg.norm(X) + 1e-7)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if G.shape[0] > G.shape[1] else X


def muon(θ, g, s, t, learning_rate, momentum, use_nesterov, ns_steps, beta1, beta2, epsilon, weight_decay):
    if θ.ndim not in (2, 4) or (θ.ndim == 4 and θ.shape[1] == 1):              # vectors, depthwise: AdamW
        return adamw(θ, g, s, t, learning_rate, beta1, beta2, epsilon, weight_decay)
    _zeros(s, "M", like=θ)
    s["M"] = momentum * s["M"] + (1 - momentum) * g
    U = ((1 - momentum) * g + momentum * s["M"] if use_nesterov else s["M"]).reshape(θ.shape[0], -1)
    O = newton_schulz(U, ns_steps)
    return θ * (1 - learning_rate * weight_decay) - learning_rate * 0.2 * np.sqrt(max(U.shape)) * O.reshape(θ.shape)


def adan(θ, g, s, t, learning_rate, beta1, beta2, beta3, epsilon, weight_decay):
    _zeros(s, "m", "v", "n", like=θ)
    diff = g - s.get("prev", g)                                                # g_0 = g_1
    s["prev"] = g
    s["m"] = beta1 * s["m"] + (1 - beta1) * g
    s["v"] = beta2 * s["v"] + (1 - beta2) * diff
    s["n"] = beta3 * s["n"] + (1 - beta3) * (g + beta2 * diff) ** 2
    rate = learning_rate / (np.sqrt(s["n"] / (1 - beta3 ** t)) + epsilon)
    step = rate * (s["m"] / (1 - beta1 ** t) + beta2 * s["v"] / (1 - beta2 ** t))
    return (θ - step) / (1 + learning_rate * weight_decay)                     # proximal decay


def prodigy(θs, gs, s, t, learning_rate, beta1, beta2, beta3, epsilon, weight_decay, d0, d_coef):
    """Every tensor at once: d is estimated from all of them."""
    if t == 1:
        s.update(x0=[θ.copy() for θ in θs], m=[0 * θ for θ in θs], v=[0 * θ for θ in θs], s=[0 * θ for θ in θs],
                 d=d0, r=0.0)
    d = s["d"]
    dlr = d * learning_rate
    s["r"] = beta3 * s["r"] + d / d0 * dlr * sum(float(np.sum(g * (x0 - θ))) for g, x0, θ in zip(gs, s["x0"], θs))
    s["s"] = [beta3 * si + d / d0 * dlr * g for si, g in zip(s["s"], gs)]
    s["m"] = [beta1 * m + (1 - beta1) * d * g for m, g in zip(s["m"], gs)]
    s["v"] = [beta2 * v + (1 - beta2) * d * d * g * g for v, g in zip(s["v"], gs)]
    s["d"] = max(d, d_coef * s["r"] / sum(float(np.abs(si).sum()) for si in s["s"]))
    return [θ - dlr * weight_decay * θ - dlr * m / (np.sqrt(v) + s["d"] * epsilon)
            for θ, m, v in zip(θs, s["m"], s["v"])]


def adopt(θ, g, s, t, learning_rate, beta1, beta2, epsilon, weight_decay):
    g = g + weight_decay * θ
    if t == 1:
        s.update(m=0 * θ, v=g * g)
        return θ
    clip = (t - 1) ** 0.25
    s["m"] = beta1 * s["m"] + (1 - beta1) * np.clip(g / np.maximum(np.sqrt(s["v"]), epsilon), -clip, clip)
    s["v"] = beta2 * s["v"] + (1 - beta2) * g * g
    return θ - learning_rate * s["m"]


def cautious(θ, g, s, t, inner, **inner_hp):
    after = RULES[inner](θ, g, s.setdefault("inner", {}), t, **inner_hp)
    kappa = inner_hp["learning_rate"] * inner_hp.get("weight_decay", 0.0) if inner in DECOUPLED else 0.0
    u = θ * (1 - kappa) - after                                                # the inner rule's update
    mask = (u * g > 0).astype(float)
    return θ * (1 - kappa) - u * mask / max(mask.mean(), 1e-3)


def lookahead(θ, g, s, t, inner, k, alpha, **inner_hp):
    s.setdefault("slow", θ.copy())
    θ = RULES[inner](θ, g, s.setdefault("inner", {}), t, **inner_hp)
    if t % k == 0:
        s["slow"] = s["slow"] + alpha * (θ - s["slow"])
        θ = s["slow"].copy()
    return θ


RULES = {"sgd": sgd, "momentum": momentum, "rmsprop": rmsprop, "adam": adam, "adadelta": adadelta,
         "adagrad": adagrad, "adamax": adamax, "adamw": adamw, "lamb": lamb, "qhm": qhm,
         "lookahead": lookahead, "qhadam": qhadam, "lion": lion, "adabelief": adabelief, "nadam": nadam,
         "radam": radam, "asgd": asgd, "rprop": rprop, "sf_sgd": sf_sgd, "sf_adamw": sf_adamw, "muon": muon,
         "adan": adan, "prodigy": prodigy, "adopt": adopt, "cautious": cautious}
JOINT = {"prodigy"}  # rules that take every tensor at once
# Prodigy's d comes from ⟨g, x₀ − x⟩, early on a difference of nearly equal numbers: float32 rounding (as in
# the authors' float32 code) moves d by ~1 %, and the parameters with it. Its rule is compared in float64.
FLOAT64 = {"prodigy"}

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
    ("nadam", {}), ("nadam", WD),
    ("radam", {}), ("radam", WD), ("radam", {"beta2": 0.9}),                  # β2 = 0.9: rectified from step 6 on
    ("asgd", {}), ("asgd", WD), ("asgd", {"batch_num": 1}),
    ("rprop", {}), ("rprop", {"learning_rate": 0.01, "eta_plus": 1.5, "step_max": 0.05}),
    ("sf_sgd", {"learning_rate": 0.1}), ("sf_sgd", {"learning_rate": 0.1, "warmup_steps": 10, **WD}),
    ("sf_adamw", {}), ("sf_adamw", {"warmup_steps": 10, **WD}),
    ("muon", {"weight_decay": 0.0}), ("muon", WD), ("muon", {"use_nesterov": False, "ns_steps": 3}),
    ("adan", {}), ("adan", WD),
    ("prodigy", {}), ("prodigy", WD),
    ("adopt", {}), ("adopt", WD),
    ("cautious", {}), ("cautious", {"weight_decay": 0.0}), ("cautious", {"inner": "momentum", **WD}),
    ("cautious", {"inner": "lion", **WD}),
]


def problem(seed: int):
    rng = np.random.default_rng(seed)
    theta0 = [rng.standard_normal(s).astype("float32") for s in SHAPES]
    grads = [[rng.standard_normal(s).astype("float32") for s in SHAPES] for _ in range(STEPS)]
    return theta0, grads


def run_paddle(name: str, overrides: dict, theta0, grads):
    dtype = "float64" if name in FLOAT64 else "float32"
    params = [paddle.create_parameter(list(x.shape), dtype, default_initializer=paddle.nn.initializer.Assign(x.astype(dtype)))
              for x in theta0]
    opt = create(name, params, **overrides)
    for gs in grads:
        loss = sum((p * paddle.to_tensor(g.astype(dtype))).sum() for p, g in zip(params, gs))  # dloss/dp = g exactly
        loss.backward()
        opt.step()
        opt.clear_grad()
    return [p.numpy() for p in params]


def run_reference(name: str, overrides: dict, theta0, grads):
    rule, hp = RULES[name], hyperparams(name, **overrides)
    if name in JOINT:
        thetas, state = [x.astype("float64") for x in theta0], {}
        for t, gs in enumerate(grads, start=1):
            thetas = rule(thetas, [g.astype("float64") for g in gs], state, t, **hp)
        return thetas
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
        assert decays == ({True, False} if "weight_decay" in hyperparams(n) else {False}), n


@pytest.mark.parametrize("name,overrides", CASES, ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'defaults'}" for n, o in CASES])
def test_matches_reference_rule(name, overrides):
    theta0, grads = problem(seed=len(name))
    got = run_paddle(name, overrides, theta0, grads)
    want = run_reference(name, overrides, theta0, grads)
    for g, w, x0 in zip(got, want, theta0):
        assert np.abs(w - x0).max() > 1e-3  # the optimizer moved the parameter: the comparison means something
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5)
