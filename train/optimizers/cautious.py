"""Cautious optimizers (Liang, Chen, Liu & Liu, "Cautious Optimizers: Improving Training with One Line of
Code", arXiv:2411.16085, Algorithm 1; code kyleliang919/C-Optim, c_adamw.py, with the mask normalised by
its mean as timm's and C-Optim's current code do)."""
from __future__ import annotations

import paddle

from train.optimizers.base import Wrapper, flatten, momentum_kernel


class Cautious(Wrapper):
    r"""Run any optimizer A, then drop the components of its update that disagree in sign with the gradient
    and scale the rest up so the update keeps its size:

        u_t = A's update at θ_{t−1}          (θ_{t−1}·(1 − κ) − u_t is where A would go; κ its decoupled decay)
        φ_t = 𝟙[u_t ⊙ g_t > 0]               (per coordinate; g_t = ∇L(θ_{t−1}))
        θ_t = θ_{t−1}·(1 − κ) − u_t ⊙ φ_t / max(mean(φ_t), 10⁻³)     (mean per parameter tensor)

    Arguments → symbols: inner = A (any registry optimizer but a wrapper; default AdamW, the paper's
    C-AdamW), and every other argument is A's (learning rate, betas, decay).

    Traps:
    - The decoupled weight decay (κ = ηλ for AdamW) is applied whole, outside the mask, as in C-AdamW;
      coupled L2 (λθ added to the gradient) is part of u and is masked with it. g is the loss's gradient.
    - The mask compares the *update* with the *current* gradient: for plain SGD they always agree and
      Cautious(SGD) is SGD; it bites when momentum carries the update against the gradient.
    - The rescaling divides by the mean of φ per tensor (timm/C-Optim: mean clamped at 10⁻³); the paper's
      first code divided by (count + 1)/size, which shrinks the step slightly even when nothing is masked.
    - Only A's state is kept; the mask is recomputed every step. Around Schedule-Free (sf_*), whose
      parameters hold y and which rewrites y from its own z and x at every step, the mask only moves the
      point where the next gradient is taken: not the paper's method (C-Optim masks the base step).

    Paddle machinery: a Wrapper (base.py) that owns no update of its own: step() copies θ and g
    (flat vectors), runs A's step(), reads u = θ·(1 − κ) − θ_A back, and writes θ_A + u − u ⊙ φ/mean φ with
    two multi-tensor kernel calls (the second with one rate 1/mean φ per tensor; the per-tensor counts of φ
    come from one cumulative sum): about twenty Paddle ops whatever the number of tensors. A full mask gives
    A's parameters up to float rounding. get_lr/set_lr/clear_grad/eval/train are A's.
    """

    def __init__(self, inner: paddle.optimizer.Optimizer):
        super().__init__(inner)
        self._sizes = [int(p.numel()) for p in self._params]
        dtype = self._params[0].dtype if self._params else "float32"
        self._zeros = paddle.zeros([sum(self._sizes)], dtype)                         # heaviside(x, 0) needs a full-size 0
        self._ends = paddle.to_tensor([sum(self._sizes[:i + 1]) - 1 for i in range(len(self._sizes))], "int64")
        self._inverse_sizes = paddle.to_tensor([1.0 / n for n in self._sizes], dtype)

    @paddle.no_grad()
    def step(self) -> None:
        grads = [p._grad_ivar() for p in self._params]
        g = flatten([gi if gi is not None else paddle.zeros_like(p) for p, gi in zip(self._params, grads)])
        u = flatten(self._params)                                     # θ_{t−1}
        self.inner.step()                                             # θ_A = θ_{t−1}·(1 − κ) − u_t
        self._t += 1
        u.scale_(1 - self.inner.decay_fraction()).subtract_(flatten(self._params))   # u_t = θ_{t−1}·(1 − κ) − θ_A
        φ = paddle.heaviside(g.multiply_(u), self._zeros)             # φ_t = 𝟙[u_t ⊙ g_t > 0]
        counts = paddle.diff(paddle.index_select(φ.cumsum(), self._ends), prepend=self._zeros[:1])  # Σφ_t per tensor
        rates = counts.multiply_(self._inverse_sizes).clip_(min=1e-3).reciprocal_().unbind()       # 1/max(mean φ_t, 10⁻³)
        momentum_kernel(self._params, paddle.split(u.scale(-1.0), self._sizes), None, lr=1.0, mu=0.0)  # θ_A + u_t
        momentum_kernel(self._params, paddle.split(u.multiply_(φ), self._sizes), None, lr=rates, mu=0.0)  # − u_t ⊙ φ_t/mean φ_t

    def state_dict(self) -> dict:
        return self._pack({})

    def set_state_dict(self, state: dict) -> None:
        self._unpack(state)

    load_state_dict = set_state_dict
