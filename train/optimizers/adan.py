"""Adan: adaptive Nesterov momentum (Xie, Zhou, Li, Lin & Yan, "Adan: Adaptive Nesterov Momentum Algorithm
for Faster Optimizing Deep Models", TPAMI 2024, arXiv:2208.06677, Algorithm 1; code sail-sg/Adan, adan.py,
whose β convention and bias corrections are used here)."""
from __future__ import annotations

import math

from train.optimizers import _check
from train.optimizers.base import FromScratch, copy_into


class Adan(FromScratch):
    r"""Adam-like, with a second momentum on the gradient difference (Nesterov's look-ahead without the
    extra gradient evaluation) and a proximal (decoupled) weight decay.

        m_t = β₁·m_{t−1} + (1 − β₁)·g_t
        v_t = β₂·v_{t−1} + (1 − β₂)·(g_t − g_{t−1})
        n_t = β₃·n_{t−1} + (1 − β₃)·[g_t + β₂·(g_t − g_{t−1})]²
        η_t = η / (√(n_t/(1 − β₃ᵗ)) + ε)
        θ_t = (θ_{t−1} − η_t·[m_t/(1 − β₁ᵗ) + β₂·v_t/(1 − β₂ᵗ)]) / (1 + η·λ)

    with g_0 = g_1 (the first difference is 0). Arguments → symbols: learning_rate = η, beta1 = β₁,
    beta2 = β₂, beta3 = β₃, epsilon = ε, weight_decay = λ (proximal: the division by 1 + ηλ).

    Traps:
    - The paper writes its betas as weights of the *new* term (β₁ = 0.02, β₂ = 0.08, β₃ = 0.01); the code
      and this class use 1 minus those (0.98, 0.92, 0.99), like Adam's. Same rule.
    - The paper's Algorithm 1 has no bias correction; the authors' code (and this class) divide each
      moment by 1 − βᵗ, which only matters in the first ~1/(1 − β) steps.
    - The decay is proximal, θ ← θ/(1 + ηλ) after the step (the code's default, no_prox=False), not
      AdamW's θ·(1 − ηλ) before it; the two agree to first order in ηλ.
    - Adan keeps four buffers (m, v, n and the previous gradient): twice Adam's memory.

    Paddle machinery: `_update` is the rule, run by FromScratch.step() on all parameters as one flat
    vector; the proximal decay is FromScratch's decoupled decay with κ = ηλ/(1 + ηλ) (`decay_fraction`) and
    the step divided by 1 + ηλ.
    """

    ACCUMULATORS = ("moment1", "moment_diff", "moment2", "previous_grad")
    DECOUPLED = True

    def __init__(self, parameters, *, learning_rate: float, beta1: float, beta2: float, beta3: float,
                 epsilon: float, weight_decay: float, name: str | None = None):
        self.beta1 = _check.unit("beta1", beta1)
        self.beta2 = _check.unit("beta2", beta2)
        self.beta3 = _check.unit("beta3", beta3)
        self.epsilon = _check.positive("epsilon", epsilon)
        super().__init__(parameters, learning_rate, weight_decay, name=name)

    def _update(self, g, m, v, n, g_prev):
        η, β1, β2, β3, ε, λ, t = self._lr, self.beta1, self.beta2, self.beta3, self.epsilon, self.decay, self._t
        if t == 1:
            copy_into([g_prev], [g])                                    # g_0 = g_1
        diff = g - g_prev                                               # g_t − g_{t−1}
        m.scale_(β1).add_((1 - β1) * g)                                 # m_t
        v.scale_(β2).add_((1 - β2) * diff)                              # v_t
        u = diff.scale_(β2).add_(g)                                     # g_t + β₂·(g_t − g_{t−1})
        n.scale_(β3).add_((1 - β3) * u * u)                             # n_t
        copy_into([g_prev], [g])
        denominator = n.sqrt().scale_(1 / math.sqrt(1 - β3 ** t), bias=ε)   # √(n_t/(1 − β₃ᵗ)) + ε
        prox = η / (1 + η * λ)                                          # η, ÷ (1 + ηλ): the proximal decay
        step = (m * (prox / (1 - β1 ** t))).add_(v * (prox * β2 / (1 - β2 ** t)))
        return step.multiply_(denominator.reciprocal_())                # η_t·[m̂_t + β₂·v̂_t] / (1 + ηλ)

    def decay_fraction(self) -> float:
        ηλ = self._lr * self.decay
        return ηλ / (1 + ηλ)                                            # θ/(1 + ηλ) = θ·(1 − κ)
