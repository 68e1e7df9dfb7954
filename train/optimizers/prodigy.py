"""Prodigy: Adam with a learning rate it estimates itself (Mishchenko & Defazio, "Prodigy: An Expeditiously
Adaptive Parameter-Free Learner", ICML 2024, arXiv:2306.06101, Algorithm 4 (Adam version); code
konstmish/prodigy, prodigyopt/prodigy.py, whose defaults are used: no bias correction, no safeguard warmup,
unbounded growth)."""
from __future__ import annotations

import paddle

from train.optimizers import _check
from train.optimizers.base import FromScratch, flatten


class Prodigy(FromScratch):
    r"""Adam whose step size d·η grows from d₀ to an estimate of the distance to the solution, D ≈ ‖x₀ − x*‖.

        r_t  = β₃·r_{t−1} + (d_t/d₀)·d_t·η·⟨g_t, x₀ − x_t⟩            (a scalar)
        s_t  = β₃·s_{t−1} + (d_t/d₀)·d_t·η·g_t
        m_t  = β₁·m_{t−1} + (1 − β₁)·d_t·g_t
        v_t  = β₂·v_{t−1} + (1 − β₂)·d_t²·g_t²
        d_{t+1} = max(d_t, c·r_t/‖s_t‖₁)
        x_{t+1} = x_t − d_t·η·(m_t/(√v_t + d_{t+1}·ε) + λ·x_t)

    with d_1 = d₀, r_0 = 0, s_0 = m_0 = v_0 = 0 and x₀ the parameters at the first step. Arguments →
    symbols: learning_rate = η (a multiplier on the estimated rate: leave it at 1), d0 = d₀, d_coef = c,
    beta1 = β₁, beta2 = β₂, beta3 = β₃ (the paper's default is √β₂), epsilon = ε, weight_decay = λ
    (decoupled, scaled by d·η like the step).

    Traps:
    - η is not the learning rate: the step is d·η with d estimated. η = 1 is the method; a cosine
      schedule on η (as the training loop applies) is what the authors recommend with it.
    - d only grows (d_{t+1} ≥ d_t): a too-large early estimate is never taken back. d₀ = 1e-6 is small
      enough to start below any sensible rate; the first steps are then tiny until d has grown.
    - The (d/d₀) factor in r and s cancels in r/‖s‖₁; it only keeps the numbers away from underflow.
    - ε is scaled by d (√v carries a factor d too), so it keeps its usual meaning.
    - d needs two reductions over all parameters per step (⟨g, x₀ − x⟩ and ‖s‖₁), read back on the host.

    Paddle machinery: `_update` is the rule, run by FromScratch.step() on all parameters as one flat
    vector; x₀ is an accumulator that starts as a copy of the parameters (FROM_PARAMS); d and r are
    scalars saved with the state (SCALARS); the decay is FromScratch's decoupled decay with κ = d·η·λ.
    """

    ACCUMULATORS = ("moment1", "moment2", "s", "x0")
    FROM_PARAMS = ("x0",)
    SCALARS = ("d", "numerator")
    DECOUPLED = True

    def __init__(self, parameters, *, learning_rate: float, beta1: float, beta2: float, beta3: float,
                 epsilon: float, weight_decay: float, d0: float, d_coef: float, name: str | None = None):
        self.beta1 = _check.unit("beta1", beta1)
        self.beta2 = _check.unit("beta2", beta2)
        self.beta3 = _check.unit("beta3", beta3)
        self.epsilon = _check.positive("epsilon", epsilon)
        self.d0 = _check.positive("d0", d0)
        self.d_coef = _check.positive("d_coef", d_coef)
        self.d = self.d0          # d_t
        self.numerator = 0.0      # r_t
        super().__init__(parameters, learning_rate, weight_decay, name=name)
        self._dlr = self.d * self._lr

    def _update(self, g, m, v, s, x0):
        η, β1, β2, β3, ε, d, d0 = self._lr, self.beta1, self.beta2, self.beta3, self.epsilon, self.d, self.d0
        self._dlr = dlr = d * η                                          # the step size d_t·η
        x = flatten(self._params)
        self.numerator = β3 * self.numerator + (d / d0) * dlr * float(paddle.dot(g, x0 - x))   # r_t
        s.scale_(β3).add_(((d / d0) * dlr) * g)                          # s_t
        m.scale_(β1).add_((d * (1 - β1)) * g)                            # m_t
        v.scale_(β2).add_((d * d * (1 - β2)) * g * g)                    # v_t
        s_norm = float(s.abs().sum())
        if s_norm > 0:
            self.d = max(d, self.d_coef * self.numerator / s_norm)      # d_{t+1} = max(d_t, c·r_t/‖s_t‖₁)
        denominator = v.sqrt().scale_(bias=self.d * ε)                   # √v_t + d_{t+1}·ε
        return m.multiply(denominator.reciprocal_()).scale_(dlr)        # d_t·η·m_t/(√v_t + d_{t+1}·ε)

    def decay_fraction(self) -> float:
        return self._dlr * self.decay                                    # d_t·η·λ
