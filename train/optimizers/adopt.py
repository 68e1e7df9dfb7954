"""ADOPT (Taniguchi, Harada, Minegishi, Oshima, Jeong, Nagahara, Iiyama, Suzuki, Iwasawa & Matsuo, "ADOPT:
Modified Adam Can Converge with Any β₂ with the Optimal Rate", NeurIPS 2024, arXiv:2411.02853,
Algorithm 2 (with clipping); code iShohei220/adopt, src/adopt/adopt.py, whose defaults are used)."""
from __future__ import annotations

import paddle

from train.optimizers import _check
from train.optimizers.base import FromScratch


class ADOPT(FromScratch):
    r"""Adam with the gradient normalised by the *previous* second moment, before the momentum.

        t = 1:  v_1 = g_1²                          (no parameter update)
        t ≥ 2:  m_t = β₁·m_{t−1} + (1 − β₁)·clip(g_t / max(√v_{t−1}, ε), (t − 1)^¼)
                θ_t = θ_{t−1} − α·m_t
                v_t = β₂·v_{t−1} + (1 − β₂)·g_t²

    clip(u, c) limits each coordinate to [−c, c]. Arguments → symbols: learning_rate = α, beta1 = β₁,
    beta2 = β₂, epsilon = ε, weight_decay = λ (coupled L2: g_t = ∇L + λθ, the code's default decouple=False).

    Traps:
    - The first step only initialises v: the parameters move from the second step on.
    - v_{t−1} (not v_t) normalises g_t, so the current gradient is not in its own denominator: that is
      what removes Adam's dependence on β₂ for convergence (and why β₂ = 0.9999 is the default).
    - ε is a floor on √v (max), not added to it; 1e-6, larger than Adam's 1e-8.
    - No bias correction: m starts at 0 and v at g_1².
    - The clip (t − 1)^¼ is the code's default (the paper's later versions add it for stability early on).

    Paddle machinery: `_update` is the rule, run by FromScratch.step() on all parameters as one flat vector.
    """

    ACCUMULATORS = ("moment1", "moment2")

    def __init__(self, parameters, *, learning_rate: float, beta1: float, beta2: float, epsilon: float,
                 weight_decay: float, name: str | None = None):
        self.beta1 = _check.unit("beta1", beta1)
        self.beta2 = _check.unit("beta2", beta2)
        self.epsilon = _check.positive("epsilon", epsilon)
        super().__init__(parameters, learning_rate, weight_decay, name=name)

    def _update(self, g, m, v):
        α, β1, β2, ε, t = self._lr, self.beta1, self.beta2, self.epsilon, self._t
        g2 = g * g
        if t == 1:
            v.add_(g2)                                                  # v_1 = g_1²
            return paddle.zeros_like(g)                                 # no update at the first step
        c = (t - 1) ** 0.25
        u = g.multiply_(v.sqrt().clip_(min=ε).reciprocal_()).clip_(-c, c)   # clip(g_t / max(√v_{t−1}, ε), c)
        m.scale_(β1).add_((1 - β1) * u)                                 # m_t
        v.scale_(β2).add_((1 - β2) * g2)                                # v_t
        return α * m                                                    # θ_t = θ_{t−1} − α·m_t
