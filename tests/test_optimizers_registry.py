"""The registry: one record per name, documented defaults (and the docs' summary of them), the interface
every optimizer returns, clear errors, and the visualization entry point."""
from __future__ import annotations

import inspect
import os
import re

import models  # noqa: F401  (first: quiets Paddle)
import numpy as np
import paddle
import pytest
from PIL import Image

import train.optimizers as registry
from train.optimizers import DECOUPLED, DEFAULTS, FAMILIES, NAMES, PROFILES, REGISTRY, _check, create, hyperparams

from conftest import ROOT, run_cli

SWEEP_ORDER = ("sgd", "momentum", "rmsprop", "adam", "adadelta", "adagrad", "adamax", "adamw", "lamb", "qhm",
               "lookahead", "qhadam", "lion", "adabelief", "nadam", "radam", "asgd", "rprop", "sf_sgd", "sf_adamw",
               "muon", "adan", "prodigy", "adopt", "cautious")


def test_names_in_sweep_order_and_every_default_has_a_learning_rate():
    assert NAMES == SWEEP_ORDER
    assert set(DEFAULTS) == set(NAMES)
    for name in NAMES:
        assert DEFAULTS[name]["learning_rate"] > 0, name
        assert hyperparams(name) == DEFAULTS[name]


def test_every_default_value_names_its_source():
    src = inspect.getsource(registry)
    block = src[src.index("REGISTRY: dict"):src.index("]}\n", src.index("REGISTRY: dict"))]
    values = [ln for ln in block.splitlines() if re.match(r'\s+"\w+": [^{]', ln)]
    assert len(values) == sum(len(info.defaults) for info in REGISTRY.values())
    missing = [ln.strip() for ln in values if "#" not in ln or len(ln.split("#", 1)[1].strip()) < 8]
    assert not missing, f"defaults without a source comment: {missing}"


def test_one_record_per_name_and_each_record_agrees_with_its_class():
    """A record's defaults are exactly what its class takes: ours take them as required keyword arguments,
    the built-ins through _check.BY_NAME (one checker per hyperparameter name) and paddle_names."""
    assert tuple(REGISTRY) == NAMES and all(info.name == n for n, info in REGISTRY.items())
    for name, info in REGISTRY.items():
        assert info.family in FAMILIES and len(info.description) > 20, name
        if info.wrapper:
            takes = {p.name for p in inspect.signature(info.opt_class).parameters.values()} - {"inner"}
            assert takes == set(info.defaults) - {"inner"}, name
        elif info.builtin:
            assert set(info.defaults) <= set(_check.BY_NAME), name
        else:
            params = inspect.signature(info.opt_class).parameters.values()
            takes = {p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty}
            assert takes == set(info.defaults), name
    assert DECOUPLED == tuple(n for n, i in REGISTRY.items() if i.decoupled)


@pytest.mark.parametrize("name", NAMES)
def test_every_profile_has_a_learning_rate(name):
    lrs = {p: hyperparams(name, p)["learning_rate"] for p in PROFILES}
    assert all(lr > 0 for lr in lrs.values()) and lrs["scratch"] == DEFAULTS[name]["learning_rate"]
    overridden = REGISTRY[name].profile_lr or REGISTRY.get(hyperparams(name).get("inner"), REGISTRY[name]).profile_lr
    if "finetune" not in overridden:
        assert lrs["finetune"] == pytest.approx(0.1 * lrs["scratch"]), name  # the fine-tuning rule
    with pytest.raises(ValueError, match="unknown training profile 'fast'"):
        hyperparams(name, "fast")


