"""QHM: quasi-hyperbolic momentum (Ma & Yarats, "Quasi-hyperbolic momentum and Adam for deep learning",
ICLR 2019, arXiv:1810.06801, Sec. 3)."""
from __future__ import annotations

import paddle
from paddle import _C_ops

from train.optimizers import _check
from train.optimizers.base import FromScratch, scalar


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

    Implementation: the two equations are two calls of Paddle's multi-tensor momentum kernel over all
    parameters at once (v ← μv + ∇L; θ ← θ − lr·v). That kernel has no dampening (and its CPU version
    ignores `rescale_grad`), so the stored buffer is v_t = g_t/(1 − β) and the momentum step uses
    lr = αν(1 − β): θ −= αν(1 − β)·v_{t+1} = αν·g_{t+1}. The second call, with μ = 0 and lr = α(1 − ν), is
    the plain SGD part (the gradient tensors double as its velocity: v = 0·v + ∇L leaves them as they
    are). Two kernel launches per step is cheaper than Paddle's own Momentum, which launches one per
    parameter.
    """

    ACCUMULATORS = ("momentum_buffer",)  # v = g/(1 − β), see Implementation

    def __init__(self, parameters, learning_rate: float = 1.0, beta: float = 0.999, nu: float = 0.7,
                 weight_decay: float = 0.0, name: str | None = None):
        self.beta = _check.unit("beta", beta)
        self.nu = _check.closed_unit("nu", nu)
        super().__init__(learning_rate, parameters, weight_decay, name=name)

    @paddle.no_grad()
    def step(self) -> None:
        self._t += 1
        α, β, ν = float(self.get_lr()), self.beta, self.nu
        θ, grad = self._params, self._gradients()
        if self.decay:
            grad = [g + p * self.decay for p, g in zip(θ, grad)]             # coupled L2: ∇L + λθ
        n, none = len(θ), [""] * len(θ)
        # g_{t+1} = β·g_t + (1 − β)·∇L  (stored undampened: v = g/(1 − β)) ;  θ −= αν·g_{t+1}
        _C_ops.merged_momentum_(θ, grad, self._views("momentum_buffer"), [scalar(α * ν * (1 - β), θ[0])], None,
                                β, False, none, [0.0] * n, False, 1.0)
        # θ −= α(1 − ν)·∇L
        _C_ops.merged_momentum_(θ, grad, grad, [scalar(α * (1 - ν), θ[0])], None,
                                0.0, False, none, [0.0] * n, False, 1.0)
