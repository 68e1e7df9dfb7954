"""Muon: momentum orthogonalized by Newton–Schulz (Jordan et al. 2024, "Muon: An optimizer for hidden layers
in neural networks", kellerjordan.github.io/posts/muon; code KellerJordan/Muon, muon.py), with the update
scaled to AdamW's size as in Liu et al. 2025 ("Muon is Scalable for LLM Training", arXiv:2502.16982, eq. 4),
so that one learning rate and one weight decay serve the Muon and the AdamW parameters alike."""
from __future__ import annotations

import paddle

from train.optimizers import _check
from train.optimizers.base import check_layout, coalesce, flatten, keyed, momentum_kernel, pack, portable, unkeyed

# Jordan's quintic Newton–Schulz coefficients: chosen to maximise the slope at 0, so that 5 iterations
# bring every singular value into roughly [0.7, 1.2] (not exactly 1: the paper's point is that this is enough).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(G: paddle.Tensor, steps: int) -> paddle.Tensor:
    """≈ U·Vᵀ for G = U·Σ·Vᵀ (2-D): `steps` quintic Newton–Schulz iterations X ← a·X + (b·A + c·A²)·X,
    A = X·Xᵀ, from X = G/‖G‖_F (spectral norm ≤ 1), on the wide orientation (fewer rows than columns)."""
    a, b, c = NS_COEFFICIENTS
    tall = G.shape[0] > G.shape[1]
    X = G.T if tall else G
    X = X * ((X * X).sum().sqrt() + 1e-7).reciprocal()    # X_0 = G/‖G‖_F (paddle.linalg.norm: 20× slower on CPU)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * (A @ A)) @ X
    return X.T if tall else X


_AdamW = portable(paddle.optimizer.AdamW)


def is_matrix(p) -> bool:
    """Muon's parameters: 2-D weights and convolutions (out, in, k, k) seen as (out, in·k·k); not vectors
    (biases, BatchNorm) and not depthwise convolutions (one input channel per filter: (C, 1, k, k))."""
    return len(p.shape) == 2 or (len(p.shape) == 4 and p.shape[1] > 1)


