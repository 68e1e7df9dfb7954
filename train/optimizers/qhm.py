"""QHM: quasi-hyperbolic momentum (Ma & Yarats, "Quasi-hyperbolic momentum and Adam for deep learning",
ICLR 2019, arXiv:1810.06801, Sec. 3)."""
from __future__ import annotations

from train.optimizers import _check
from train.optimizers.base import FromScratch


class QHM(FromScratch):
    r"""Quasi-hyperbolic momentum: an average of a plain SGD step and a momentum step.

        g_{t+1} = β·g_t + (1 − β)·∇L(θ_t)
        θ_{t+1} = θ_t − α·[(1 − ν)·∇L(θ_t) + ν·g_{t+1}]

    Arguments → symbols: learning_rate = α, beta = β (momentum), nu = ν (immediate discount),
    weight_decay = λ, coupled L2 as in the paper's code: ∇L(θ) is replaced by ∇L(θ) + λθ.

    Traps:
    - The momentum buffer is *dampened* (the (1 − β) factor): it is an average of gradients, not a sum.
      To convert from plain momentum (Paddle's Momentum, lr η, momentum β) scale the learning rate by
      1/(1 − β): α = η/(1 − β).
    - ν = 1 is momentum with dampening, ν = β is Nesterov momentum (again with dampening), ν = 0 or
      β = 0 is plain SGD. The paper's rule of thumb is ν = 0.7, β = 0.999.
    - With β = 0.999 and no bias correction the buffer starts near zero and takes ~1/(1 − β) steps
      to fill, so early steps are mostly the (1 − ν)-weighted plain SGD step.
    """

    ACCUMULATORS = ("momentum_buffer",)

    def __init__(self, parameters, learning_rate: float = 1.0, beta: float = 0.999, nu: float = 0.7,
                 weight_decay: float = 0.0, name: str | None = None):
        self.beta = _check.unit("beta", beta)
        self.nu = _check.closed_unit("nu", nu)
        super().__init__(learning_rate, parameters, weight_decay, name)

    def _update(self, p, g, buf):
        α, β, ν = self._lr, self.beta, self.nu
        buf.scale_(β).add_(g * (1 - β))                # g_{t+1} = β g_t + (1 − β) ∇L
        p.subtract_(α * ((1 - ν) * g + ν * buf))        # θ −= α[(1 − ν) ∇L + ν g_{t+1}]
