"""Numpy reference rules: one short function per registry optimizer, written from the paper's equations,
independent of the Paddle code. Tests run every optimizer against these (tests/test_optimizers_reference.py).

Every rule has the signature `rule(θ, g, s, t, **hyperparameters) -> new θ`: θ the parameter, g its
gradient, s a dict holding the rule's state (empty before the first step, updated in place), t the step
number (1, 2, ...). Hyperparameter names are the registry's. Where Paddle's kernel differs from the paper
(epsilon placement, learning rate inside a buffer), the rule follows what Paddle runs and the docstring
says so, because the point is to check the formula that is actually executed.

"Coupled L2" below means g ← g + λθ before the rule (Paddle's `weight_decay=` regularizer).
"""
from __future__ import annotations

import numpy as np


def _zeros(s, *names, like):
    for n in names:
        s.setdefault(n, np.zeros_like(like))


def sgd(θ, g, s, t, learning_rate, weight_decay=0.0):
    """SGD (Robbins & Monro 1951): θ ← θ − η(g + λθ), coupled L2."""
    return θ - learning_rate * (g + weight_decay * θ)


def momentum(θ, g, s, t, learning_rate, momentum, use_nesterov=False, weight_decay=0.0):
    """Heavy-ball momentum (Polyak 1964; Sutskever et al. 2013, Eq. 1-2) in Paddle's form: no dampening,
    η outside the buffer.  v ← μv + g;  θ ← θ − ηv.  Nesterov (Sutskever et al. 2013, Eq. 3-4, in the
    look-ahead-free form Paddle uses): θ ← θ − η(g + μv).  Coupled L2 (fused into Paddle's kernel)."""
    g = g + weight_decay * θ
    _zeros(s, "v", like=θ)
    s["v"] = momentum * s["v"] + g
    return θ - learning_rate * (g + momentum * s["v"] if use_nesterov else s["v"])


def rmsprop(θ, g, s, t, learning_rate, rho, epsilon, momentum=0.0, centered=False, weight_decay=0.0):
    """RMSProp (Hinton, lecture 6e 2012; centered: Graves 2013, Eq. 38-40) as Paddle runs it:
    r ← ρr + (1−ρ)g²;  [centered: ḡ ← ρḡ + (1−ρ)g, r̃ = r − ḡ²];  v ← μv + ηg/√(r̃ + ε);  θ ← θ − v.
    Differences from the lecture: ε is inside the square root, and η sits inside the momentum buffer."""
    g = g + weight_decay * θ
    _zeros(s, "r", "mg", "v", like=θ)
    s["r"] = rho * s["r"] + (1 - rho) * g * g
    denom = s["r"]
    if centered:
        s["mg"] = rho * s["mg"] + (1 - rho) * g
        denom = s["r"] - s["mg"] ** 2
    s["v"] = momentum * s["v"] + learning_rate * g / np.sqrt(denom + epsilon)
    return θ - s["v"]


def adam(θ, g, s, t, learning_rate, beta1, beta2, epsilon, weight_decay=0.0):
    """Adam (Kingma & Ba 2015, Algorithm 1): m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;
    θ ← θ − η·m̂/(√v̂ + ε) with m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ).  Paddle computes the equivalent
    η√(1−β₂ᵗ)/(1−β₁ᵗ)·m/(√v + ε√(1−β₂ᵗ)).  Coupled L2."""
    g = g + weight_decay * θ
    _zeros(s, "m", "v", like=θ)
    s["m"] = beta1 * s["m"] + (1 - beta1) * g
    s["v"] = beta2 * s["v"] + (1 - beta2) * g * g
    m_hat, v_hat = s["m"] / (1 - beta1 ** t), s["v"] / (1 - beta2 ** t)
    return θ - learning_rate * m_hat / (np.sqrt(v_hat) + epsilon)


