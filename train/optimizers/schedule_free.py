"""Schedule-Free SGD and AdamW (Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, "The Road Less
Scheduled", NeurIPS 2024, arXiv:2405.15682, Algorithm 1; reference code: facebookresearch/schedule_free,
sgd_schedulefree_reference.py and adamw_schedulefree_reference.py, which keep x, y and z as here).

One method, two base steps: the averaging (ScheduleFree) is written once, the z-step of each variant
(SFSGD, SFAdamW) in a few lines below it."""
from __future__ import annotations

import math

import paddle
from paddle import _C_ops

from train.optimizers import _check
from train.optimizers.base import FromScratch, coalesce, copy_into, flatten


class ScheduleFree(FromScratch):
    r"""Averaging instead of a learning-rate schedule. The gradient is taken at y, between the base
    method's iterate z and the running average x of the z's; x is the model to evaluate and keep.

        y_t     = (1 − β)·z_t + β·x_t              (the parameters hold y_t while training)
        z_{t+1} = z_t − Δz_t                       (the base step at y_t, with γ_t: SFSGD, SFAdamW)
        c_{t+1} = γ_t² / Σ_{i=1..t} γ_i²
        x_{t+1} = (1 − c_{t+1})·x_t + c_{t+1}·z_{t+1}
        γ_t     = γ·min(1, t/T_warmup)             (AdamW: also ·√(1 − β₂ᵗ))

    with x_1 = z_1 = y_1 = the parameters at the first `step()`. Arguments → symbols: learning_rate = γ,
    warmup_steps = T_warmup (0: none), β = `momentum` (SFSGD) or `beta1` (SFAdamW), weight_decay = λ
    (taken at y, as in Algorithm 1).

    eval() / train() (as the reference implementation): `eval()` puts x into the parameters, `train()`
    puts y back (bit for bit: y is kept, not recomputed from x). Evaluate and checkpoint between eval() and
    train(); `step()` in eval mode raises. Both are no-ops when already in that mode.

    Traps:
    - The model holds y while training, not x: evaluating or saving without `eval()` measures the wrong
      point. BatchNorm statistics gathered at y are not x's: recompute them at x before evaluating when
      BatchNorm layers train.
    - c uses γ_t itself, as Algorithm 1 does; the reference code uses the largest γ so far (`lr_max`).
      The two agree while γ never decreases (warmup, then constant: what the method is for). Under an
      outside schedule that lowers γ (the training loop's cosine) Algorithm 1 gives the later, smaller
      steps less weight in x.
    - `set_state_dict()` puts the optimizer in train mode and writes y = (1 − β)·z + β·x into the
      parameters, so a resumed run continues from the saved state whichever of x or y the model file holds.
    - x, z and y cost three parameter-sized buffers (SFAdamW: four, with v); the state saves z and x.

    Paddle machinery: FromScratch's flat vectors (z, x, v flat; y one flat buffer with per-parameter views,
    copied into the parameters after each step and by train(), so that they hold y exactly and a resumed
    run is bit-identical). `_update(g, y, γ, *state) -> Δz` is the base step of each subclass.
    """

    ACCUMULATORS = ("z", "x")
    FROM_PARAMS = ("z", "x")
    SCALARS = ("weight_sum",)   # Σ γ_i²

    def __init__(self, parameters, learning_rate: float, weight_decay: float, warmup_steps: int, beta: float,
                 name: str | None = None):
        self.warmup_steps = _check.natural("warmup_steps", warmup_steps)
        self.beta = beta
        self.weight_sum = 0.0
        self._y = None          # y_t: (per-parameter views, flat vector), from the first step
        self._training = True
        super().__init__(parameters, learning_rate, weight_decay, name=name)

    def _gamma(self) -> float:
        """γ_t = γ·min(1, t/T_warmup)."""
        return self._lr * min(1.0, self._t / self.warmup_steps) if self.warmup_steps else self._lr

    @paddle.no_grad()
    def step(self) -> None:
        if not self._training:
            raise RuntimeError(f"{type(self).__name__}.step() in eval mode: the parameters hold x; call "
                               "optimizer.train() after evaluating, so that the gradient is taken at y")
        super().step()

    def _apply(self, grads: list) -> None:
        g = flatten(grads)
        state = self._states()
        if self._y is None:
            self._y = coalesce(self._params)                        # y_1 = x_1 = z_1 = θ
        (_, z), (_, x), rest = state["z"], state["x"], [flat for _, flat in list(state.values())[2:]]
        y, β, γ = self._y[1], self.beta, self._gamma()
        z.subtract_(self._update(g, y, γ, *rest))                   # z_{t+1} = z_t − Δz_t
        self.weight_sum += γ * γ
        c = γ * γ / self.weight_sum if self.weight_sum > 0 else 0.0  # c_{t+1} = γ_t² / Σ γ_i²
        x.scale_(1 - c).add_(c * z)                                 # x_{t+1} = (1 − c)·x_t + c·z_{t+1}
        _C_ops.assign_out_((1 - β) * z + β * x, y)                  # y_{t+1} = (1 − β)·z_{t+1} + β·x_{t+1}
        copy_into(self._params, self._y[0])                         # θ ← y_{t+1}

    def _update(self, g, y, γ, *state):
        raise NotImplementedError(f"{type(self).__name__} must define _update(g, y, γ, *state)")

    def decay_fraction(self) -> float:
        return 0.0  # the decay acts on z (inside Δz), not on the parameters directly

    def eval(self) -> None:
        """Parameters ← x (the average: evaluate and checkpoint this). No-op if already in eval mode."""
        if self._training and self._state is not None:
            copy_into(self._params, self._state["x"][0])
        self._training = False

    def train(self) -> None:
        """Parameters ← y (where the next gradient is taken). No-op if already in train mode."""
        if not self._training and self._y is not None:
            copy_into(self._params, self._y[0])
        self._training = True

    def set_state_dict(self, state: dict) -> None:
        super().set_state_dict(state)
        self._training, self._y = True, None
        if self._state is not None:                                 # θ ← y = (1 − β)·z + β·x
            (_, z), (_, x) = self._state["z"], self._state["x"]
            self._y = coalesce(self._params)
            _C_ops.assign_out_((1 - self.beta) * z + self.beta * x, self._y[1])
            copy_into(self._params, self._y[0])

    load_state_dict = set_state_dict


