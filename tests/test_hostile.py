"""Files from elsewhere never run code or read ours, at the level of the one reader of each: checkpoints
(util.io.load_paddle), ONNX models and their outputs (models.inference.check_onnx, check_probabilities),
labels.csv (models.dataset), and the one-writer lock (util.io.FolderLock). The same probes through the
entry points are with each stage's tests (test_train_faults, test_export, test_predict, test_serve)."""
from __future__ import annotations

import csv
import os
import pickle
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, RunsCode, onnx_model


def same(a, b) -> bool:
    """Equal as paddle.load returns them: same container types and keys, tensors with equal names (or both
    generated ones) and values."""
    import paddle

    if isinstance(a, dict):
        return type(a) is type(b) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, paddle.Tensor):
        names = a.name == b.name or a.name.startswith("generated_tensor") and b.name.startswith("generated_tensor")
        return isinstance(b, paddle.Tensor) and names and a.dtype == b.dtype and np.array_equal(a.numpy(), b.numpy())
    return type(a) is type(b) and (a == b or (a != a and b != b))


# ---- checkpoints ---------------------------------------------------------------------------------------------

def test_load_paddle_returns_what_paddle_load_returns(tmp_path):
    """A state dict, a training state (model, optimizer state, numbers, history) and plain arrays: equal to
    paddle.load's, for the files paddle.save writes."""
    import paddle

    from train import optimizers
    from util.io import load_paddle, save_paddle

    net = paddle.nn.Sequential(paddle.nn.Linear(3, 4), paddle.nn.BatchNorm1D(4))
    opt = optimizers.create("adam", net.parameters(), learning_rate=0.1)
    net(paddle.randn([5, 3])).mean().backward()
    opt.step()
    files = {"best.pdparams": net.state_dict(), "init.pdparams": {k: v.numpy() for k, v in net.state_dict().items()},
             "last.pdstate": {"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "best": {"val_acc": 0.5},
                              "history": [{"epoch": 1, "val_loss": float("nan"), "lr": np.float32(0.1)}]}}
    for name, obj in files.items():
        save_paddle(obj, str(tmp_path / name))
        assert same(paddle.load(str(tmp_path / name)), load_paddle(str(tmp_path / name))), name
    raw = (tmp_path / "last.pdstate").read_bytes()
    assert same(paddle.load(str(tmp_path / "last.pdstate")), load_paddle("from rank 0", raw))


@pytest.mark.parametrize("payload", ["os.system", "eval", "object array", "ndarray subclass", "persistent id", "truncated"])
def test_load_paddle_refuses_anything_but_tensors_and_plain_data(tmp_path, payload):
    from util.io import CheckpointError, load_paddle

    path, marker = tmp_path / "best.pdparams", tmp_path / "ran"
    state = {"w": np.ones(3, np.float32)}
    if payload == "os.system":
        state["x"] = RunsCode(marker)
    elif payload == "eval":  # what paddle.save itself writes for a DenseTensor: eval('data', {...})
        state["x"] = _Eval(f"__import__('os').system('touch {marker}')")
    elif payload == "object array":
        state["x"] = np.array([1, "a"], dtype=object)
    elif payload == "ndarray subclass":
        state["x"] = np.ma.masked_array([1.0, 2.0], mask=[0, 1])
    with open(path, "wb") as f:
        if payload == "persistent id":
            class P(pickle.Pickler):
                def persistent_id(self, obj):
                    return "storage" if isinstance(obj, np.ndarray) else None
            P(f, protocol=4).dump(state)
        else:
            pickle.dump(state, f, protocol=4)
    if payload == "truncated":
        with open(path, "r+b") as f:
            f.truncate(60)
    with pytest.raises(CheckpointError) as e:
        load_paddle(str(path))
    message = str(e.value)
    assert str(path) in message and "\n" not in message
    assert ("damaged" if payload == "truncated" else "nothing in it was run") in message
    assert not marker.exists()


class _Eval:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (eval, (self.code,))


