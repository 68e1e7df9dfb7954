"""Plumbing shared by the registry's optimizers: the state format, the from-scratch and wrapper base classes,
and the few Paddle kernels the update rules are written with.

The state format (one home; docs/optimizers.md points here). Paddle's own `Optimizer.state_dict()` keys
each tensor by a generated name such as `conv2d_0.w_0_moment1_0`; the trailing counter depends on how
many optimizers the process built before, so a state saved by one process may not load in another, and
never loads into a model whose parameter names differ. Every registry optimizer's `state_dict()` is
instead (`pack`):

    {"format": FORMAT, "optimizer": class name, "lr": current learning rate,
     "params": [[name, shape], ...] for every parameter, in the optimizer's order,
     "state": {"<position>:<kind>": Tensor}, e.g. "5:moment1" (position in "params"),
     ...extra: "step" (from-scratch optimizers, wrappers), scalars of the rule (FromScratch.SCALARS, e.g.
     Prodigy's "d"), "inner" (a wrapper's inner optimizer's state), "fallback" (Muon's AdamW's state)}

`set_state_dict` maps by position, so a model rebuilt with different parameter names loads fine as long
as it has the same parameters in the same order with the same shapes; anything else raises ValueError
naming the first mismatch (`check_layout`). Paddle-native optimizer states (no "format") are refused.
The tensors are the live accumulators (as in Paddle): paddle.save them, or clone them before stepping on.
"""
from __future__ import annotations

import paddle
from paddle import _C_ops
from paddle.base import framework

from train.optimizers import _check

FORMAT = "train.optimizers/1"


def pack(opt: paddle.optimizer.Optimizer, state: dict, **extra) -> dict:
    """`opt`'s state dict in the format above, with `state` as its "state" entry."""
    return {"format": FORMAT, "optimizer": type(opt).__name__, "lr": float(opt.get_lr()),
            "params": [[p.name, list(p.shape)] for p in opt._parameter_list], "state": state, **extra}


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


def keyed(opt, trainable, per_kind: dict[str, list]) -> dict:
    """{"<position>:<kind>": tensor} from {kind: [one tensor per trainable parameter]}."""
    index = {id(p): i for i, p in enumerate(opt._parameter_list)}
    return {f"{index[id(p)]}:{kind}": t for kind, tensors in per_kind.items() for p, t in zip(trainable, tensors)}


def unkeyed(opt, trainable, saved: dict, kinds: tuple[str, ...]) -> dict[str, list]:
    """The inverse of `keyed` for element-wise state ({} for an empty state); ValueError for a kind `opt`
    does not keep, a missing parameter, or a tensor whose shape is not its parameter's."""
    unknown = sorted({k.split(":", 1)[1] for k in saved} - set(kinds))
    if unknown:
        raise ValueError(f"optimizer state has {unknown}, which {type(opt).__name__} does not keep")
    if not saved:
        return {}
    index = {id(p): i for i, p in enumerate(opt._parameter_list)}
    out = {}
    for kind in kinds:
        keys = [f"{index[id(p)]}:{kind}" for p in trainable]
        missing = [k for k in keys if k not in saved]
        if missing:
            raise ValueError(f"{type(opt).__name__} state lacks {missing[:3]}")
        for k, p in zip(keys, trainable):
            if list(saved[k].shape) != list(p.shape):
                raise ValueError(f"optimizer state {k!r} has shape {list(saved[k].shape)}, expected {list(p.shape)}")
        out[kind] = [saved[k] for k in keys]
    return out


class PortableState:
    """Mixin for a Paddle built-in optimizer class: position-keyed state_dict / set_state_dict (format above).
    The accumulators are Paddle's own (`_accumulators`, created lazily at the first step)."""

    def decay_fraction(self) -> float:
        """κ: the share of θ that the last step's decoupled weight decay removed (θ ← θ − κθ − u, u the rule's
        update). Of Paddle's built-ins only AdamW separates its decay (θ ← θ − ηλθ, before the Adam step);
        the others add λθ to the gradient (coupled: inside u) or, Lamb, inside the trust ratio: κ = 0."""
        return float(self.get_lr()) * self._weight_decay if isinstance(self, paddle.optimizer.AdamW) else 0.0

    def state_dict(self) -> dict:
        index = {p.name: i for i, p in enumerate(self._parameter_list)}
        return pack(self, {f"{index[pname]}:{kind}": t
                           for kind, per_param in self._accumulators.items() for pname, t in per_param.items()})

    def set_state_dict(self, state: dict) -> None:
        params = self._parameter_list
        check_layout(state, type(self).__name__, params)
        block = framework.default_main_program().global_block()
        self._create_accumulators(block, [p for p in params if not p.stop_gradient])  # so they can be filled
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

    load_state_dict = set_state_dict


def portable(cls):
    """The Paddle optimizer class `cls` with position-keyed state dicts (PortableState)."""
    return type(cls.__name__, (PortableState, cls), {"__module__": __name__, "__doc__": cls.__doc__})


