"""Lookahead (Zhang, Lucas, Hinton & Ba, "Lookahead Optimizer: k steps forward, 1 step back",
NeurIPS 2019, arXiv:1907.08610, Algorithm 1)."""
from __future__ import annotations

import paddle

from train.optimizers import _check
from train.optimizers.base import FORMAT, check_layout, copy_into, move_towards


class Lookahead(paddle.optimizer.Optimizer):
    r"""Run any optimizer A for k steps (the fast weights θ), then move the slow weights φ a fraction α
    of the way towards θ and restart θ from φ:

        θ_{t,0} = φ_{t−1}
        θ_{t,i} = θ_{t,i−1} + A(L, θ_{t,i−1}),   i = 1..k
        φ_t     = φ_{t−1} + α·(θ_{t,k} − φ_{t−1})

    Arguments → symbols: inner = A (any optimizer from the registry), k = k (sync period),
    alpha = α (slow step size). Paper defaults: k = 5, α = 0.5.

    Traps:
    - The model holds the fast weights. Between syncs they are not the slow weights, so a checkpoint
      taken mid-cycle is θ, not φ (as in the paper, evaluation uses whatever the model holds).
    - φ_0 is a copy of the parameters at the first `step()`, not at construction, so weights loaded into
      the model after building the optimizer are honoured.
    - The inner optimizer's state (momentum, Adam moments) is kept across syncs, not reset.
    - State = inner optimizer state + slow weights + step count; `state_dict()` holds all three and
      `set_state_dict()` restores all three (Paddle's incubate LookAhead saves only the slow weights).
    - α = 1, k = 1 is the inner optimizer itself; α = 0 keeps the model at φ_0 forever.
    """

    def __init__(self, inner: paddle.optimizer.Optimizer, k: int = 5, alpha: float = 0.5):
        if not isinstance(inner, paddle.optimizer.Optimizer):
            raise ValueError(f"invalid inner: {inner!r} (must be a paddle.optimizer.Optimizer)")
        self.k = _check.count("k", k)
        self.alpha = _check.closed_unit("alpha", alpha)
        self.inner = inner
        super().__init__(learning_rate=float(inner.get_lr()), parameters=inner._parameter_list)
        self._fast = [p for p in self._parameter_list if not p.stop_gradient]
        self._slow = None  # φ, one tensor per trainable parameter, created at the first step
        self._scratch = None
        self._neg_alpha = paddle.full([], -self.alpha, self._fast[0].dtype)
        self._t = 0

    @paddle.no_grad()
    def step(self) -> None:
        if self._slow is None:
            self._slow = [p.detach().clone() for p in self._fast]     # φ_0 = θ_0
        self.inner.step()                                             # θ ← θ + A(L, θ)
        self._t += 1
        if self._t % self.k == 0:
            if self._scratch is None:
                self._scratch = [paddle.zeros_like(p) for p in self._fast]
            move_towards(self._slow, self._fast, self._neg_alpha, self._scratch)  # φ ← φ + α(θ − φ)
            copy_into(self._fast, self._slow)                                     # θ ← φ

    def clear_grad(self, set_to_zero: bool = True) -> None:
        self.inner.clear_grad(set_to_zero)

    def set_lr(self, value: float) -> None:
        self.inner.set_lr(value)

    def get_lr(self) -> float:
        return self.inner.get_lr()

    def state_dict(self) -> dict:
        params = self._parameter_list
        index = {id(p): i for i, p in enumerate(params)}
        slow = {} if self._slow is None else {f"{index[id(θ)]}:slow": φ for θ, φ in zip(self._fast, self._slow)}
        return {"format": FORMAT, "optimizer": type(self).__name__, "lr": float(self.get_lr()),
                "params": [[p.name, list(p.shape)] for p in params], "state": slow,
                "step": self._t, "inner": self.inner.state_dict()}

    def set_state_dict(self, state: dict) -> None:
        params = self._parameter_list
        check_layout(state, type(self).__name__, params)
        self.inner.set_state_dict(state["inner"])
        slow = state["state"]
        if slow:
            index = {id(p): i for i, p in enumerate(params)}
            keys = [f"{index[id(θ)]}:slow" for θ in self._fast]
            missing = [k for k in keys if k not in slow]
            if missing:
                raise ValueError(f"Lookahead state lacks slow weights {missing[:3]}")
            self._slow = [paddle.assign(slow[k]) for k in keys]
        else:
            self._slow = None
        self._t = int(state["step"])

    load_state_dict = set_state_dict
