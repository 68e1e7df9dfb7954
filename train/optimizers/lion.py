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
    the paper: it is not added to the gradient). No defaults here: `create("lion", ...)` takes them from
    train.optimizers.DEFAULTS (with sources).

    Traps:
    - Every coordinate moves by exactly η per step (the sign has magnitude 1), so η must be 3–10× smaller
      than AdamW's, and λ 3–10× larger to keep the same effective decay η·λ.
    - Two different betas: β₁ mixes the update direction, β₂ (slower) tracks the momentum. The update
      uses c_t, computed *before* m is updated.

    Paddle machinery: `_update` is the rule, run by FromScratch.step() on all parameters as one flat
    vector; the −η·λ·θ term is FromScratch's decoupled decay (DECOUPLED).
    """

    ACCUMULATORS = ("moment",)
    DECOUPLED = True

    def __init__(self, parameters, *, learning_rate: float, beta1: float, beta2: float, weight_decay: float,
                 name: str | None = None):
        self.beta1 = _check.unit("beta1", beta1)
        self.beta2 = _check.unit("beta2", beta2)
        super().__init__(parameters, learning_rate, weight_decay, name=name)

    def _update(self, g, m):
        η, β1, β2 = self._lr, self.beta1, self.beta2
        c = β1 * m + (1 - β1) * g                     # c_t = β₁·m_{t−1} + (1 − β₁)·g_t
        m.scale_(β2).add_((1 - β2) * g)               # m_t = β₂·m_{t−1} + (1 − β₂)·g_t
        return η * c.sign()                           # θ_t = θ_{t−1} − η·sign(c_t)