# ---- ONNX models and their outputs ---------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["../../../../../../../../etc/passwd", "/etc/passwd", "link"])
def test_onnx_data_outside_the_model_folder_is_refused_before_a_runtime_opens_it(tmp_path, where):
    from models import inference

    (tmp_path / "m").mkdir()
    if where == "link":
        os.symlink("/etc/passwd", tmp_path / "m" / "weights.bin")
        where = "weights.bin"
    path = onnx_model(tmp_path / "m" / "model.onnx", external=where)
    with pytest.raises(inference.Refused, match="outside the model's folder") as e:
        inference.OnnxRunner(path, inference.choose_device("cpu", 1))
    assert path in str(e.value) and "\n" not in str(e.value)


def test_onnx_data_inside_its_folder_and_the_shapes_the_manifest_says_are_accepted(tmp_path):
    from models import inference

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "b.bin").write_bytes(np.full(4, 0.25, np.float32).tobytes())
    path = onnx_model(tmp_path / "m" / "model.onnx", external="b.bin")
    runner = inference.OnnxRunner(path, inference.choose_device("cpu", 1), expect=("x", 32, 4))
    assert np.allclose(runner(np.zeros((2, 3, 32, 32), np.float32)), 0.25)
    for expect, words in ((("x", 64, 4), "(batch, 3, 64, 64)"), (("x", 32, 2), "(batch, 2)"), (("image", 32, 4), "'image'")):
        with pytest.raises(inference.Refused, match="the manifest says") as e:
            inference.check_onnx(path, *expect)
        assert words.replace("(batch", "[None").replace(")", "]") in str(e.value)


@pytest.mark.parametrize("probs, ok", [([[0.2, 0.8]], True), ([[7.6e31, 0.0]], False), ([[np.nan, 1.0]], False),
                                       ([[-0.1, 1.1]], False), ([[0.3, 0.3]], False), ([[0.5, 0.5, 0.0]], False)])
def test_outputs_must_be_probabilities(probs, ok):
    from models.inference import Refused, check_probabilities

    p = np.asarray(probs, np.float32)
    if ok:
        assert check_probabilities(p, 2, "m") is not None
    else:
        with pytest.raises(Refused, match="m gave"):
            check_probabilities(p, 2, "m")


# ---- labels.csv ----------------------------------------------------------------------------------------------

COLUMNS = ["id", "path", "is_bee", "is_wasp", "is_otherinsect", "is_other", "photo_quality", "is_validation", "is_final_validation"]


def labels(root, rows, encoding="utf-8"):
    """root/labels.csv with `rows` (path, bee, wasp, other_insect, other, val, test[, id]); every named file made."""
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "labels.csv"), "w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for i, (path, *flags) in enumerate(rows, 1):
            rid = flags.pop() if len(flags) == 7 else i
            w.writerow([rid, path, *flags[:4], 1, *flags[4:]])
            if not os.path.isabs(path) and ".." not in path:
                full = os.path.join(root, path.replace("\\", "/"))
                os.makedirs(os.path.dirname(full), exist_ok=True)
                open(full, "ab").close()
    return str(root)


def test_flags_are_read_one_way(tmp_path):
    from models.dataset import open_dataset

    root = labels(tmp_path / "d", [("bee1\\a.jpg", "1", "0", "0", "0", "0", "1"), ("bee1\\b.jpg", "1.0", "0.0", "", "0", "1.0", "0"),
                                   ("wasp1\\c.jpg", "false", "TRUE", "0", "0", "true", "0"), ("wasp1\\d.jpg", "0", " 1 ", "0", "0", "0", "0")])
    got = {os.path.basename(s.path): (s.label, s.split) for s in open_dataset(root).samples}
    assert got == {"a.jpg": (0, "test"), "b.jpg": (0, "val"), "c.jpg": (1, "val"), "d.jpg": (1, "train")}


