"""The sweep, end to end through `train/run_all.py`, plus the data pipeline pieces it relies on."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest
from PIL import Image

from conftest import HYMENOPTERA, KAGGLE_LABELS, PLAIN, interrupt_mid_run, load_json, run_cli, saved_epochs


def test_sweep_writes_the_run_directory_and_learns(tiny_run):
    cfg = load_json(os.path.join(tiny_run, "config.json"))
    res = load_json(os.path.join(tiny_run, "results.json"))["optimizers"]
    assert list(res) == ["sgd", "adam"]
    for name, r in res.items():
        assert r["status"] == "done"
        assert r["best_val_acc"] > 0.8, (name, r)  # 4 classes: chance is 0.25
        assert r["test_acc"] > 0.8, (name, r)
        hist = load_json(os.path.join(tiny_run, name, "history.json"))
        assert [h["epoch"] for h in hist] == [1, 2, 3]
        assert max(h["val_acc"] for h in hist) == r["best_val_acc"]
        assert hist[-1]["lr"] < hist[0]["lr"]  # cosine decay
        for f in ("best.pdparams", "last.pdstate", "curves.png"):
            assert os.path.getsize(os.path.join(tiny_run, name, f)) > 0
    # awkward files: the corrupt JPEG and the missing one are skipped and listed, grayscale/RGBA are used
    assert [s["path"] for s in cfg["data"]["skipped"]] == ["bee1/corrupt.jpg"]
    assert "not a readable image" in cfg["data"]["skipped"][0]["reason"]
    assert cfg["data"]["missing"] == ["other_noinsect/missing.jpg"]
    assert cfg["data"]["sizes"]["train"] == sum(cfg["data"]["counts"]["train"].values()) - 1
    assert cfg["classes"] == ["bee", "wasp", "other_insect", "other_noinsect"]
    assert cfg["hyperparams"]["adam"]["learning_rate"] > 0
    board = open(os.path.join(tiny_run, "leaderboard.md")).read()
    assert "| sgd |" in board and "| adam |" in board
    for plot in ("compare.png", "leaderboard.png"):
        with Image.open(os.path.join(tiny_run, plot)) as im:
            assert im.format == "PNG" and im.size[0] > 300


def test_same_initial_weights_for_every_optimizer(tiny_run):
    import paddle

    init = paddle.load(os.path.join(tiny_run, "init.pdparams"))
    for name in ("sgd", "adam"):
        last = paddle.load(os.path.join(tiny_run, name, "last.pdstate"))["model"]
        assert set(last) == set(init)
        assert any(not np.array_equal(last[k].numpy(), init[k].numpy()) for k in init)  # trained away from it


def test_rerun_of_a_finished_sweep_trains_nothing(tiny_run, kaggle_fixture):
    before = {n: os.path.getmtime(os.path.join(tiny_run, n, "result.json")) for n in ("sgd", "adam")}
    p = run_cli("train/run_all.py", "--data", kaggle_fixture, "--optimizers", "sgd,adam", "--epochs", "3",
                "--model", "smallcnn", "--image-size", "32", "--batch-size", "16", *PLAIN, "--out", tiny_run)
    assert {n: os.path.getmtime(os.path.join(tiny_run, n, "result.json")) for n in before} == before
    assert "adam" in p.stdout and "run directory" in p.stdout


def test_changed_settings_refuse_to_mix_into_a_run(tiny_run, kaggle_fixture):
    p = run_cli("train/run_all.py", "--data", kaggle_fixture, "--optimizers", "sgd", "--epochs", "5",
                "--model", "smallcnn", "--image-size", "32", "--batch-size", "16", "--out", tiny_run, check=False)
    assert p.returncode == 2 and "epochs=3" in p.stderr and "Traceback" not in p.stderr


def _sweep_args(data, out):
    return ["train/run_all.py", "--data", data, "--optimizers", "momentum,adam", "--epochs", "4",
            "--model", "smallcnn", "--image-size", "32", "--batch-size", "16", *PLAIN, "--out", out]


def test_kill_and_rerun_resumes_to_the_same_results(kaggle_fixture, tmp_path):
    ref, killed = str(tmp_path / "ref"), str(tmp_path / "killed")
    run_cli(*_sweep_args(kaggle_fixture, ref))
    # kill -9 mid-sweep: momentum finished, adam partway (at least one epoch saved)
    interrupt_mid_run(_sweep_args(kaggle_fixture, killed), os.path.join(killed, "adam", "last.pdstate"),
                      os.path.join(killed, "adam", "result.json"))
    done_before = os.path.getmtime(os.path.join(killed, "momentum", "result.json"))
    saved = saved_epochs(os.path.join(killed, "adam"))
    assert 1 <= len(saved) < 4
    p = run_cli(*_sweep_args(kaggle_fixture, killed))
    assert os.path.getmtime(os.path.join(killed, "momentum", "result.json")) == done_before  # not retrained
    assert saved_epochs(os.path.join(killed, "adam"))[:len(saved)] == saved  # adam's saved epochs not trained again
    trained = [int(e) for e in re.findall(r"adam epoch (\d+)/4:", p.stderr)]
    assert trained == list(range(len(saved) + 1, 5)) and "momentum epoch" not in p.stderr
    a, b = load_json(os.path.join(ref, "results.json"))["optimizers"], load_json(os.path.join(killed, "results.json"))["optimizers"]
    for name in ("momentum", "adam"):
        for key in ("status", "best_val_acc", "best_epoch", "test_acc", "test_loss"):
            assert a[name][key] == b[name][key], (name, key)
        ha, hb = (load_json(os.path.join(d, name, "history.json")) for d in (ref, killed))
        assert [(h["train_loss"], h["val_loss"]) for h in ha] == [(h["train_loss"], h["val_loss"]) for h in hb]


def test_a_diverging_optimizer_is_marked_and_the_sweep_goes_on(kaggle_fixture, tmp_path):
    out = str(tmp_path / "div")
    p = run_cli("train/run_all.py", "--data", kaggle_fixture, "--optimizers", "sgd,adam", "--epochs", "2",
                "--model", "smallcnn", "--image-size", "32", "--batch-size", "16", "--lr", "sgd=1e38", *PLAIN, "--out", out)
    res = load_json(os.path.join(out, "results.json"))["optimizers"]
    assert res["sgd"]["status"] == "diverged at epoch 1"
    assert res["adam"]["status"] == "done" and res["adam"]["test_acc"] > 0.5
    assert "diverged at epoch 1" in p.stdout
    assert load_json(os.path.join(out, "results.json"))["winner"] == "adam"  # a diverged optimizer never wins
    # the terminal: each epoch's validation accuracy, and the sweep's progress with the time left
    assert "[2/2] adam epoch 1/2: val acc " in p.stderr and "[2/2] adam epoch 2/2: val acc " in p.stderr
    assert "sweep: 1/2 optimizers done, 1 left, about " in p.stderr and "sweep: 2/2 optimizers done, 0 left" in p.stderr
    assert "winner: adam (chosen on validation" in p.stdout


@pytest.mark.skipif(not os.path.isdir(HYMENOPTERA), reason="needs ../shared/data/hymenoptera (real photos), absent here")
def test_default_profile_on_real_photos_is_far_above_the_majority_baseline(tmp_path):
    """What a user runs: the default profile (ImageNet EfficientNet-Lite0; on a CPU a new head on cached
    features), every optimizer, on real ants/bees photos. Always answering "bees" scores 41/76 = 53.9 %."""
    out, cache = str(tmp_path / "hym"), str(tmp_path / "cache")  # a cache of its own: other tests extract these features too
    p = run_cli("train/run_all.py", "--data", HYMENOPTERA, *PLAIN, "--out", out, "--cache-dir", cache)
    cfg = load_json(os.path.join(out, "config.json"))
    assert cfg["classes"] == ["ants", "bees"] and cfg["settings"]["model"] == "efficientnet_lite0"
    assert cfg["settings"]["finetune"] == "head"
    assert cfg["data"]["skipped"] == []  # every real photo (and the GIF) decodes
    assert cfg["data"]["sizes"] == {"train": 245, "val": 77, "test": 76}  # test: every other val image
    assert cfg["preprocessing"]["resize"] == "center_crop" and cfg["preprocessing"]["size"] == 320
    res = load_json(os.path.join(out, "results.json"))["optimizers"]
    from train.optimizers import NAMES

    assert set(res) == set(NAMES) and all(r["status"] == "done" for r in res.values()), {n: r["status"] for n, r in res.items()}
    acc = {n: r["test_acc"] for n, r in res.items()}
    assert min(acc.values()) >= 0.85 and max(acc.values()) >= 0.92, acc  # majority baseline: 0.539
    assert "Traceback" not in p.stderr
    assert cfg["data"]["features"]["cache_hit"] is False and cfg["data"]["features"]["images"] == 2 * (245 + 77 + 76)
    other = str(tmp_path / "other")  # another run on the same data and backbone reads the same features
    run_cli("train/run_all.py", "--data", HYMENOPTERA, "--optimizers", "sgd", *PLAIN, "--out", other, "--cache-dir", cache)
    assert load_json(os.path.join(other, "config.json"))["data"]["features"]["cache_hit"] is True


@pytest.mark.parametrize("args, message", [
    (["--data", "/no/such/folder"], "does not exist"),
    (["--optimizers", "sgd,nope"], "unknown optimizer(s) nope"),
    (["--lr", "adam:0.1"], "--lr: cannot read"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--data", "synthetic", "--model", "smallcnn", "--pretrained"], "smallcnn has no pretrained weights"),
    (["--model", "smallcnn", "--finetune", "head"], "--finetune head needs --model efficientnet_lite0"),
])
def test_bad_arguments_get_one_line_errors(args, message, tmp_path):
    p = run_cli("train/run_all.py", *args, "--out", tmp_path / "x", check=False)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr


@pytest.mark.skipif(not os.path.isfile(KAGGLE_LABELS), reason="needs ../shared/data/bee_vs_wasp/labels.csv (the real label file), absent here")
def test_kaggle_splits_of_the_real_label_file(tmp_path):
    """The official splits and classes of the real 11,421-row labels.csv (empty stand-in image files)."""
    from models.dataset import open_dataset

    root = tmp_path / "kaggle"
    root.mkdir()
    (root / "labels.csv").write_bytes(open(KAGGLE_LABELS, "rb").read())
    for line in open(KAGGLE_LABELS).read().splitlines()[1:]:
        rel = line.split(",")[1].replace("\\", "/")
        (root / rel).parent.mkdir(exist_ok=True)
        (root / rel).touch()
    ds = open_dataset(str(root))
    assert len(ds.samples) == 11421 and ds.missing == []
    assert ds.counts() == {
        "train": {"bee": 2195, "wasp": 3440, "other_insect": 1706, "other_noinsect": 598},
        "val": {"bee": 484, "wasp": 750, "other_insect": 357, "other_noinsect": 128},
        "test": {"bee": 504, "wasp": 753, "other_insect": 376, "other_noinsect": 130},
    }
    names = [os.path.basename(s.path) for s in ds.samples]
    assert len(names) - len(set(names)) == 7  # same file name under two class folders: both rows kept


def test_decode_cache_is_reused(kaggle_fixture, tmp_path):
    from models import Preprocessing
    from models.dataset import open_dataset
    from train.data import load_splits

    ds = open_dataset(kaggle_fixture)
    first, info1 = load_splits(ds, Preprocessing(24), str(tmp_path), workers=1)
    second, info2 = load_splits(ds, Preprocessing(24), str(tmp_path), workers=1)
    assert (info1["cache_hit"], info2["cache_hit"]) == (False, True)
    assert np.array_equal(first["val"].images, second["val"].images)
    assert first["train"].images.shape[1:] == (24, 24, 3) and first["train"].images.dtype == np.uint8
    _, info3 = load_splits(ds, Preprocessing(28), str(tmp_path), workers=1)  # another size is another cache entry
    assert info3["cache_hit"] is False
    _, info4 = load_splits(ds, Preprocessing(24, "center_crop", 0.875), str(tmp_path), workers=1)  # another crop too
    assert info4["cache_hit"] is False


@pytest.mark.parametrize("script, flags", [
    ("train/run_all.py", ["--data", "--optimizers", "--epochs", "--out", "--seed", "--device", "--tune", "--seeds", "--parallel"]),
    ("export/to_onnx.py", ["--run", "--optimizers", "--opset", "--force", "--device"]),
    ("serve/app.py", ["--manifest", "--port", "--backend", "--host"]),
    ("docs/tools/visualize_optimizers.py", ["--out"]),
])
def test_every_entry_point_explains_its_flags(script, flags):
    p = run_cli(script, "--help")
    assert p.stdout.startswith("usage:")
    for flag in flags:
        assert flag in p.stdout, flag


INSECTS4 = os.path.join(os.path.dirname(HYMENOPTERA), "insects4")


@pytest.mark.skipif(not os.path.isdir(INSECTS4), reason="needs ../shared/data/insects4 (real photos of the four classes), absent here")
def test_insects4_reads_like_a_real_kaggle_download():
    """The product's measuring set, through the Kaggle-layout reader users' downloads take: every row found (names with
    spaces and non-ASCII letters included), the official splits and classes, and such files decode."""
    from models import preprocessing
    from models.dataset import open_dataset

    ds = open_dataset(INSECTS4)
    assert ds.layout == "kaggle" and ds.missing == [] and len(ds.samples) == 2454
    counts = ds.counts()
    assert {sp: sum(c.values()) for sp, c in counts.items()} == {"train": 1846, "val": 304, "test": 304}
    assert counts["test"] == {"bee": 84, "wasp": 29, "other_insect": 83, "other_noinsect": 108}
    odd = [s for s in ds.samples if " " in os.path.basename(s.path) or not os.path.basename(s.path).isascii()]
    assert any(" " in os.path.basename(s.path) for s in odd) and any(not os.path.basename(s.path).isascii() for s in odd)
    spec = preprocessing("efficientnet_lite0", 64)
    for s in odd[:: max(1, len(odd) // 6)]:
        assert spec.load_array(s.path).shape == (64, 64, 3), s.path


def test_default_dataset_is_downloaded_and_found_one_folder_down(kaggle_fixture, tmp_path, monkeypatch):
    """No --data and no data/kaggle_bee_vs_wasp: kagglehub downloads the public dataset (online users); its archive
    unpacks into kaggle_bee_vs_wasp/ under the folder kagglehub returns, so labels.csv is found one folder down."""
    import shutil

    import kagglehub

    from models.dataset import open_dataset
    from train import data

    download = tmp_path / "kagglehub-cache"
    shutil.copytree(kaggle_fixture, download / "kaggle_bee_vs_wasp")
    asked = []
    monkeypatch.setattr(kagglehub, "dataset_download", lambda handle: asked.append(handle) or str(download))
    monkeypatch.setattr(data, "DEFAULT_DATA", "/no/such/kaggle_bee_vs_wasp")
    ds, note = data.resolve(None)
    assert asked == ["jerzydziewierz/bee-vs-wasp"] and note == ""
    assert ds.root == str(download / "kaggle_bee_vs_wasp") and ds.layout == "kaggle"
    here = open_dataset(kaggle_fixture)
    assert [(os.path.relpath(s.path, ds.root), s.label, s.split) for s in ds.samples] == \
        [(os.path.relpath(s.path, here.root), s.label, s.split) for s in here.samples]


def test_offline_default_dataset_names_the_options(monkeypatch):
    """No --data and no data/kaggle_bee_vs_wasp: the kagglehub download is tried; offline, one line with the options."""
    import kagglehub

    from models.dataset import DatasetError
    from train import data

    def offline(handle):
        assert handle == "jerzydziewierz/bee-vs-wasp"
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(kagglehub, "dataset_download", offline)
    monkeypatch.setattr(data, "DEFAULT_DATA", "/no/such/kaggle_bee_vs_wasp")
    with pytest.raises(DatasetError) as e:
        data.resolve(None)
    msg = str(e.value)
    assert "--data DIR" in msg and "--data synthetic" in msg and "kaggle_bee_vs_wasp" in msg and "\n" not in msg


def test_schedule_free_is_evaluated_and_checkpointed_at_its_average(kaggle_fixture, tmp_path):
    """sf_sgd keeps the gradient point y in the parameters while it trains; every epoch is judged and saved at its
    average x (opt.eval(), BatchNorm statistics recomputed at x): last.pdstate's weights are the optimizer's saved x,
    not y = (1 - β)·z + β·x, and resuming from them continues at y (the run finishes with the same numbers)."""
    import models
    from util.io import load_paddle

    out = tmp_path / "sf"
    run_cli("train/run_all.py", "--data", kaggle_fixture, "--optimizers", "sf_sgd", "--epochs", "2", "--model", "smallcnn",
            "--image-size", "32", "--batch-size", "16", *PLAIN, "--out", out)
    last = load_paddle(str(out / "sf_sgd" / "last.pdstate"))
    state = last["optimizer"]["state"]  # keyed by the position of each parameter in the model's parameters()
    beta = load_json(str(out / "config.json"))["hyperparams"]["sf_sgd"]["momentum"]
    names = [n for n, _ in models.build_model("smallcnn", 4).named_parameters()]  # BatchNorm statistics among them
    assert len(names) == len(last["optimizer"]["params"])
    trained = [(i, n) for i, n in enumerate(names) if f"{i}:x" in state]  # what the optimizer updates
    assert len(trained) == 14  # 4 convs, 4 BatchNorm scales and shifts, the classifier's weight and bias
    for i, name in trained:
        x, z = np.asarray(state[f"{i}:x"]), np.asarray(state[f"{i}:z"])
        w = np.asarray(last["model"][name])
        assert np.array_equal(w, x), name  # saved at x, bit for bit
        assert not np.allclose(w, (1 - beta) * z + beta * x), name  # ... and x is not y here
    r = load_json(str(out / "sf_sgd" / "result.json"))
    assert r["status"] == "done" and r["best_val_acc"] > 0.5 and r["test_acc"] > 0.5
    if r["best_epoch"] == 2:
        best = load_paddle(str(out / "sf_sgd" / "best.pdparams"))
        assert all(np.array_equal(np.asarray(best[k]), np.asarray(v)) for k, v in last["model"].items())
