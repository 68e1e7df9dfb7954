"""Training with the pretrained default: the fine-tuning regimes on cached features, checkpoints of the whole
network, the feature cache, and no network access at run time (export and demo of these runs: test_export.py,
test_serve.py)."""
from __future__ import annotations

import os

import numpy as np

from conftest import load_json, run_cli


def test_head_regime_trains_on_cached_features(effnet_run):
    cfg = load_json(os.path.join(effnet_run, "config.json"))
    s = cfg["settings"]
    assert (s["model"], s["finetune"], s["pretrained"]) == ("efficientnet_lite0", "head", True)
    f = cfg["data"]["features"]
    sizes = cfg["data"]["sizes"]
    assert f["images"] == 2 * (sizes["train"] + sizes["val"] + sizes["test"])  # and their mirror images (flip, test-time view)
    assert all(os.path.isfile(os.path.join(f["cache"], f"{sp}_flipped.npy")) for sp in sizes)
    x = np.load(os.path.join(f["cache"], "train.npy"), mmap_mode="r")
    assert x.shape == (sizes["train"], 1280) and x.dtype == np.float32
    res = load_json(os.path.join(effnet_run, "results.json"))["optimizers"]
    assert all(r["status"] == "done" for r in res.values())
    hp = cfg["hyperparams"]
    assert hp["sgd"]["learning_rate"] == 0.1 and hp["adam"]["learning_rate"] == 0.001  # the "head" profile


def test_checkpoints_hold_the_whole_network_with_the_frozen_part_unchanged(effnet_run):
    import paddle

    init = paddle.load(os.path.join(effnet_run, "init.pdparams"))
    best = paddle.load(os.path.join(effnet_run, "adam", "best.pdparams"))
    assert set(best) == set(init)
    frozen = [k for k in init if not k.startswith("fc.")]
    assert all(np.array_equal(best[k].numpy(), init[k].numpy()) for k in frozen)
    assert not np.array_equal(best["fc.weight"].numpy(), init["fc.weight"].numpy())  # the head learned


def test_feature_cache_is_shared_and_invalidated_by_what_determines_it(effnet_run, kaggle_fixture, tmp_path):
    import paddle

    from models.dataset import open_dataset
    from models.efficientnet import frozen_sha
    from train import features
    from train.data import load_splits
    from train.setup import Setup

    setup = Setup("efficientnet_lite0", 4, 64, "head", True)
    net = setup.network(paddle.load(os.path.join(effnet_run, "init.pdparams")))
    ds = open_dataset(kaggle_fixture)
    cache = os.path.join(os.environ["WHICH_OPTIMIZER_CACHE"])
    key = features.cache_key(ds.fingerprint(), setup.spec, setup.cut, frozen_sha(net, setup.cut))
    assert os.path.basename(load_json(os.path.join(effnet_run, "config.json"))["data"]["features"]["cache"]) == key
    splits, _ = load_splits(ds, setup.spec, cache)
    assert features.attach(splits, net, setup.cut, setup.spec, ds.fingerprint(), cache)["cache_hit"] is True
    # another seed's head does not change the frozen part: same features
    paddle.seed(1)
    other_head = Setup("efficientnet_lite0", 4, 64, "head", True).network(pretrained=True)
    assert frozen_sha(other_head, setup.cut) == frozen_sha(net, setup.cut)
    # what does change them: the data, the preprocessing, the cut point, the frozen weights
    keys = {key,
            features.cache_key("another-dataset", setup.spec, setup.cut, frozen_sha(net, setup.cut)),
            features.cache_key(ds.fingerprint(), Setup("efficientnet_lite0", 4, 72, "head").spec, setup.cut,
                               frozen_sha(net, setup.cut)),
            features.cache_key(ds.fingerprint(), setup.spec, setup.cut - 1, frozen_sha(net, setup.cut - 1))}
    state = net.state_dict()
    state["blocks.0.depthwise.bn._mean"] = state["blocks.0.depthwise.bn._mean"] + 1.0
    net.set_state_dict(state)
    keys.add(features.cache_key(ds.fingerprint(), setup.spec, setup.cut, frozen_sha(net, setup.cut)))
    assert len(keys) == 5


SOCKET_GUARD = '''
import socket
def _refuse(*args, **kwargs):
    raise OSError("test guard: this process tried to open a network socket")
socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
'''


def test_nothing_touches_the_network(kaggle_fixture, tmp_path):
    """Weights conversion, feature extraction, training and export with every socket connection refused
    (a sitecustomize in the children's path), from an empty cache: nothing is downloaded at run time."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(SOCKET_GUARD)
    env = {"PYTHONPATH": f"{guard}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    probe = run_cli("-c", "import socket; socket.create_connection(('127.0.0.1', 9))", check=False, env=env)
    assert "test guard" in probe.stderr  # the guard is active in children
    out, cache = tmp_path / "run", tmp_path / "cache"
    run_cli("train/run_all.py", "--data", kaggle_fixture, "--optimizers", "adam", "--epochs", "1", "--image-size", "48",
            "--budget", "0", "--out", out, "--cache-dir", cache, env=env)
    assert any(f.endswith(".pdparams") for f in os.listdir(cache / "pretrained"))  # converted here, offline
    run_cli("export/to_onnx.py", "--run", out, env=env)
    assert load_json(os.path.join(out, "export", "manifest.json"))["models"]["adam"]["status"] == "ok"