@pytest.mark.parametrize("value", ["yes", "2", "0.5", "nan", "x1"])
def test_a_flag_that_is_not_0_or_1_is_one_line_naming_the_row(tmp_path, value):
    from models.dataset import DatasetError, open_dataset

    root = labels(tmp_path / "d", [("bee1\\a.jpg", "1", "0", "0", "0", "0", "0"), ("bee1\\b.jpg", "1", "0", "0", "0", value, "0")])
    with pytest.raises(DatasetError, match=f"line 3: is_validation is '{value}'; a flag is 0 or 1") as e:
        open_dataset(root)
    assert "\n" not in str(e.value)


def test_a_label_file_that_is_not_utf8_is_one_line(tmp_path):
    from models.dataset import DatasetError, open_dataset

    root = labels(tmp_path / "d", [("bee1\\abeille_é.jpg", "1", "0", "0", "0", "0", "0")], encoding="latin-1")
    with pytest.raises(DatasetError, match="is not UTF-8 text .*save it as UTF-8"):
        open_dataset(root)


def test_paths_outside_rows_without_one_class_two_splits_and_duplicate_ids_are_counted(tmp_path):
    from models.dataset import open_dataset

    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.jpg").write_bytes(b"not yours")
    root = labels(tmp_path / "d", [
        ("bee1\\a.jpg", "1", "0", "0", "0", "0", "0"), ("wasp1\\b.jpg", "0", "1", "0", "0", "0", "0"),
        ("..\\outside\\secret.jpg", "1", "0", "0", "0", "0", "1"), ("/etc/passwd", "0", "1", "0", "0", "0", "1"),
        ("bee1\\link.jpg", "1", "0", "0", "0", "0", "0"), ("bee1\\none.jpg", "0", "0", "0", "0", "0", "0"),
        ("bee1\\both.jpg", "1", "1", "0", "0", "0", "0"), ("bee1\\a.jpg", "1", "0", "0", "0", "0", "1"),
        ("wasp1\\c.jpg", "0", "1", "0", "0", "1", "0", "2")])  # id 2 again
    os.remove(os.path.join(root, "bee1", "link.jpg"))
    os.symlink(tmp_path / "outside" / "secret.jpg", os.path.join(root, "bee1", "link.jpg"))
    ds = open_dataset(root)
    assert ds.problems == {"outside": ["../outside/secret.jpg", "/etc/passwd", "bee1/link.jpg"], "no_class": ["bee1/none.jpg"],
                           "two_classes": ["bee1/both.jpg"], "in_two_splits": ["bee1/a.jpg"], "duplicate_ids": ["2"]}
    assert not [s for s in ds.samples if "secret" in os.path.realpath(s.path) or s.path == "/etc/passwd"]
    line = ds.problem_line()
    assert "3 path(s) outside the dataset folder (refused, never read)" in line and "1 file(s) in two splits (bee1/a.jpg)" in line
    assert "\n" not in line


def test_links_out_of_a_folder_layout_dataset_are_refused(tmp_path):
    from models.dataset import open_dataset

    for split in ("train", "val"):
        for c in ("ants", "bees"):
            (tmp_path / "d" / split / c).mkdir(parents=True)
            (tmp_path / "d" / split / c / "x.jpg").write_bytes(b"")
    (tmp_path / "secret.jpg").write_bytes(b"")
    os.symlink(tmp_path / "secret.jpg", tmp_path / "d" / "train" / "ants" / "y.jpg")
    ds = open_dataset(str(tmp_path / "d"))
    assert ds.problems["outside"] == ["train/ants/y.jpg"] and len(ds.samples) == 4


# ---- one writer per folder -----------------------------------------------------------------------------------

HOLD = "import sys, time; sys.path.insert(0, sys.argv[2]); from util.io import FolderLock; FolderLock(sys.argv[1], 'x'); print('held', flush=True); time.sleep(60)"


def test_a_folder_lock_names_its_holder_and_a_killed_holder_blocks_nothing(tmp_path):
    from util.io import Busy, FolderLock

    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), ROOT], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Busy, match=f"is being written by process {holder.pid}; wait"):
            FolderLock(str(tmp_path), "wait")
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: no clean-up runs
        holder.wait()
    lock = FolderLock(str(tmp_path), "wait")  # the kernel dropped the dead holder's lock
    lock.release()