class SFSGD(ScheduleFree):
    r"""Schedule-Free SGD: the z-step is plain SGD at y.

        Δz_t = γ_t·(g_t + λ·y_t),   g_t = ∇L(y_t)

    Arguments → symbols: learning_rate = γ, momentum = β (interpolation between z and x, not a momentum
    buffer), weight_decay = λ (coupled L2 at y, as the reference code), warmup_steps = T_warmup.

    Traps:
    - β = 0 makes y = z: plain SGD (x is then only an average kept aside for eval()).
    - The learning rate is in "SGD without momentum" units and the step at y is about (1 − β)·γ: the
      reference default is γ = 1.0, ten times momentum-SGD's usual 0.1.
    """

    def __init__(self, parameters, *, learning_rate: float, momentum: float, weight_decay: float,
                 warmup_steps: int, name: str | None = None):
        super().__init__(parameters, learning_rate, weight_decay, warmup_steps,
                         _check.unit("momentum", momentum), name=name)

    def _update(self, g, y, γ):
        if self.decay:
            g = g + self.decay * y                                  # g_t + λ·y_t
        return γ * g                                                # Δz_t = γ_t·(g_t + λ·y_t)


class SFAdamW(ScheduleFree):
    r"""Schedule-Free AdamW (Algorithm 1 as printed): an RMSProp-style z-step with Adam's second moment.

        v_t  = β₂·v_{t−1} + (1 − β₂)·g_t²
        γ_t  = γ·√(1 − β₂ᵗ)·min(1, t/T_warmup)
        Δz_t = γ_t·g_t/(√v_t + ε) + γ_t·λ·y_t

    Arguments → symbols: learning_rate = γ, beta1 = β₁ (= β, the interpolation), beta2 = β₂,
    epsilon = ε, weight_decay = λ (decoupled: not divided by √v, taken at y), warmup_steps = T_warmup.

    Traps:
    - There is no first moment: β₁ only places y between z and x. β₁ = 0 is RMSProp with Adam's bias
      correction folded into γ_t (ε sits outside √v_t, not √v̂_t as in Adam).
    - The bias correction √(1 − β₂ᵗ) is part of γ_t, so it also weights the average x.
    """

    ACCUMULATORS = ("z", "x", "moment2")
    DECOUPLED = True

    def __init__(self, parameters, *, learning_rate: float, beta1: float, beta2: float, epsilon: float,
                 weight_decay: float, warmup_steps: int, name: str | None = None):
        self.beta2 = _check.unit("beta2", beta2)
        self.epsilon = _check.positive("epsilon", epsilon)
        super().__init__(parameters, learning_rate, weight_decay, warmup_steps, _check.unit("beta1", beta1),
                         name=name)

    def _gamma(self) -> float:
        return super()._gamma() * math.sqrt(1 - self.beta2 ** self._t)   # ·√(1 − β₂ᵗ)

    def _update(self, g, y, γ, v):
        β2, ε, λ = self.beta2, self.epsilon, self.decay
        v.scale_(β2).add_((1 - β2) * g * g)                         # v_t = β₂·v_{t−1} + (1 − β₂)·g_t²
        step = g.multiply_(v.sqrt().scale_(bias=ε).reciprocal_()).scale_(γ)   # γ_t·g_t/(√v_t + ε)
        return step.add_((γ * λ) * y) if λ else step                # + γ_t·λ·y_t