class Muon(paddle.optimizer.Optimizer):
    r"""Momentum whose update matrix is orthogonalized: every direction of the layer moves by the same amount.

        M_t = β·M_{t−1} + (1 − β)·G_t                     (G_t: the gradient as a matrix)
        U_t = (1 − β)·G_t + β·M_t   (Nesterov; plain: U_t = M_t)
        O_t = NewtonSchulz5(U_t) ≈ U·Vᵀ
        W_t = W_{t−1} − η·(0.2·√max(A, B)·O_t + λ·W_{t−1})   (A × B: the matrix's shape)

    on the matrices (`is_matrix`); every other parameter is trained by AdamW with the same η and λ
    (β₁, β₂, ε below). Arguments → symbols: learning_rate = η, momentum = β, use_nesterov (Jordan's
    default True), ns_steps = Newton–Schulz iterations (5), weight_decay = λ (decoupled), beta1, beta2,
    epsilon: the AdamW part's.

    Which rule the classifier gets: Muon, like every other 2-D weight. Jordan advises AdamW for the output
    layer (and the first convolution), from language models whose output layer is a vocabulary-sized
    embedding; here (1) in the `head` regime the classifier's weight is the only weight, so sending it to
    AdamW would make `muon` the same run as `adamw` in the default CPU profile; (2) an optimizer gets a
    list of tensors and can only tell a classifier from a hidden layer by guessing from names; (3) the 0.2·√max(A, B) scale
    gives a (1280 × 4) classifier an AdamW-sized step (RMS 0.2·η per entry), so its update is well scaled.
    Only the bias (a vector) goes to AdamW.

    Traps:
    - The 0.2·√max(A, B) scale (Liu et al.) makes η AdamW's learning rate. Jordan's code instead uses
      √max(1, A/B) with η ≈ 0.02 (its lr is in spectral-norm units): the same rule, other units.
    - Newton–Schulz gives singular values in ≈ [0.7, 1.2], not exactly 1; ‖G‖_F normalisation first (the
      iteration only converges for spectral norm ≤ 1).
    - Paddle's Linear weight is (in, out), the transpose of PyTorch's; orthogonalization and the symmetric
      scale do not care.
    - A step costs ns_steps × 3 matrix products per matrix: Muon is slower per step than AdamW on small
      layers (bench/bench_optimizers.py prints the ratio).

    Paddle machinery: a paddle.optimizer.Optimizer that owns the matrices' momentum (one flat vector with
    per-parameter views) and a Paddle AdamW (portable state) for the rest; `step()` runs both. State =
    momentum + step count + the AdamW's state ("fallback").
    """

    def __init__(self, parameters, *, learning_rate: float, momentum: float, use_nesterov: bool, ns_steps: int,
                 beta1: float, beta2: float, epsilon: float, weight_decay: float, name: str | None = None):
        if parameters is None:
            raise ValueError("parameters: pass the model's parameters (model.parameters())")
        self.momentum = _check.unit("momentum", momentum)
        self.use_nesterov = _check.boolean("use_nesterov", use_nesterov)
        self.ns_steps = _check.count("ns_steps", ns_steps)
        self.decay = _check.nonnegative("weight_decay", weight_decay)
        super().__init__(learning_rate=_check.positive("learning_rate", learning_rate),
                         parameters=list(parameters), name=name)
        trainable = [p for p in self._parameter_list if not p.stop_gradient]
        self._matrices = [p for p in trainable if is_matrix(p)]
        rest = [p for p in trainable if not is_matrix(p)]
        self.fallback = _AdamW(
            learning_rate=learning_rate, beta1=_check.unit("beta1", beta1), beta2=_check.unit("beta2", beta2),
            epsilon=_check.positive("epsilon", epsilon), weight_decay=weight_decay, parameters=rest) if rest else None
        self._scale = [0.2 * max(p.shape[0], int(p.numel()) // p.shape[0]) ** 0.5 for p in self._matrices]
        self._momentum = None  # M: (per-matrix views, flat vector), at the first step
        self._t = 0

    @paddle.no_grad()
    def step(self) -> None:
        self._t += 1
        if self._matrices:
            self._orthogonalized_step()
        if self.fallback is not None:
            self.fallback.step()

    def _orthogonalized_step(self) -> None:
        η, β, λ = float(self.get_lr()), self.momentum, self.decay
        grads = [p._grad_ivar() for p in self._matrices]
        G = flatten([g if g is not None else paddle.zeros_like(p) for p, g in zip(self._matrices, grads)])
        if self._momentum is None:
            self._momentum = coalesce(self._matrices, copy=False)
        M = self._momentum[1]
        M.scale_(β).add_((1 - β) * G)                               # M_t = β·M_{t−1} + (1 − β)·G_t
        U = G.scale_(1 - β).add_(β * M) if self.use_nesterov else M  # U_t = (1 − β)·G_t + β·M_t
        steps = []
        for p, u, scale in zip(self._matrices, paddle.split(U, [int(p.numel()) for p in self._matrices]),
                               self._scale):
            O = orthogonalize(u.reshape([p.shape[0], -1]), self.ns_steps)   # O_t ≈ U·Vᵀ of (out, in·k·k)
            steps.append((O * (η * scale)).reshape(p.shape))                # η·0.2·√max(A, B)·O_t
        momentum_kernel(self._matrices, steps, None, lr=1.0, mu=0.0, l2=η * λ)  # W ← W·(1 − ηλ) − step

    def decay_fraction(self) -> float:
        return float(self.get_lr()) * self.decay

    def clear_grad(self, set_to_zero: bool = True) -> None:
        for p in self._parameter_list:
            if not p.stop_gradient:
                p.clear_gradient(set_to_zero)

    def set_lr(self, value: float) -> None:
        super().set_lr(value)
        if self.fallback is not None:
            self.fallback.set_lr(value)

    def state_dict(self) -> dict:
        momentum = {} if self._momentum is None else {"momentum": self._momentum[0]}
        return pack(self, keyed(self, self._matrices, momentum), step=self._t,
                    fallback=None if self.fallback is None else self.fallback.state_dict())

    def set_state_dict(self, state: dict) -> None:
        check_layout(state, type(self).__name__, self._parameter_list)
        saved = unkeyed(self, self._matrices, state["state"], ("momentum",))
        self._momentum = coalesce(saved["momentum"]) if saved else None
        if self.fallback is not None:
            self.fallback.set_state_dict(state["fallback"])
        self.set_lr(float(state["lr"]))
        self._t = int(state["step"])

    load_state_dict = set_state_dict