def adadelta(θ, g, s, t, learning_rate, rho, epsilon, weight_decay=0.0):
    """Adadelta (Zeiler 2012, Algorithm 1): E[g²] ← ρE[g²] + (1−ρ)g²;
    Δθ = −√(E[Δθ²] + ε)/√(E[g²] + ε)·g;  E[Δθ²] ← ρE[Δθ²] + (1−ρ)Δθ²;  θ ← θ + ηΔθ.
    The paper has no η (η = 1); Paddle multiplies the step by η but accumulates Δθ² without it."""
    g = g + weight_decay * θ
    _zeros(s, "eg2", "edx2", like=θ)
    s["eg2"] = rho * s["eg2"] + (1 - rho) * g * g
    dx = -np.sqrt(s["edx2"] + epsilon) / np.sqrt(s["eg2"] + epsilon) * g
    s["edx2"] = rho * s["edx2"] + (1 - rho) * dx * dx
    return θ + learning_rate * dx


def adagrad(θ, g, s, t, learning_rate, epsilon, initial_accumulator_value=0.0, weight_decay=0.0):
    """Adagrad (Duchi et al. 2011, diagonal form, Sec. 1.1): G ← G + g²;  θ ← θ − ηg/(√G + ε).
    The paper has no ε; Paddle adds it outside the square root. G starts at initial_accumulator_value."""
    g = g + weight_decay * θ
    s.setdefault("G", np.full_like(θ, initial_accumulator_value))
    s["G"] = s["G"] + g * g
    return θ - learning_rate * g / (np.sqrt(s["G"]) + epsilon)


def adamax(θ, g, s, t, learning_rate, beta1, beta2, epsilon, weight_decay=0.0):
    """AdaMax (Kingma & Ba 2015, Algorithm 2): m ← β₁m + (1−β₁)g;  u ← max(β₂u, |g|);
    θ ← θ − η/(1−β₁ᵗ)·m/u.  Paddle adds ε inside the max: u ← max(β₂u + ε, |g|).  Coupled L2."""
    g = g + weight_decay * θ
    _zeros(s, "m", "u", like=θ)
    s["m"] = beta1 * s["m"] + (1 - beta1) * g
    s["u"] = np.maximum(beta2 * s["u"] + epsilon, np.abs(g))
    return θ - learning_rate / (1 - beta1 ** t) * s["m"] / s["u"]


def adamw(θ, g, s, t, learning_rate, beta1, beta2, epsilon, weight_decay=0.01):
    """AdamW (Loshchilov & Hutter 2019, Algorithm 2, with schedule multiplier η_t = η):
    θ ← θ − η·λθ − η·m̂/(√v̂ + ε), the decay decoupled from the gradient and from m, v.
    Paddle's `weight_decay` is λ (its `coeff`) and multiplies the current lr, like the paper's η_t·λ."""
    θ = θ * (1 - learning_rate * weight_decay)
    return adam(θ, g, s, t, learning_rate, beta1, beta2, epsilon)


def lamb(θ, g, s, t, learning_rate, beta1, beta2, epsilon, weight_decay=0.01):
    """LAMB (You et al. 2020, Algorithm 2, φ = identity): Adam's m̂, v̂;  r = m̂/(√v̂ + ε) + λθ;
    θ ← θ − η·(‖θ‖/‖r‖)·r, with the trust ratio ‖θ‖/‖r‖ taken as 1 when either norm is 0.
    The norm is over the whole parameter tensor (one 'layer' per tensor), as in Paddle. Paddle skips the
    trust ratio where λ = 0 unless always_adapt=True; the registry passes always_adapt=True (as the paper)."""
    _zeros(s, "m", "v", like=θ)
    s["m"] = beta1 * s["m"] + (1 - beta1) * g
    s["v"] = beta2 * s["v"] + (1 - beta2) * g * g
    m_hat, v_hat = s["m"] / (1 - beta1 ** t), s["v"] / (1 - beta2 ** t)
    r = m_hat / (np.sqrt(v_hat) + epsilon) + weight_decay * θ
    pn, rn = np.linalg.norm(θ), np.linalg.norm(r)
    trust = pn / rn if pn > 0 and rn > 0 else 1.0
    return θ - learning_rate * trust * r


