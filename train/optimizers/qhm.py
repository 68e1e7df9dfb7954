"""QHM: quasi-hyperbolic momentum (Ma & Yarats, "Quasi-hyperbolic momentum and Adam for deep learning",
ICLR 2019, arXiv:1810.06801, Sec. 3)."""
from __future__ import annotations

from train.optimizers import _check
from train.optimizers.base import FromScratch, momentum_kernel


class QHM(FromScratch):
    r"""Quasi-hyperbolic momentum: an average of a plain SGD step and a momentum step.

        g_{t+1} = β·g_t + (1 − β)·∇L(θ_t)
        θ_{t+1} = θ_t − α·[(1 − ν)·∇L(θ_t) + ν·g_{t+1}]

    Arguments → symbols: learning_rate = α, beta = β (momentum), nu = ν (immediate discount),
    weight_decay = λ, coupled L2 as in the paper's code: ∇L(θ) is replaced by ∇L(θ) + λθ.
    No defaults here: `create("qhm", ...)` takes them from train.optimizers.DEFAULTS (with sources).

    Traps:
    - The momentum buffer g is *dampened* (the (1 − β) factor): an average of gradients, not a sum.
      To convert from plain momentum (Paddle's Momentum, lr η, momentum β) scale the learning rate by
      1/(1 − β): α = η/(1 − β).
    - ν = 1 is momentum with dampening, ν = β is Nesterov momentum (again with dampening), ν = 0 or
      β = 0 is plain SGD.
    - With β near 1 and no bias correction the buffer starts near zero and takes ~1/(1 − β) steps to
      fill, so early steps are mostly the (1 − ν)-weighted plain SGD step.

    Paddle machinery: `_update` is the rule, run by FromScratch.step() on all parameters as one flat
    vector, when built with fused=False. By default (fused=True) step() runs `_fused_apply` instead: the
    same rule as two calls of Paddle's multi-tensor momentum kernel (`merged_momentum_`), about twice as
    fast as Paddle's own Momentum (bench/bench_optimizers.py); tests/test_optimizers_equivalence.py proves
    the two paths equal, weight decay and state round trips included. That kernel has no dampening (and
    ignores `rescale_grad` on CPU), so the fast path keeps v = g/(1 − β), and so does the saved state
    ("momentum_buffer"); the rule path keeps g and converts when saving and loading (so `fused` is chosen
    at construction, not switched mid-run).
    """

    ACCUMULATORS = ("momentum_buffer",)  # fused: v = g/(1 − β); rule: g (saved as g/(1 − β) either way)

    def __init__(self, parameters, *, learning_rate: float, beta: float, nu: float, weight_decay: float,
                 fused: bool = True, name: str | None = None):
        self.beta = _check.unit("beta", beta)
        self.nu = _check.closed_unit("nu", nu)
        self.fused = _check.boolean("fused", fused)
        super().__init__(parameters, learning_rate, weight_decay, name=name)

    def _update(self, grad, g):
        α, β, ν = self._lr, self.beta, self.nu
        g.scale_(β).add_((1 - β) * grad)              # g_{t+1} = β·g_t + (1 − β)·∇L(θ_t)
        return α * ((1 - ν) * grad + ν * g)           # θ_{t+1} = θ_t − α·[(1 − ν)·∇L(θ_t) + ν·g_{t+1}]

    def _apply(self, grads: list) -> None:
        (self._fused_apply if self.fused else super()._apply)(grads)

    def _fused_apply(self, grads: list) -> None:
        """The fast path: `_update`'s two lines as two multi-tensor momentum kernel calls (v ← μv + ∇L;
        θ ← θ − lr·v), on the per-parameter gradients as they are (no flattening)."""
        α, β, ν = self._lr, self.beta, self.nu
        θ, v = self._params, self._states()["momentum_buffer"][0]
        if self.decay:
            grads = [g + self.decay * p for p, g in zip(θ, grads)]            # coupled L2: ∇L + λθ
        momentum_kernel(θ, grads, v, lr=α * ν * (1 - β), mu=β)                # v ← βv + ∇L;  θ −= αν·(1 − β)v = αν·g
        momentum_kernel(θ, grads, None, lr=α * (1 - ν), mu=0.0)               # θ −= α(1 − ν)·∇L

    def state_dict(self) -> dict:
        state = super().state_dict()
        if not self.fused:  # saved as the fast path's v = g/(1 − β)
            state["state"] = {k: t * (1 / (1 - self.beta)) for k, t in state["state"].items()}
        return state

    def set_state_dict(self, state: dict) -> None:
        super().set_state_dict(state)
        if not self.fused and self._state is not None:
            self._state["momentum_buffer"][1].scale_(1 - self.beta)           # g = (1 − β)·v
