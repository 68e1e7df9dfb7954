"""State round trips: N steps -> state_dict -> paddle.save/load -> a fresh model and optimizer ->
set_state_dict -> 20 more steps in lockstep with the original -> identical parameters.

N = 22 so that Lookahead (k = 5) is mid-cycle: its slow weights and step count must both come back.
The fresh optimizer is built after other optimizers have stepped in this process, so Paddle's generated
accumulator names differ from the saved ones (as they do across processes); states are keyed by
parameter position, which also lets them load into a model whose parameter names differ."""
from __future__ import annotations

import models  # noqa: F401  (first: quiets Paddle)
import numpy as np
import paddle
import pytest

from models.networks import SmallCNN
from train.optimizers import NAMES, create

pytestmark = pytest.mark.filterwarnings("ignore:When training, we now always track")
RNG = np.random.default_rng(0)
BATCHES = [(RNG.standard_normal((8, 3, 16, 16)).astype("float32"), RNG.integers(0, 4, 8)) for _ in range(42)]


def step(model, opt, batch):
    x, y = batch
    loss = paddle.nn.functional.cross_entropy(model(paddle.to_tensor(x)), paddle.to_tensor(y))
    loss.backward()
    opt.step()
    opt.clear_grad()


def churn():
    """Build and step a throwaway optimizer so Paddle's name counters move on."""
    m = models.build_model("smallcnn", 4)
    o = paddle.optimizer.Adam(parameters=m.parameters())
    step(m, o, BATCHES[0])


def renamed_smallcnn():
    """The default model with other parameter names (other_conv2d_0.w_0, ...)."""
    with paddle.utils.unique_name.guard("other_"):
        return SmallCNN(4)


def round_trip(name, tmp_path, fresh_model, **overrides):
    paddle.seed(0)
    a = models.build_model("smallcnn", 4)
    opt_a = create(name, a.parameters(), **overrides)
    for t, batch in enumerate(BATCHES[:22]):
        if t == 11:
            opt_a.set_lr(opt_a.get_lr() * 0.5)  # the restored optimizer must pick up the current lr too
        step(a, opt_a, batch)
    paddle.save(opt_a.state_dict(), str(tmp_path / "opt.pdopt"))
    paddle.save(a.state_dict(), str(tmp_path / "model.pdparams"))

    churn()
    b = fresh_model()
    b.set_state_dict(paddle.load(str(tmp_path / "model.pdparams")))  # Layer state maps by structured name
    opt_b = create(name, b.parameters(), **overrides)
    opt_b.set_state_dict(paddle.load(str(tmp_path / "opt.pdopt")))
    assert opt_b.get_lr() == opt_a.get_lr()
    for batch in BATCHES[22:]:
        step(a, opt_a, batch)
        step(b, opt_b, batch)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.numpy(), pb.numpy(), err_msg=f"{name}: {na}")
    return a, b


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_same_model(name, tmp_path):
    round_trip(name, tmp_path, lambda: models.build_model("smallcnn", 4))


@pytest.mark.parametrize("name,overrides", [("adam", {}), ("lookahead", {"inner": "adam"}), ("qhm", {}),
                                            ("lookahead", {"inner": "momentum", "k": 3})])
def test_round_trip_into_model_with_other_parameter_names(name, overrides, tmp_path):
    a, b = round_trip(name, tmp_path, renamed_smallcnn, **overrides)
    assert not {p.name for p in a.parameters()} & {p.name for p in b.parameters()}


def test_lookahead_state_holds_inner_state_slow_weights_and_step():
    m = models.build_model("smallcnn", 4)
    opt = create("lookahead", m.parameters(), inner="adam", k=5)
    for batch in BATCHES[:7]:
        step(m, opt, batch)
    sd = opt.state_dict()
    assert sd["step"] == 7
    assert any(k.endswith(":moment1") for k in sd["inner"]["state"])
    trainable = [i for i, p in enumerate(m.parameters()) if not p.stop_gradient]
    assert sorted(sd["state"]) == sorted(f"{i}:slow" for i in trainable)
    # slow weights are φ after the sync at step 5, not the current fast weights
    fast = m.parameters()[trainable[0]].numpy()
    assert not np.array_equal(sd["state"][f"{trainable[0]}:slow"].numpy(), fast)


def test_clear_errors_for_states_that_do_not_fit():
    m = models.build_model("smallcnn", 4)
    opt = create("adam", m.parameters())
    step(m, opt, BATCHES[0])
    state = opt.state_dict()

    narrow = SmallCNN(4, width=8)
    with pytest.raises(ValueError, match=r"parameter 0: .*shape \[16, 3, 3, 3\].*shape \[8, 3, 3, 3\]"):
        create("adam", narrow.parameters()).set_state_dict(state)
    with pytest.raises(ValueError, match="optimizer state is for 'Adam', not 'SGD'"):
        create("sgd", m.parameters()).set_state_dict(state)
    native = paddle.optimizer.Adam(parameters=m.parameters())
    step(m, native, BATCHES[1])
    with pytest.raises(ValueError, match="not an optimizer state written by train.optimizers"):
        create("adam", m.parameters()).set_state_dict(native.state_dict())
    with pytest.raises(ValueError, match="covers 22 parameters, this model has 2"):
        create("adam", paddle.nn.Linear(3, 4).parameters()).set_state_dict(state)
