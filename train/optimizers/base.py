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
from paddle import _C_ops
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


class FromScratch(paddle.optimizer.Optimizer):
    """Base of the element-wise optimizers written here (qhm, qhadam, lion, adabelief).

    A subclass lists its state vectors in ACCUMULATORS (all start at zero) and writes the update rule
    once, in `_update(g, *state) -> Δ`, on flat vectors: g is every trainable parameter's gradient
    concatenated, each state is a flat vector of the same length, updated in place, and Δ is the step
    that `step()` subtracts from the parameters (θ ← θ − Δ). The learning rate is `self._lr`, the step
    number t (1, 2, ...) is `self._t`. Working on one flat vector instead of looping over parameters in
    Python keeps a step to a few dozen Paddle ops whatever the number of parameter tensors
    (bench/bench_optimizers.py).

    Weight decay: `weight_decay` is coupled L2 (g ← g + λθ before the rule) unless the subclass sets
    DECOUPLED = True, in which case θ ← θ·(1 − lr·λ) before the step, outside the rule (AdamW-style).

    `step()` does its own loop instead of paddle.optimizer.Optimizer's program machinery: gradients are
    clipped with `grad_clip` if given; a trainable parameter without a gradient at this step counts as
    gradient 0 (its state still decays, unlike Paddle's built-ins, which skip it). State dicts are
    keyed by parameter position (see PortableState) and hold per-parameter slices of the flat state.
    """

    ACCUMULATORS: tuple[str, ...] = ()
    DECOUPLED = False

    def __init__(self, learning_rate: float, parameters, weight_decay: float = 0.0, grad_clip=None,
                 name: str | None = None):
        if parameters is None:
            raise ValueError("parameters: pass the model's parameters (model.parameters())")
        self.decay = _check.nonnegative("weight_decay", weight_decay or 0.0)
        super().__init__(learning_rate=_check.positive("learning_rate", learning_rate),
                         parameters=list(parameters), grad_clip=grad_clip, name=name)
        self._multi_precision = False
        self._params = [p for p in self._parameter_list if not p.stop_gradient]
        if len({p.dtype for p in self._params}) > 1:
            raise ValueError(f"{type(self).__name__} needs all trainable parameters in one dtype "
                             f"(got {sorted({str(p.dtype) for p in self._params})})")
        self._shapes = [list(p.shape) for p in self._params]
        self._sizes = [int(p.numel()) for p in self._params]
        self._flat: dict[str, paddle.Tensor] | None = None  # created at the first step
        self._t = 0

    def _state(self) -> dict[str, paddle.Tensor]:
        if self._flat is None:
            dtype = self._params[0].dtype
            self._flat = {acc: paddle.zeros([sum(self._sizes)], dtype) for acc in self.ACCUMULATORS}
        return self._flat

    def _gradients(self) -> list:
        """Each trainable parameter's gradient (zeros where it has none), clipped if grad_clip is set."""
        pairs = [(p, p._grad_ivar()) for p in self._params]
        pairs = [(p, g if g is not None else paddle.zeros_like(p)) for p, g in pairs]
        if self._grad_clip is not None:
            pairs = self._grad_clip(pairs)
        return [g for _, g in pairs]

    def _views(self, acc: str) -> list:
        """Per-parameter 1-D views (shared memory) into the flat state vector `acc`."""
        flat = self._state()[acc]
        key = (acc, id(flat))
        if getattr(self, "_view_key", {}).get(acc) != key:
            offsets = [0]
            for n in self._sizes:
                offsets.append(offsets[-1] + n)
            self._view_cache = {**getattr(self, "_view_cache", {}),
                                acc: [flat._slice(a, b) for a, b in zip(offsets[:-1], offsets[1:])]}
            self._view_key = {**getattr(self, "_view_key", {}), acc: key}
        return self._view_cache[acc]

    @paddle.no_grad()
    def step(self) -> None:
        self._t += 1
        self._lr = float(self.get_lr())
        g = flatten(self._gradients())
        if self.decay and not self.DECOUPLED:
            g = g + flatten(self._params) * self.decay                           # coupled L2: g + λθ
        delta = self._update(g, *(self._state()[acc] for acc in self.ACCUMULATORS))
        decay = self._lr * self.decay if self.DECOUPLED else 0.0
        subtract_pieces(self._params, paddle.split(delta, self._sizes), decay)   # θ ← θ(1 − lr·λ) − Δ

    def _update(self, g, *state):
        raise NotImplementedError(f"{type(self).__name__} must define _update(g, *state)")

    def clear_grad(self, set_to_zero: bool = True) -> None:
        for p in self._params:
            p.clear_gradient(set_to_zero)

    def state_dict(self) -> dict:
        params = self._parameter_list
        index = {id(p): i for i, p in enumerate(params)}
        state = {}
        if self._flat is not None:
            for acc, flat in self._flat.items():
                for p, piece, shape in zip(self._params, paddle.split(flat, self._sizes), self._shapes):
                    state[f"{index[id(p)]}:{acc}"] = piece.reshape(shape)
        return {"format": FORMAT, "optimizer": type(self).__name__, "lr": float(self.get_lr()),
                "params": [[p.name, list(p.shape)] for p in params], "state": state, "step": self._t}

    def set_state_dict(self, state: dict) -> None:
        params = self._parameter_list
        check_layout(state, type(self).__name__, params)
        index = {id(p): i for i, p in enumerate(params)}
        saved = state["state"]
        unknown = sorted({k.split(":", 1)[1] for k in saved} - set(self.ACCUMULATORS))
        if unknown:
            raise ValueError(f"optimizer state has {unknown}, which {type(self).__name__} does not keep")
        if saved:
            flat = self._state()
            for acc in self.ACCUMULATORS:
                keys = [f"{index[id(p)]}:{acc}" for p in self._params]
                missing = [k for k in keys if k not in saved]
                if missing:
                    raise ValueError(f"optimizer state lacks {missing[:3]}")
                flat[acc].set_value(paddle.concat([paddle.assign(saved[k]).reshape([-1]) for k in keys]))
        else:
            self._flat = None
        self.set_lr(float(state["lr"]))
        self._t = int(state["step"])

    load_state_dict = set_state_dict