class FromScratch(paddle.optimizer.Optimizer):
    """Base of the element-wise optimizers written here (qhm, qhadam, lion, adabelief, sf_sgd, sf_adamw, adan,
    prodigy, adopt).

    A subclass writes its update rule once, in `_update(g, *state) -> Δ`, in the paper's symbols: g is the
    gradient, each state (named in ACCUMULATORS; they start at zero, those in FROM_PARAMS as a copy of the
    parameters at the first step) is updated in place, and Δ is the step (θ ← θ − Δ). The learning rate is
    `self._lr`, the step number t (1, 2, ...) is `self._t`. Scalars the rule carries from step to step are
    attributes named in SCALARS (saved with the state).

    How this maps onto Paddle's optimizer machinery. Paddle's `Optimizer.step()` collects (parameter,
    gradient) pairs and, through `_apply_optimize` → `_create_optimization_pass`, calls
    `_append_optimize_op(block, (θ, g))` once per parameter, with per-parameter accumulators from
    `_add_accumulator`; the study this product grew from wrote QHM that way. Here `step()` is overridden
    instead, so that the rule runs once on *all* parameters: g is every trainable gradient concatenated
    into one flat vector (one `coalesce_tensor` kernel), each state is one flat vector, and Δ is written
    back by one multi-tensor kernel. A step is then a dozen Paddle ops whatever the number of parameter
    tensors, where `_append_optimize_op` would cost a dozen per tensor (bench/bench_optimizers.py). What
    is kept from `paddle.optimizer.Optimizer`: the learning rate and LR schedulers (get_lr / set_lr),
    the parameter list. Also overridden: `clear_grad` and the state dicts (format above).

    Weight decay: coupled L2 (g ← g + λθ before the rule) unless the subclass sets DECOUPLED = True, in
    which case θ ← θ·(1 − κ) − Δ, outside the rule, with κ = `decay_fraction()` (η·λ, AdamW-style, unless
    the subclass says otherwise). A trainable parameter with no gradient at a step counts as gradient 0 (its
    state still decays; Paddle's built-ins skip it).
    """

    ACCUMULATORS: tuple[str, ...] = ()
    FROM_PARAMS: tuple[str, ...] = ()   # accumulators that start as a copy of θ (at the first step), not zeros
    SCALARS: tuple[str, ...] = ()       # attributes (floats) the rule carries between steps, saved with the state
    DECOUPLED = False

    def __init__(self, parameters, learning_rate: float, weight_decay: float, name: str | None = None):
        if parameters is None:
            raise ValueError("parameters: pass the model's parameters (model.parameters())")
        self.decay = _check.nonnegative("weight_decay", weight_decay)
        super().__init__(learning_rate=_check.positive("learning_rate", learning_rate),
                         parameters=list(parameters), name=name)
        self._multi_precision = False
        self._params = [p for p in self._parameter_list if not p.stop_gradient]
        if len({p.dtype for p in self._params}) > 1:
            raise ValueError(f"{type(self).__name__} needs all trainable parameters in one dtype "
                             f"(got {sorted({str(p.dtype) for p in self._params})})")
        self._sizes = [int(p.numel()) for p in self._params]
        self._lr = float(self.get_lr())  # set at each step; here so that decay_fraction() works before one
        self._state: dict[str, tuple[list, paddle.Tensor]] | None = None  # kind -> (views, flat), at 1st step
        self._t = 0

    def _states(self) -> dict[str, tuple[list, paddle.Tensor]]:
        """kind -> (per-parameter views, flat vector) for every ACCUMULATORS kind, zeros at first."""
        if self._state is None:
            self._state = {kind: coalesce(self._params, copy=kind in self.FROM_PARAMS) for kind in self.ACCUMULATORS}
        return self._state

    def _gradients(self) -> list:
        """Each trainable parameter's gradient (zeros where it has none)."""
        grads = [p._grad_ivar() for p in self._params]
        return [g if g is not None else paddle.zeros_like(p) for p, g in zip(self._params, grads)]

    @paddle.no_grad()
    def step(self) -> None:
        self._t += 1
        self._lr = float(self.get_lr())
        self._apply(self._gradients())

    def _apply(self, grads: list) -> None:
        """θ ← θ − Δ, Δ = `_update(g, *state)` on flat vectors; the weight decay is applied here."""
        g = flatten(grads)
        if self.decay and not self.DECOUPLED:
            g = g + self.decay * flatten(self._params)                     # coupled L2: g ← g + λθ
        delta = self._update(g, *(flat for _, flat in self._states().values()))
        κ = self.decay_fraction()                                           # decoupled: θ ← θ·(1 − κ) − Δ
        momentum_kernel(self._params, paddle.split(delta, self._sizes), None, lr=1.0, mu=0.0, l2=κ)

    def _update(self, g, *state):
        raise NotImplementedError(f"{type(self).__name__} must define _update(g, *state)")

    def decay_fraction(self) -> float:
        """κ: the share of θ the step's decoupled weight decay removes (θ ← θ·(1 − κ) − Δ); 0 when coupled."""
        return self._lr * self.decay if self.DECOUPLED else 0.0

    def clear_grad(self, set_to_zero: bool = True) -> None:
        for p in self._params:
            p.clear_gradient(set_to_zero)

    def state_dict(self) -> dict:
        per_kind = {} if self._state is None else {kind: views for kind, (views, _) in self._state.items()}
        return pack(self, keyed(self, self._params, per_kind), step=self._t,
                    **{name: float(getattr(self, name)) for name in self.SCALARS})

    def set_state_dict(self, state: dict) -> None:
        check_layout(state, type(self).__name__, self._parameter_list)
        saved = unkeyed(self, self._params, state["state"], self.ACCUMULATORS)
        self._state = None
        for kind, tensors in saved.items():
            copy_into(self._states()[kind][0], tensors)
        self.set_lr(float(state["lr"]))
        self._t = int(state["step"])
        for name in self.SCALARS:
            setattr(self, name, float(state[name]))

    load_state_dict = set_state_dict


