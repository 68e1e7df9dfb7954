"""AdaBelief (Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed Gradients",
NeurIPS 2020, arXiv:2010.07468, Algorithm 2)."""
from __future__ import annotations

from train.optimizers import _check
from train.optimizers.base import FromScratch


class AdaBelief(FromScratch):
    r"""Adam whose second moment tracks the variance of g around its EMA (the "belief") instead of g².

        m_t = β₁·m_{t−1} + (1 − β₁)·g_t
        s_t = β₂·s_{t−1} + (1 − β₂)·(g_t − m_t)² + ε
        m̂_t = m_t / (1 − β₁ᵗ),   ŝ_t = s_t / (1 − β₂ᵗ)
        θ_t = θ_{t−1} − α·m̂_t / (√ŝ_t + ε)

    Arguments → symbols: learning_rate = α, beta1 = β₁, beta2 = β₂, epsilon = ε, weight_decay = λ,
    decoupled as in the authors' code (weight_decouple=True): θ ← θ·(1 − αλ) before the step.
    No defaults here: `create("adabelief", ...)` takes them from train.optimizers.DEFAULTS (with sources).

    Traps:
    - ε appears twice: added to s_t on every step (inside the square root) and again outside it. So
      ε = 1e-16 plays the part of Adam's 1e-8 (√1e-16 = 1e-8).
    - (g_t − m_t) uses the *updated* m_t.
    - The authors' code also has an optional RAdam-style rectification; it is not in Algorithm 2 and not here.

    Paddle machinery: `_update` is the rule, run by FromScratch.step() on all parameters as one flat
    vector; the decay is FromScratch's decoupled decay (DECOUPLED).
    """

    ACCUMULATORS = ("moment1", "belief")
    DECOUPLED = True

    def __init__(self, parameters, *, learning_rate: float, beta1: float, beta2: float, epsilon: float,
                 weight_decay: float, name: str | None = None):
        self.beta1 = _check.unit("beta1", beta1)
        self.beta2 = _check.unit("beta2", beta2)
        self.epsilon = _check.positive("epsilon", epsilon)
        super().__init__(parameters, learning_rate, weight_decay, name=name)

    def _update(self, g, m, s):
        α, β1, β2, ε, t = self._lr, self.beta1, self.beta2, self.epsilon, self._t
        m.scale_(β1).add_((1 - β1) * g)                         # m_t = β₁·m_{t−1} + (1 − β₁)·g_t
        d = g - m
        s.scale_(β2).add_((1 - β2) * d * d + ε)                 # s_t = β₂·s_{t−1} + (1 − β₂)·(g_t − m_t)² + ε
        m_hat = m * (1 / (1 - β1 ** t))                         # m̂_t
        s_hat = s * (1 / (1 - β2 ** t))                         # ŝ_t
        return α * m_hat * (s_hat.sqrt() + ε).reciprocal()      # × 1/x: Paddle's CPU divide is ~20× slower