def test_docs_summary_agrees_with_the_registry():
    """DEFAULTS and DECOUPLED are the one home; docs/optimizers.md summarises them and must not drift."""
    with open(os.path.join(ROOT, "docs", "optimizers.md"), encoding="utf-8") as f:
        text = f.read()
    decoupled = re.search(r"except those in\s+`DECOUPLED`:\s+([a-z_,\s]+?)\s+\(", text).group(1)
    assert tuple(n.strip() for n in decoupled.split(",")) == DECOUPLED
    table = text[text.index("| optimizer | learning rate | source of the default |"):].split("\n\n")[0]
    lrs = {}
    for row in table.splitlines()[2:]:
        name, lr = [c.strip() for c in row.strip("|").split("|")][:2]
        lrs[name] = float(re.search(r"\d[\d.]*(?:e-?\d+)?", lr).group())
    assert lrs == {n: DEFAULTS[n]["learning_rate"] for n in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_created_optimizer_supports_the_training_loop(name):
    net = paddle.nn.Linear(3, 2)
    opt = create(name, net.parameters())
    assert isinstance(opt, paddle.optimizer.Optimizer)
    assert opt.get_lr() == pytest.approx(hyperparams(name)["learning_rate"])
    opt.set_lr(0.5 * opt.get_lr())
    assert opt.get_lr() == pytest.approx(0.5 * hyperparams(name)["learning_rate"])
    before = net.weight.numpy().copy()
    for _ in range(2):  # ADOPT's first step only initialises its second moment
        net(paddle.ones([4, 3])).sum().backward()
        opt.step()
        opt.clear_grad()
    assert not np.array_equal(before, net.weight.numpy())
    assert net.weight.grad is None or float(net.weight.grad.abs().sum()) == 0.0
    assert opt.state_dict()["format"] == "train.optimizers/1"


def test_lookahead_defaults_follow_its_inner_optimizer():
    assert hyperparams("lookahead")["inner"] == "adam"
    hp = hyperparams("lookahead", inner="sgd", k=10)
    assert hp == {"inner": "sgd", "k": 10, "alpha": 0.5, **DEFAULTS["sgd"]}


@pytest.mark.parametrize("name,overrides,message", [
    ("adamm", {}, "unknown optimizer 'adamm'; choose from sgd, momentum"),
    ("adam", {"momentum": 0.9}, "unknown hyperparameter 'momentum' for adam; it takes learning_rate"),
    ("adam", {"learning_rate": 0}, r"invalid learning_rate: 0 \(must be > 0\)"),
    ("momentum", {"momentum": 1.0}, r"invalid momentum: 1.0 \(must be in \[0, 1\)\)"),
    ("rmsprop", {"epsilon": -1e-8}, "invalid epsilon: -1e-08"),
    ("sgd", {"weight_decay": float("nan")}, "invalid weight_decay: nan"),
    ("qhm", {"nu": 1.5}, r"invalid nu: 1.5 \(must be in \[0, 1\]\)"),
    ("qhadam", {"beta2": -0.1}, "invalid beta2: -0.1"),
    ("lion", {"learning_rate": "fast"}, "invalid learning_rate: 'fast'"),
    ("adabelief", {"epsilon": 0}, "invalid epsilon: 0"),
    ("lookahead", {"k": 0}, r"invalid k: 0 \(must be an integer >= 1\)"),
    ("lookahead", {"alpha": 2}, "invalid alpha: 2"),
    ("lookahead", {"inner": "lookahead"}, "invalid inner: 'lookahead'"),
    ("lookahead", {"beta": 0.9}, "unknown hyperparameter 'beta' for adam"),
    ("momentum", {"use_nesterov": "yes"}, "invalid use_nesterov: 'yes'"),
    ("nadam", {"momentum_decay": -1}, "invalid momentum_decay: -1"),
    ("asgd", {"batch_num": 0}, r"invalid batch_num: 0 \(must be an integer >= 1\)"),
    ("rprop", {"eta_plus": 1.0}, r"invalid eta_plus: 1.0 \(must be > 1\)"),
    ("rprop", {"weight_decay": 0.1}, "unknown hyperparameter 'weight_decay' for rprop"),
    ("sf_adamw", {"warmup_steps": -1}, r"invalid warmup_steps: -1 \(must be an integer >= 0\)"),
    ("sf_sgd", {"momentum": 1.0}, "invalid momentum: 1.0"),
    ("muon", {"ns_steps": 0}, "invalid ns_steps: 0"),
    ("adan", {"beta3": 1.5}, "invalid beta3: 1.5"),
    ("prodigy", {"d0": 0}, r"invalid d0: 0 \(must be > 0\)"),
    ("adopt", {"epsilon": -1.0}, "invalid epsilon: -1.0"),
    ("cautious", {"inner": "lookahead"}, "invalid inner: 'lookahead' \\(cautious wraps one of sgd"),
    ("cautious", {"beta": 0.9}, "unknown hyperparameter 'beta' for adamw"),
])
def test_bad_names_and_values_raise_value_error_naming_them(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        create(name, paddle.nn.Linear(3, 2).parameters(), **overrides)


def test_visualize_writes_the_plots(tmp_path):
    out = tmp_path / "img"
    p = run_cli("docs/tools/visualize_optimizers.py", "--out", out, "--optimizers", "sgd,qhm,lookahead", "--steps", "40")
    written = p.stdout.split()
    assert sorted(os.path.basename(w) for w in written) == ["optimizers_loss.png", "optimizers_rastrigin.png",
                                                           "optimizers_rosenbrock.png"]
    for w in written:
        img = np.asarray(Image.open(w).convert("L"), dtype=float)
        assert img.shape[0] > 150 and img.shape[1] > 400
        assert img.std() > 10  # a drawing, not a blank canvas
    assert not [f for f in os.listdir(out) if not f.endswith(".png")]  # no temp files left behind


def test_visualize_rejects_unknown_optimizer_in_one_line(tmp_path):
    p = run_cli("docs/tools/visualize_optimizers.py", "--out", tmp_path, "--optimizers", "adam,nope", check=False)
    assert p.returncode == 2
    assert "unknown optimizer(s) nope" in p.stderr and "Traceback" not in p.stderr