_ONE: dict = {}


def scalar(value: float, like) -> paddle.Tensor:
    """A 0-d tensor holding `value`, in the dtype of `like` (cached: kernels want learning rates as tensors)."""
    key = (float(value), like.dtype, str(like.place))
    if key not in _ONE:
        if len(_ONE) > 64:
            _ONE.clear()
        _ONE[key] = paddle.full([], float(value), like.dtype)
    return _ONE[key]


def flatten(tensors) -> paddle.Tensor:
    """One contiguous 1-D copy of `tensors` (same dtype), in order: Paddle's coalesce_tensor kernel,
    one op instead of a reshape per tensor plus a concat."""
    return _C_ops.coalesce_tensor(list(tensors), tensors[0].dtype, True, False, False, 0.0, False, 0, -1, [], [])[1]


def subtract_pieces(params, pieces, decay: float = 0.0) -> None:
    """θ_i ← θ_i·(1 − decay) − Δ_i for every parameter θ_i and its flat piece Δ_i, in one fused kernel.

    Paddle's multi-tensor momentum kernel with momentum 0 and learning rate 1 computes
    v_i = Δ_i + decay·θ_i and θ_i −= v_i; the pieces double as its (scratch) velocity buffers, so this
    costs one op where a Python loop would cost three per parameter (reshape, scale, subtract)."""
    method = "l2_decay" if decay else ""
    _C_ops.merged_momentum_(params, pieces, list(pieces), [scalar(1.0, params[0])], None, 0.0, False,
                            [method] * len(params), [float(decay)] * len(params), False, 1.0)


def move_towards(slow, fast, alpha: paddle.Tensor, scratch) -> None:
    """φ_i ← φ_i + α·(θ_i − φ_i) for every slow/fast pair, in one fused kernel.

    The multi-tensor momentum kernel with momentum 0 and an L2 term of coefficient −1 computes
    v_i = θ_i − φ_i and φ_i −= lr·v_i; with lr = −α (a 0-d tensor) that is the Lookahead slow step.
    `scratch` receives v (one buffer per parameter)."""
    n = len(slow)
    _C_ops.merged_momentum_(slow, fast, scratch, [alpha], None, 0.0, False, ["l2_decay"] * n, [-1.0] * n, False, 1.0)


def copy_into(dst, src) -> None:
    """dst_i ← src_i (values only) for every pair."""
    for d, s in zip(dst, src):
        _C_ops.assign_out_(s, d)