class Wrapper(paddle.optimizer.Optimizer):
    """Base of the wrappers (Lookahead, Cautious): an optimizer around another one, `inner`, whose step the
    wrapper's step() runs. The learning rate, clear_grad, the decoupled decay and, where the inner optimizer
    has them (Schedule-Free), eval() and train() are the inner optimizer's. `self._params`: the trainable
    parameters, `self._t`: the wrapper's step count. The state dict holds the inner optimizer's ("inner")."""

    def __init__(self, inner: paddle.optimizer.Optimizer):
        if not isinstance(inner, paddle.optimizer.Optimizer):
            raise ValueError(f"invalid inner: {inner!r} (must be a paddle.optimizer.Optimizer)")
        self.inner = inner
        super().__init__(learning_rate=float(inner.get_lr()), parameters=inner._parameter_list)
        self._params = [p for p in self._parameter_list if not p.stop_gradient]
        self._t = 0
        if hasattr(inner, "eval") and hasattr(inner, "train"):  # Schedule-Free: evaluate and save at its x
            self.eval, self.train = inner.eval, inner.train

    def clear_grad(self, set_to_zero: bool = True) -> None:
        self.inner.clear_grad(set_to_zero)

    def set_lr(self, value: float) -> None:
        self.inner.set_lr(value)

    def get_lr(self) -> float:
        return self.inner.get_lr()

    def decay_fraction(self) -> float:
        return self.inner.decay_fraction()

    def _pack(self, state: dict) -> dict:
        return pack(self, state, step=self._t, inner=self.inner.state_dict())

    def _unpack(self, state: dict) -> dict:
        """Restore the inner optimizer and the step count from `state`; return its "state" entry."""
        check_layout(state, type(self).__name__, self._parameter_list)
        self.inner.set_state_dict(state["inner"])
        self._t = int(state["step"])
        return state["state"]


_ONE: dict = {}


def scalar(value: float, like) -> paddle.Tensor:
    """A 0-d tensor holding `value`, in the dtype of `like` (cached: kernels want learning rates as tensors)."""
    key = (float(value), like.dtype, str(like.place))
    if key not in _ONE:
        if len(_ONE) > 64:
            _ONE.clear()
        _ONE[key] = paddle.full([], float(value), like.dtype)
    return _ONE[key]


def coalesce(tensors, copy: bool = True) -> tuple[list, paddle.Tensor]:
    """One contiguous 1-D tensor holding `tensors` in order (their values if `copy`, else zeros), and
    per-tensor views into it shaped like the inputs (shared memory): Paddle's coalesce_tensor kernel,
    one op instead of a reshape per tensor plus a concat."""
    views, flat = _C_ops.coalesce_tensor(list(tensors), tensors[0].dtype, copy, not copy, False, 0.0, False, 0, -1,
                                         [], [])
    return views, flat


def flatten(tensors) -> paddle.Tensor:
    """A contiguous 1-D copy of `tensors`, in order (see coalesce)."""
    return coalesce(tensors)[1]


def momentum_kernel(params, grads, velocities, lr, mu: float, l2: float = 0.0) -> None:
    """Paddle's multi-tensor momentum kernel (`_C_ops.merged_momentum_`), every tensor i in one call:

        v_i ← μ·v_i + (g_i + l2·θ_i);   θ_i ← θ_i − lr_i·v_i

    `lr`: one float for all, or one 0-d tensor per parameter. No dampening, and its `rescale_grad` is
    ignored on CPU (callers scale g themselves). `velocities=None` uses the gradients as scratch velocity
    (with μ = 0 that is θ_i ← θ_i·(1 − lr_i·l2) − lr_i·g_i)."""
    n = len(params)
    velocities = list(grads) if velocities is None else velocities
    lrs = [scalar(lr, params[0])] if isinstance(lr, (int, float)) else list(lr)
    _C_ops.merged_momentum_(params, grads, velocities, lrs, None, float(mu), False,
                            ["l2_decay" if l2 else ""] * n, [float(l2)] * n, False, 1.0)


def copy_into(dst, src) -> None:
    """dst_i ← src_i (values only) for every pair."""
    for d, s in zip(dst, src):
        _C_ops.assign_out_(s, d)
