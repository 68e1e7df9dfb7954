"""QHAdam: quasi-hyperbolic Adam (Ma & Yarats, "Quasi-hyperbolic momentum and Adam for deep learning",
ICLR 2019, arXiv:1810.06801, Sec. 5, Algorithm "QHAdam")."""
from __future__ import annotations

from train.optimizers import _check
from train.optimizers.base import FromScratch


class QHAdam(FromScratch):
    r"""Adam with both moment estimates replaced by quasi-hyperbolic averages with the current gradient.

        m_t = β₁·m_{t−1} + (1 − β₁)·g_t            m̂_t = m_t / (1 − β₁ᵗ)
        v_t = β₂·v_{t−1} + (1 − β₂)·g_t²           v̂_t = v_t / (1 − β₂ᵗ)
        θ_t = θ_{t−1} − α·[(1 − ν₁)·g_t + ν₁·m̂_t] / (√[(1 − ν₂)·g_t² + ν₂·v̂_t] + ε)

    Arguments → symbols: learning_rate = α, beta1 = β₁, beta2 = β₂, nu1 = ν₁, nu2 = ν₂, epsilon = ε,
    weight_decay = λ, coupled L2 (g_t = ∇L(θ) + λθ), as in the paper's code without its decoupled option.
    No defaults here: `create("qhadam", ...)` takes them from train.optimizers.DEFAULTS (with sources).

    Traps:
    - ν₁ = ν₂ = 1 is exactly Adam (same ε placement: outside the square root).
    - The paper's recommended setting raises β₁ together with ν₁ < 1: the momentum part then averages
      over ~1/(1 − β₁) steps; the (1 − ν₁) current-gradient part keeps it responsive.
    - Bias correction uses the optimizer's step count t, which advances on every `step()` call.

    Paddle machinery: `_update` is the rule, run by FromScratch.step() on all parameters as one flat vector.
    """

    ACCUMULATORS = ("moment1", "moment2")

    def __init__(self, parameters, *, learning_rate: float, beta1: float, beta2: float, nu1: float, nu2: float,
                 epsilon: float, weight_decay: float, name: str | None = None):
        self.beta1 = _check.unit("beta1", beta1)
        self.beta2 = _check.unit("beta2", beta2)
        self.nu1 = _check.closed_unit("nu1", nu1)
        self.nu2 = _check.closed_unit("nu2", nu2)
        self.epsilon = _check.positive("epsilon", epsilon)
        super().__init__(parameters, learning_rate, weight_decay, name=name)

    def _update(self, g, m, v):
        α, β1, β2, ν1, ν2, ε, t = self._lr, self.beta1, self.beta2, self.nu1, self.nu2, self.epsilon, self._t
        g2 = g * g                                              # g_t²
        m.scale_(β1).add_((1 - β1) * g)                         # m_t = β₁·m_{t−1} + (1 − β₁)·g_t
        v.scale_(β2).add_((1 - β2) * g2)                        # v_t = β₂·v_{t−1} + (1 − β₂)·g_t²
        m_hat = m * (1 / (1 - β1 ** t))                         # m̂_t
        v_hat = v * (1 / (1 - β2 ** t))                         # v̂_t
        # In place from here: every new full-size tensor costs an allocation (bench/bench_optimizers.py).
        numerator = m_hat.scale_(ν1).add_((1 - ν1) * g)                                # (1 − ν₁)·g_t + ν₁·m̂_t
        denominator = v_hat.scale_(ν2).add_((1 - ν2) * g2).sqrt_().scale_(bias=ε)      # √[(1 − ν₂)·g_t² + ν₂·v̂_t] + ε
        return numerator.multiply_(denominator.reciprocal_()).scale_(α)               # × 1/x: CPU divide is slow
