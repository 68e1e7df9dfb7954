"""Lion: EvoLved Sign Momentum (Chen et al., "Symbolic Discovery of Optimization Algorithms",
NeurIPS 2023, arXiv:2302.06675, Algorithm 2)."""
from __future__ import annotations

from train.optimizers import _check
from train.optimizers.base import FromScratch


class Lion(FromScratch):
    r"""Sign of an interpolated momentum, with decoupled weight decay.

        c_t = β₁·m_{t−1} + (1 − β₁)·g_t
        θ_t = θ_{t−1} − η·(sign(c_t) + λ·θ_{t−1})
        m_t = β₂·m_{t−1} + (1 − β₂)·g_t

    Arguments → symbols: learning_rate = η, beta1 = β₁, beta2 = β₂, weight_decay = λ (decoupled, as in
    the paper: it is not added to the gradient). Defaults from the paper / its official code:
    β₁ = 0.9, β₂ = 0.99, λ = 0.

    Traps:
    - Every coordinate moves by exactly η per step (the sign has magnitude 1), so η must be 3–10× smaller
      than AdamW's, and λ 3–10× larger to keep the same effective decay η·λ.
    - Two different betas: β₁ mixes the update direction, β₂ (slower) tracks the momentum. The update
      uses c_t, computed *before* m is updated.
    """

    ACCUMULATORS = ("moment",)
    DECOUPLED = True  # θ ← θ·(1 − ηλ) before the step, done by FromScratch.step

    def __init__(self, parameters, learning_rate: float = 1e-4, beta1: float = 0.9, beta2: float = 0.99,
                 weight_decay: float = 0.0, name: str | None = None):
        self.beta1 = _check.unit("beta1", beta1)
        self.beta2 = _check.unit("beta2", beta2)
        super().__init__(learning_rate, parameters, weight_decay, name=name)

    def _update(self, g, m):
        η, β1, β2 = self._lr, self.beta1, self.beta2
        c = m * β1 + g * (1 - β1)                     # c_t (from m_{t−1})
        m.scale_(β2).add_(g * (1 - β2))               # m_t
        return c.sign() * η                           # θ −= η·sign(c_t)
