"""Plumbing shared by every registry optimizer: portable state dicts and the from-scratch base class.

Portable state. Paddle's own `Optimizer.state_dict()` keys each tensor by a generated name such as
`conv2d_0.w_0_moment1_0`; the trailing counter depends on how many optimizers the process built before,
so a state saved by one process may not load in another, and never loads into a model whose parameter
names differ. `PortableState.state_dict()` instead keys every tensor by the parameter's *position* in the
optimizer's parameter list and the accumulator's kind (`"5:moment1"`), and records each parameter's name
and shape. `set_state_dict` maps by position, so a model rebuilt with different parameter names loads fine
as long as it has the same parameters in the same order with the same shapes; anything else raises
ValueError naming the first mismatch. Paddle-native optimizer states (no "format" key) are refused.
"""
from __future__ import annotations

import paddle
from paddle.base import framework

from train.optimizers import _check

FORMAT = "train.optimizers/1"


class PortableState:
    """Mixin for a paddle.optimizer.Optimizer subclass: position-keyed state_dict / set_state_dict.

    Subclasses with state beyond the per-parameter accumulators (a step count, ...) extend
    `_extra_state()` / `_load_extra_state()`.
    """

    def state_dict(self) -> dict:
        """{"format", "optimizer", "lr", "params": [[name, shape]...], "state": {"<i>:<kind>": Tensor}, ...extra}.

        Tensors are the live accumulators (as in Paddle): paddle.save them or clone before stepping on."""
        params = self._parameter_list
        index = {p.name: i for i, p in enumerate(params)}
        state = {f"{index[pname]}:{kind}": t
                 for kind, per_param in self._accumulators.items() for pname, t in per_param.items()}
        return {"format": FORMAT, "optimizer": type(self).__name__, "lr": float(self.get_lr()),
                "params": [[p.name, list(p.shape)] for p in params], "state": state, **self._extra_state()}

    def set_state_dict(self, state: dict) -> None:
        params = self._parameter_list
        check_layout(state, type(self).__name__, params)
        # Accumulators are created lazily at the first step; create them now so they can be filled.
        block = framework.default_main_program().global_block()
        self._create_accumulators(block, [p for p in params if not p.stop_gradient])
        for key, value in state["state"].items():
            i, kind = key.split(":", 1)
            p = params[int(i)]
            acc = self._accumulators.get(kind, {}).get(p.name)
            if acc is None:
                raise ValueError(f"optimizer state has {kind!r} for parameter {i} ({p.name}), "
                                 f"which {type(self).__name__} does not keep")
            if list(acc.shape) != list(value.shape):
                raise ValueError(f"optimizer state {key!r} has shape {list(value.shape)}, expected {list(acc.shape)}")
            acc.set_value(value)
        self.set_lr(float(state["lr"]))
        self._load_extra_state(state)

    load_state_dict = set_state_dict

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass


def check_layout(state, optimizer: str, params) -> None:
    """Raise ValueError unless `state` is a portable state for `optimizer` over parameters shaped like `params`."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        keys = list(state)[:3] if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"not an optimizer state written by train.optimizers (expected format {FORMAT!r}, got {keys}); "
                         "Paddle-native optimizer states are keyed by generated names and are not supported")
    if state.get("optimizer") != optimizer:
        raise ValueError(f"optimizer state is for {state.get('optimizer')!r}, not {optimizer!r}")
    saved = state["params"]
    if len(saved) != len(params):
        raise ValueError(f"optimizer state covers {len(saved)} parameters, this model has {len(params)}")
    for i, ((name, shape), p) in enumerate(zip(saved, params)):
        if list(shape) != list(p.shape):
            raise ValueError(f"parameter {i}: optimizer state saved for {name} with shape {list(shape)}, "
                             f"but this model's {p.name} has shape {list(p.shape)}")


class FromScratch(PortableState, paddle.optimizer.Optimizer):
    """Base of the optimizers written here. A subclass lists its per-parameter state tensors in
    ACCUMULATORS (all start at zero) and writes the update rule in `_update(p, g, *accumulators)`,
    reading the learning rate from `self._lr` and the step number t (1, 2, ...) from `self._t`.

    Coupled weight decay (L2, added to the gradient by Paddle before `_update`) is `weight_decay=`
    of paddle.optimizer.Optimizer; decoupled decay is up to the subclass.
    """

    ACCUMULATORS: tuple[str, ...] = ()

    def __init__(self, learning_rate: float, parameters, weight_decay: float | None = None, name: str | None = None):
        if parameters is None:
            raise ValueError("parameters: pass the model's parameters (model.parameters())")
        wd = _check.nonnegative("weight_decay", weight_decay or 0.0)
        super().__init__(learning_rate=_check.positive("learning_rate", learning_rate),
                         parameters=list(parameters), weight_decay=wd or None, name=name)
        self._multi_precision = False  # needed by paddle's _get_accumulator_master
        self._t = 0

    @paddle.no_grad()
    def step(self) -> None:
        self._t += 1
        self._lr = float(self.get_lr())
        super().step()

    def _create_accumulators(self, block, parameters):
        for p in parameters:
            if p.name not in self._already_create_accumulator:
                for acc in self.ACCUMULATORS:
                    self._add_accumulator(acc, p)
                self._already_create_accumulator.add(p.name)

    def _append_optimize_op(self, block, param_and_grad):
        p, g = param_and_grad
        self._update(p, g, *(self._accumulators[acc][p.name] for acc in self.ACCUMULATORS))

    def _update(self, p, g, *state):
        raise NotImplementedError

    def _extra_state(self) -> dict:
        return {"step": self._t}

    def _load_extra_state(self, state: dict) -> None:
        self._t = int(state["step"])
