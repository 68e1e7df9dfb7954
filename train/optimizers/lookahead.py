"""Lookahead (Zhang, Lucas, Hinton & Ba, "Lookahead Optimizer: k steps forward, 1 step back",
NeurIPS 2019, arXiv:1907.08610, Algorithm 1)."""
from __future__ import annotations

import paddle

from train.optimizers import _check
from train.optimizers.base import Wrapper, coalesce, copy_into, flatten, keyed, unkeyed


class Lookahead(Wrapper):
    r"""Run any optimizer A for k steps (the fast weights θ), then move the slow weights φ a fraction α
    of the way towards θ and restart θ from φ:

        θ_{t,0} = φ_{t−1}
        θ_{t,i} = θ_{t,i−1} + A(L, θ_{t,i−1}),   i = 1..k
        φ_t     = φ_{t−1} + α·(θ_{t,k} − φ_{t−1})

    Arguments → symbols: inner = A (any optimizer from the registry), k = k (sync period),
    alpha = α (slow step size). No defaults here: `create("lookahead", ...)` takes them from
    train.optimizers.DEFAULTS (with sources).

    Traps:
    - The model holds the fast weights. Between syncs they are not the slow weights, so a checkpoint
      taken mid-cycle is θ, not φ (as in the paper, evaluation uses whatever the model holds).
    - φ_0 is a copy of the parameters at the first `step()`, not at construction, so weights loaded into
      the model after building the optimizer are honoured.
    - The inner optimizer's state (momentum, Adam moments) is kept across syncs, not reset.
    - State = inner optimizer state + slow weights + step count; `state_dict()` holds all three and
      `set_state_dict()` restores all three (Paddle's incubate LookAhead saves only the slow weights).
    - α = 1, k = 1 is the inner optimizer itself; α = 0 keeps the model at φ_0 forever.

    Paddle machinery: a Wrapper (base.py) that owns no update of its own: step() runs the inner
    optimizer's step() and, every k-th call, the sync above on all parameters as one flat vector (φ is one
    flat tensor with per-parameter views). get_lr/set_lr/clear_grad (and eval/train, where the inner
    optimizer has them: Schedule-Free) are the inner optimizer's.
    """

    def __init__(self, inner: paddle.optimizer.Optimizer, *, k: int, alpha: float):
        self.k = _check.count("k", k)
        self.alpha = _check.closed_unit("alpha", alpha)
        super().__init__(inner)
        self._slow = None  # φ: (per-parameter views, flat vector), created at the first step

    @paddle.no_grad()
    def step(self) -> None:
        if self._slow is None:
            self._slow = coalesce(self._params)               # φ_0 = θ_0 (a copy)
        self.inner.step()                                     # θ_{t,i} = θ_{t,i−1} + A(L, θ_{t,i−1})
        self._t += 1
        if self._t % self.k == 0:
            φ_views, φ = self._slow
            θ, α = flatten(self._params), self.alpha          # θ_{t,k} (a copy, scaled in place next)
            φ.scale_(1 - α).add_(θ.scale_(α))                 # φ_t = φ_{t−1} + α·(θ_{t,k} − φ_{t−1})
            copy_into(self._params, φ_views)                  # θ_{t+1,0} = φ_t

    def state_dict(self) -> dict:
        slow = {} if self._slow is None else {"slow": self._slow[0]}
        return self._pack(keyed(self, self._params, slow))

    def set_state_dict(self, state: dict) -> None:
        slow = unkeyed(self, self._params, self._unpack(state), ("slow",))
        self._slow = coalesce(slow["slow"]) if slow else None

    load_state_dict = set_state_dict
