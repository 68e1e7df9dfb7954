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

    Traps:
    - ν₁ = ν₂ = 1 is exactly Adam (same ε placement: outside the square root).
    - The paper's recommended setting raises β₁ to 0.995 together with ν₁ = 0.7 (ν₂ = 1, β₂ = 0.999):
      the momentum part then averages over ~200 steps; the (1 − ν₁) current-gradient part keeps it responsive.
    - Bias correction uses the optimizer's step count t, which advances on every `step()` call.
    """

    ACCUMULATORS = ("moment1", "moment2")

    def __init__(self, parameters, learning_rate: float = 1e-3, beta1: float = 0.995, beta2: float = 0.999,
                 nu1: float = 0.7, nu2: float = 1.0, epsilon: float = 1e-8, weight_decay: float = 0.0,
                 name: str | None = None):
        self.beta1 = _check.unit("beta1", beta1)
        self.beta2 = _check.unit("beta2", beta2)
        self.nu1 = _check.closed_unit("nu1", nu1)
        self.nu2 = _check.closed_unit("nu2", nu2)
        self.epsilon = _check.positive("epsilon", epsilon)
        super().__init__(learning_rate, parameters, weight_decay, name=name)

    def _update(self, g, m, v):
        α, β1, β2, ν1, ν2, ε, t = self._lr, self.beta1, self.beta2, self.nu1, self.nu2, self.epsilon, self._t
        # In-place ops on few temporaries: every new full-size tensor costs an allocation (bench/).
        g2 = g * g
        m.scale_(β1).add_(g * (1 - β1))                               # m_t = β₁m + (1 − β₁)g
        v.scale_(β2).add_(g2 * (1 - β2))                              # v_t = β₂v + (1 − β₂)g²
        denom = v * (1 / (1 - β2 ** t))                               # v̂_t
        if ν2 != 1:
            denom.scale_(ν2).add_(g2.scale_(1 - ν2))                  # (1 − ν₂)g² + ν₂v̂
        denom.sqrt_().scale_(1.0, bias=ε).reciprocal_()               # 1 / (√· + ε)
        numer = (m * (α * ν1 / (1 - β1 ** t))).add_(g * (α * (1 - ν1)))  # α[(1 − ν₁)g + ν₁m̂]
        return numer.multiply_(denom)