def qhm(θ, g, s, t, learning_rate, beta, nu, weight_decay=0.0):
    """QHM (Ma & Yarats 2019, Sec. 3): g_buf ← βg_buf + (1−β)g;  θ ← θ − α[(1−ν)g + νg_buf].  Coupled L2."""
    g = g + weight_decay * θ
    _zeros(s, "buf", like=θ)
    s["buf"] = beta * s["buf"] + (1 - beta) * g
    return θ - learning_rate * ((1 - nu) * g + nu * s["buf"])


def qhadam(θ, g, s, t, learning_rate, beta1, beta2, nu1, nu2, epsilon, weight_decay=0.0):
    """QHAdam (Ma & Yarats 2019, Sec. 5, Algorithm 'QHAdam'): Adam's m̂, v̂;
    θ ← θ − α[(1−ν₁)g + ν₁m̂] / (√[(1−ν₂)g² + ν₂v̂] + ε).  Coupled L2."""
    g = g + weight_decay * θ
    _zeros(s, "m", "v", like=θ)
    s["m"] = beta1 * s["m"] + (1 - beta1) * g
    s["v"] = beta2 * s["v"] + (1 - beta2) * g * g
    m_hat, v_hat = s["m"] / (1 - beta1 ** t), s["v"] / (1 - beta2 ** t)
    return θ - learning_rate * ((1 - nu1) * g + nu1 * m_hat) / (np.sqrt((1 - nu2) * g * g + nu2 * v_hat) + epsilon)


def lion(θ, g, s, t, learning_rate, beta1, beta2, weight_decay=0.0):
    """Lion (Chen et al. 2023, Algorithm 2): c = β₁m + (1−β₁)g;  θ ← θ − η(sign(c) + λθ);
    m ← β₂m + (1−β₂)g.  Decoupled decay."""
    _zeros(s, "m", like=θ)
    c = beta1 * s["m"] + (1 - beta1) * g
    s["m"] = beta2 * s["m"] + (1 - beta2) * g
    return θ - learning_rate * (np.sign(c) + weight_decay * θ)


def adabelief(θ, g, s, t, learning_rate, beta1, beta2, epsilon, weight_decay=0.0):
    """AdaBelief (Zhuang et al. 2020, Algorithm 2): m ← β₁m + (1−β₁)g;  s ← β₂s + (1−β₂)(g − m)² + ε;
    θ ← θ − α·m̂/(√ŝ + ε) with bias-corrected m̂, ŝ.  Decoupled decay θ ← θ(1 − αλ) first (authors' code)."""
    θ = θ * (1 - learning_rate * weight_decay)
    _zeros(s, "m", "s", like=θ)
    s["m"] = beta1 * s["m"] + (1 - beta1) * g
    s["s"] = beta2 * s["s"] + (1 - beta2) * (g - s["m"]) ** 2 + epsilon
    m_hat, s_hat = s["m"] / (1 - beta1 ** t), s["s"] / (1 - beta2 ** t)
    return θ - learning_rate * m_hat / (np.sqrt(s_hat) + epsilon)


def lookahead(θ, g, s, t, inner, k, alpha, **inner_hp):
    """Lookahead (Zhang et al. 2019, Algorithm 1): k steps of the inner rule on the fast weights θ, then
    φ ← φ + α(θ − φ) and θ ← φ.  φ starts at θ before the first step; the inner state is kept."""
    s.setdefault("slow", θ.copy())
    θ = RULES[inner](θ, g, s.setdefault("inner", {}), t, **inner_hp)
    if t % k == 0:
        s["slow"] = s["slow"] + alpha * (θ - s["slow"])
        θ = s["slow"].copy()
    return θ


RULES = {"sgd": sgd, "momentum": momentum, "rmsprop": rmsprop, "adam": adam, "adadelta": adadelta,
         "adagrad": adagrad, "adamax": adamax, "adamw": adamw, "lamb": lamb, "qhm": qhm,
         "lookahead": lookahead, "qhadam": qhadam, "lion": lion, "adabelief": adabelief}
