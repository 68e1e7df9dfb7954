"""export/to_onnx.py: files, parity with the trained model, manifest contract, reruns and bad input.

Everything runs through the entry points (tests/conftest.py: tiny_run from train/run_all.py, tiny_export
from export/to_onnx.py). Tests that change a run work on a copy, so the shared fixtures stay as made.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, RunsCode, assert_interrupted, copy_run, kaggle_copy, load_json, one_line_error, read_manifest, run_cli
from util.fmt import pct

pytestmark = pytest.mark.slow


def hidden(folder) -> list:
    """The hidden files of an export folder (working folders, temp files) but its lock file, which stays."""
    from util.io import FolderLock

    return [f for f in os.listdir(folder) if f.startswith(".") and f != FolderLock.NAME]


def test_export_files_parity_and_manifest(tiny_run, tiny_export):
    import onnx
    import onnxruntime as ort

    import models
    from models.dataset import open_dataset

    m = read_manifest(tiny_export)
    with open(os.path.join(tiny_run, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    with open(os.path.join(tiny_run, "results.json"), encoding="utf-8") as f:
        results = json.load(f)["optimizers"]
    S, C = config["preprocessing"]["size"], len(config["classes"])
    assert m["format"] == 2 and m["classes"] == config["classes"] and m["model"] == config["settings"]["model"] == "smallcnn"
    assert os.path.samefile(os.path.join(tiny_export, m["run"]), tiny_run)
    assert m["preprocessing"] == config["preprocessing"] == models.preprocessing("smallcnn", S).as_dict()
    assert m["input"]["name"] == "x" and "shape" not in m["input"]  # the size is preprocessing.size alone
    assert m["device"]["paddle"] == "cpu" and m["device"]["onnx"] == "CPUExecutionProvider"
    assert list(m["models"]) == ["sgd", "adam"]
    # training named the winner on validation accuracy; export copies it
    with open(os.path.join(tiny_run, "results.json"), encoding="utf-8") as f:
        assert m["winner"] == json.load(f)["winner"] in ("sgd", "adam")
    assert m["winner_chosen_by"].startswith("results.json (training: best validation accuracy)")
    assert m["dataset"] == {"name": os.path.basename(config["data"]["root"].rstrip("/")), "synthetic": False}
    assert m["leaderboard"]["markdown"] == "board/leaderboard.md" and m["leaderboard"]["mistakes"] == "board/mistakes.png"
    assert set(m["leaderboard"]["plots"]) == {"board/compare.png", "board/leaderboard.png", "board/calibration.png",
                                              "board/confusion.png"}
    for name in ("leaderboard.md", "compare.png", "leaderboard.png", "calibration.png", "confusion.png", "mistakes.png"):
        with open(os.path.join(tiny_run, name), "rb") as a, open(os.path.join(tiny_export, "board", name), "rb") as b:
            assert a.read() == b.read()

    # The test split the export must have used: the dataset's test images minus those training skipped.
    skipped = {s["path"] for s in config["data"]["skipped"]}
    ds = open_dataset(config["data"]["root"])
    n_test = len([s for s in ds.split("test") if os.path.relpath(s.path, ds.root) not in skipped])
    assert n_test > 0

    for name, e in m["models"].items():
        assert e["status"] == "ok", e["status"]
        # Same predictions as the trained model, which is the model results.json scored.
        assert e["test_acc"]["paddle"] == e["test_acc"]["onnx"] == e["test_acc"]["trained"]
        assert e["test_acc"]["trained"] == pytest.approx(results[name]["test_acc"], abs=1e-9)
        assert e["test_images"] == n_test
        assert 0 <= e["max_abs_diff"]["paddle"] <= 1e-4 and 0 <= e["max_abs_diff"]["onnx"] <= 1e-4
        assert set(e["latency_ms"]) == {"dygraph_b1", "paddle_b1", "onnx_b1", "onnx-int8_b1"} and min(e["latency_ms"].values()) > 0
        assert set(e["throughput_ips"]) == {"paddle_b32", "onnx_b32", "onnx-int8_b32"}  # the deployed backends
        assert e["export_seconds"] > 0 and e["opset"] >= 13
        assert e["best_epoch"] == results[name]["best_epoch"]
        with open(os.path.join(tiny_run, name, "best.pdparams"), "rb") as f:
            assert e["checkpoint_sha256"] == hashlib.sha256(f.read()).hexdigest()

        onnx_path = os.path.join(tiny_export, e["onnx"])
        onnx.checker.check_model(onnx_path, full_check=True)
        model = onnx.load(onnx_path)
        assert [i.name for i in model.graph.input] == [m["input"]["name"]]
        dims = [d.dim_value or -1 for d in model.graph.input[0].type.tensor_type.shape.dim]
        assert dims == [-1, 3, S, S]  # dynamic batch, the preprocessing's size
        assert [o.name for o in model.graph.output] == [m["output"]["name"]]
        assert os.path.getsize(os.path.join(tiny_export, e["paddle"]["params"])) > 1000
        with open(os.path.join(tiny_export, e["paddle"]["model"]), encoding="utf-8") as f:
            json.load(f)  # the PIR program is JSON

    # The examples are readable test images and the ONNX file turns them into probabilities (dynamic batch).
    assert 0 < len(m["examples"]) <= 2 * C
    spec = models.Preprocessing.from_dict(m["preprocessing"])
    batch = np.stack([spec(os.path.join(tiny_export, p)) for p in m["examples"]])
    sess = ort.InferenceSession(os.path.join(tiny_export, m["models"]["adam"]["onnx"]), providers=["CPUExecutionProvider"])
    probs = sess.run(None, {m["input"]["name"]: batch})[0]
    assert probs.shape == (len(batch), C)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (probs >= 0).all()


def test_manifest_paths_are_relative_and_resolve(tiny_export):
    m = read_manifest(tiny_export)
    paths = [*m["examples"], m["leaderboard"]["markdown"], *m["leaderboard"]["plots"]]
    for e in m["models"].values():
        paths += [e["onnx"], e["paddle"]["model"], e["paddle"]["params"], e["int8"]["onnx"]]
    assert m["run"] == ".." and os.path.isdir(os.path.join(tiny_export, m["run"]))
    folder = os.path.realpath(tiny_export)
    for p in paths:  # every file the demo opens lies inside the export folder (it refuses anything else)
        assert p and not os.path.isabs(p) and "\\" not in p, p
        assert os.path.isfile(os.path.join(tiny_export, p)), p
        assert os.path.commonpath([os.path.realpath(os.path.join(tiny_export, p)), folder]) == folder, p
    # Examples live inside the export folder, so a copied run folder still has them.
    assert all(os.path.normpath(p).split(os.sep)[0] == "examples" for p in m["examples"])


def test_rerun_skips_unchanged_and_redoes_changed(tiny_run, tiny_export, tmp_path):
    import paddle

    run = copy_run(tiny_run, tmp_path / "run", keep_export=True)
    export = os.path.join(run, "export")
    before = {p: os.stat(os.path.join(export, p)).st_mtime_ns for p in ("manifest.json", "sgd/model.onnx", "adam/model.onnx")}

    p = run_cli("export/to_onnx.py", "--run", run)
    assert p.stdout.count("unchanged, not exported again") == 2
    assert {q: os.stat(os.path.join(export, q)).st_mtime_ns for q in before} == before

    # A new adam checkpoint (still valid) is exported again; sgd is not.
    ckpt = os.path.join(run, "adam", "best.pdparams")
    state = paddle.load(ckpt)
    state = {k: v * 1.01 if "weight" in k else v for k, v in state.items()}
    paddle.save(state, ckpt)
    p = run_cli("export/to_onnx.py", "--run", run)
    rows = {line.split()[0]: line for line in p.stdout.splitlines() if line.split() and line.split()[0] in ("sgd", "adam")}
    assert "unchanged" in rows["sgd"] and "unchanged" not in rows["adam"] and rows["adam"].rstrip().endswith("ok")
    assert os.stat(os.path.join(export, "sgd/model.onnx")).st_mtime_ns == before["sgd/model.onnx"]
    assert os.stat(os.path.join(export, "adam/model.onnx")).st_mtime_ns != before["adam/model.onnx"]
    m = read_manifest(export)
    assert m["models"]["adam"]["checkpoint_sha256"] != read_manifest(tiny_export)["models"]["adam"]["checkpoint_sha256"]
    assert m["models"]["adam"]["status"] == "ok"

    # --force with --optimizers redoes just that model and keeps the other's entry.
    p = run_cli("export/to_onnx.py", "--run", run, "--optimizers", "sgd", "--force")
    assert "not exported again" not in p.stdout and os.stat(os.path.join(export, "sgd/model.onnx")).st_mtime_ns != before["sgd/model.onnx"]
    assert list(read_manifest(export)["models"]) == ["sgd", "adam"]


def test_corrupt_checkpoint_among_good_ones(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run", keep_export=False)
    with open(os.path.join(run, "sgd", "best.pdparams"), "r+b") as f:
        f.truncate(300)
    p = run_cli("export/to_onnx.py", "--run", run, check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr + p.stdout
    rows = {line.split()[0]: line for line in p.stdout.splitlines() if line.split() and line.split()[0] in ("sgd", "adam")}
    assert "failed: sgd/best.pdparams is not a readable checkpoint" in rows["sgd"]
    assert rows["adam"].rstrip().endswith("ok")
    m = read_manifest(os.path.join(run, "export"))
    assert m["models"]["sgd"]["status"].startswith("failed:") and "onnx" not in m["models"]["sgd"]
    assert m["models"]["adam"]["status"] == "ok"
    assert os.path.isfile(os.path.join(run, "export", m["models"]["adam"]["onnx"]))
    assert not os.path.exists(os.path.join(run, "export", "sgd"))
    assert hidden(os.path.join(run, "export")) == []  # no temp folders left


def test_bad_input_is_one_line(tiny_run, kaggle_fixture, tmp_path):
    empty = tmp_path / "runs"
    empty.mkdir()
    one_line_error(run_cli("export/to_onnx.py", "--runs", empty, check=False), "no runs under", "train/run_all.py")
    one_line_error(run_cli("export/to_onnx.py", "--run", tmp_path / "nope", check=False), "does not exist")

    no_ckpt = tmp_path / "no_ckpt"
    no_ckpt.mkdir()
    shutil.copy(os.path.join(tiny_run, "config.json"), no_ckpt)
    one_line_error(run_cli("export/to_onnx.py", "--run", no_ckpt, check=False), "no best checkpoints")

    run = copy_run(tiny_run, tmp_path / "run", keep_export=False)
    one_line_error(run_cli("export/to_onnx.py", "--run", run, "--optimizers", "sgd,lion", check=False),
                          "no optimizer lion", "sgd, adam")
    one_line_error(run_cli("export/to_onnx.py", "--run", run, "--data", tmp_path / "gone", check=False),
                          "does not exist", "--data")
    # A copy of the dataset whose labels.csv marks no image as final validation: no test split.
    data = kaggle_copy(kaggle_fixture, tmp_path / "data", lambda r: {**r, "is_final_validation": "0"})
    one_line_error(run_cli("export/to_onnx.py", "--run", run, "--data", data, check=False), "no test images")
    one_line_error(run_cli("export/to_onnx.py", "--run", run, "--device", "gpu", check=False), "--device gpu")
    assert not os.path.exists(os.path.join(run, "export", "manifest.json"))


def test_parity_check_flags_any_difference():
    from export.exporter import check_parity

    rng = np.random.default_rng(0)
    ref = rng.dirichlet(np.ones(4), size=50).astype(np.float32)
    labels = ref.argmax(1)
    acc, diff, problems = check_parity({"dygraph": ref, "paddle": ref + 1e-6, "onnx": ref.copy()}, labels)
    assert problems == [] and acc == {"trained": 1.0, "paddle": 1.0, "onnx": 1.0} and diff["onnx"] == 0.0

    off = ref.copy()
    off[3] = np.roll(off[3], 1)  # one image predicted differently
    nan = ref.copy()
    nan[0, labels[0]] = np.nan  # argmax picks the NaN: same prediction, only the difference shows
    acc, diff, problems = check_parity({"dygraph": ref, "paddle": ref + 2e-4, "onnx": off}, labels)
    assert acc["onnx"] == pytest.approx(49 / 50)
    assert any(p.startswith("paddle max |Δprob| 2.00e-04") for p in problems)
    assert "onnx differs from the trained model on 1 of 50 test images" in problems
    assert check_parity({"dygraph": ref, "onnx": nan}, labels)[2] == ["onnx max |Δprob| nan > 0.0001"]


def test_a_model_that_fails_its_proof_is_marked_exits_1_and_is_never_served(tiny_run, tmp_path):
    """End to end: with a proof no backend can pass (--tolerance 0: not one bit of difference on any test image), every
    model is "parity failed" with its measured difference, export exits 1, and neither predict nor the demo offer it."""
    run = copy_run(tiny_run, tmp_path / "run")
    p = run_cli("export/to_onnx.py", "--run", run, "--tolerance", "0", check=False)
    assert p.returncode == 1 and "2 of 2 models failed" in p.stderr, p.stderr[-2000:]
    m = read_manifest(os.path.join(run, "export"))
    for name, e in m["models"].items():
        assert e["status"].startswith("parity failed: ") and "max |Δprob|" in e["status"] and "> 0" in e["status"], e
        assert max(e["max_abs_diff"].values()) > 0 and not os.path.exists(os.path.join(run, "export", name))
    q = run_cli("serve/predict.py", os.path.join(run, "export", m["examples"][0]), "--manifest",
                os.path.join(run, "export", "manifest.json"), check=False)
    assert q.returncode == 2 and "no servable model" in q.stderr and "parity failed" in q.stderr
    ok = run_cli("export/to_onnx.py", "--run", run)  # the default proof passes: the same models are served
    assert all(e["status"] == "ok" for e in read_manifest(os.path.join(run, "export"))["models"].values()), ok.stdout


def test_checkpoint_of_another_network_is_refused(tiny_run, tmp_path):
    import paddle

    import models
    from export.exporter import ModelFailed, load_network, open_run

    run = copy_run(tiny_run, tmp_path / "run", keep_export=False)
    paddle.save(models.build_model("smallcnn", 7).state_dict(), os.path.join(run, "sgd", "best.pdparams"))
    with pytest.raises(ModelFailed, match=r"does not fit smallcnn with 4 classes .* retrain sgd"):
        load_network(open_run(run), "sgd")


def test_bench_prints_ratios(tiny_export, tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run", keep_export=True)
    p = run_cli("bench/bench_export.py", "--run", run, "--seconds", "0.3")
    for needle in ("dygraph", "ONNX Runtime b1 latency / dygraph", "Paddle Inference b1 latency / dygraph", "export time per model",
                   "ONNX Runtime INT8 ÷ float: b1 latency", "2 of 2 INT8 models passed their proof"):
        assert needle in p.stdout, p.stdout
    ratio = float(p.stdout.split("ONNX Runtime b1 latency / dygraph")[1].split("=")[1].split()[0])
    assert ratio > 0


def test_winner_only_synthetic_run_with_mistakes(tiny_run, tmp_path):
    """results.json names adam the winner; the run was trained on synthetic pictures and has confusion and
    mistakes images: --winner exports adam alone, the manifest says who won and why, that the data was
    synthetic, and copies every leaderboard file into export/board/; the table uses percentages."""
    from PIL import Image

    run = copy_run(tiny_run, tmp_path / "run", keep_export=False)
    with open(os.path.join(run, "results.json"), encoding="utf-8") as f:
        results = json.load(f)
    results["winner"] = "adam"
    with open(os.path.join(run, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f)
    with open(os.path.join(run, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    config["data"]["layout"] = "synthetic"
    with open(os.path.join(run, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)
    for name in ("confusion.png", "mistakes.png"):  # stand-ins for what training draws
        Image.new("RGB", (30, 20), (10, 200, 10)).save(os.path.join(run, name))

    p = run_cli("export/to_onnx.py", "--run", run, "--winner")
    export = os.path.join(run, "export")
    m = read_manifest(export)
    assert list(m["models"]) == ["adam"] and not os.path.exists(os.path.join(export, "sgd"))
    assert m["winner"] == "adam" and m["winner_chosen_by"].startswith("results.json")
    assert m["dataset"]["synthetic"] is True
    assert m["leaderboard"] == {"markdown": "board/leaderboard.md",
                                "plots": ["board/compare.png", "board/leaderboard.png", "board/calibration.png", "board/confusion.png"],
                                "mistakes": "board/mistakes.png"}
    assert sorted(os.listdir(os.path.join(export, "board"))) == sorted(
        ["leaderboard.md", "compare.png", "leaderboard.png", "calibration.png", "confusion.png", "mistakes.png"])
    row = next(ln for ln in p.stdout.splitlines() if ln.startswith("adam"))
    e = m["models"]["adam"]
    assert row.split()[1:4] == [pct(e["best_val_acc"]), pct(e["test_acc"]["paddle"]), pct(e["test_acc"]["onnx"])], row
    assert e["best_val_acc"] == results["optimizers"]["adam"]["best_val_acc"]
    assert "winner: adam (chosen by results.json" in p.stdout and "SYNTHETIC" in p.stdout
    p = run_cli("export/to_onnx.py", "--run", run, "--winner", "--optimizers", "sgd", check=False)
    assert p.returncode == 2 and "--winner and --optimizers" in p.stderr


def test_export_names_the_winner_training_would_when_results_json_names_none(tiny_run, tmp_path):
    """Without a winner in results.json export applies training's one rule (models/ranking.py): validation chooses,
    never test; a tie on validation goes to the lower validation loss; a diverged optimizer never wins, even with
    the highest validation accuracy."""
    from models import ranking

    run = copy_run(tiny_run, tmp_path / "run", keep_export=False)
    path = os.path.join(run, "results.json")
    results = load_json(path)
    results.pop("winner", None)
    rows = results["optimizers"]
    rows["sgd"].update(best_val_acc=0.9, best_val_loss=0.40, test_acc=0.99)  # tied on validation, higher loss
    rows["adam"].update(best_val_acc=0.9, best_val_loss=0.30, test_acc=0.10)  # tied on validation, lower loss: wins
    with open(path, "w", encoding="utf-8") as f:
        json.dump(results, f)
    assert ranking.winner(rows) == "adam"
    run_cli("export/to_onnx.py", "--run", run, "--winner")
    m = read_manifest(os.path.join(run, "export"))
    assert list(m["models"]) == ["adam"] and m["winner"] == "adam"
    # adam diverged with the best validation accuracy of all: sgd wins, in training's rule and in export's
    rows["adam"].update(status="diverged at epoch 3", best_val_acc=0.95)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(results, f)
    assert ranking.winner(rows) == "sgd"
    run_cli("export/to_onnx.py", "--run", run)
    m = read_manifest(os.path.join(run, "export"))
    assert m["winner"] == "sgd" and m["winner_chosen_by"].startswith("export, among the exported models")


def test_whole_network_is_exported_and_proven(effnet_run, tmp_path):
    run = shutil.copytree(effnet_run, tmp_path / "run")
    p = run_cli("export/to_onnx.py", "--run", run)
    man = load_json(os.path.join(run, "export", "manifest.json"))
    assert man["model"] == "efficientnet_lite0" and man["preprocessing"]["resize"] == "center_crop"
    assert man["preprocessing"]["size"] == 64
    for name in ("sgd", "adam"):
        e = man["models"][name]
        assert e["status"] == "ok", e["status"]
        assert max(e["max_abs_diff"].values()) <= 1e-4
        res = load_json(os.path.join(run, "results.json"))["optimizers"][name]
        # the exported whole network scores what training measured through its cached features
        assert abs(e["test_acc"]["onnx"] - res["test_acc"]) <= 1.5 / e["test_images"]
    assert "Traceback" not in p.stderr


def test_exported_model_on_real_photos_matches_training(hym_export):
    man = load_json(os.path.join(hym_export, "manifest.json"))
    for e in man["models"].values():
        assert e["status"] == "ok" and e["test_acc"]["onnx"] >= 0.9 and e["test_acc"]["paddle"] == e["test_acc"]["trained"]


_STOP_INSIDE_JIT_SAVE = """
import os, signal, sys
from models import inference  # first: quiets Paddle
from util import runtime
import paddle
runtime.on_stop_signals()
class Net(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.fc = paddle.nn.Linear(4, 2)
    def forward(self, x):  # run by jit.save's translation, called from Paddle's C++
        if not paddle.in_dynamic_mode() and not getattr(self, "stopped", False):
            self.stopped = True
            os.kill(os.getpid(), signal.SIGTERM)
        return self.fc(x)
try:
    inference.save_static(Net(), sys.argv[1], [None, 4])
except KeyboardInterrupt:
    print("interrupted after", sorted(os.listdir(sys.argv[1])), file=sys.stderr)
    sys.exit(runtime.INTERRUPTED)
"""


def test_a_stop_signal_inside_jit_save_waits_for_it_to_finish(tmp_path):
    """A stop signal arriving while paddle.jit.save runs the model's Python from C++ is held until the save
    ends (an exception raised in there once aborted export in CI: 'std::bad_alloc', exit -6)."""
    script = tmp_path / "stop_inside_jit_save.py"  # a file: jit.save reads the forward's source
    script.write_text(_STOP_INSIDE_JIT_SAVE, encoding="utf-8")
    out = tmp_path / "saved"
    out.mkdir()
    p = subprocess.run([sys.executable, str(script), str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert p.returncode == 130, p.stderr[-2000:]
    assert p.stderr.strip() == "interrupted after ['inference.json', 'inference.pdiparams']", p.stderr[-2000:]


def test_export_data_that_is_a_file(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    one_line_error(run_cli("export/to_onnx.py", "--run", run, "--data", os.path.join(ROOT, "README.md"), check=False),
                   "is a file, not a dataset folder", "--data")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_export_stops_cleanly_on_sigterm_and_ctrl_c(tiny_run, tmp_path, sig):
    """Stopped while it converts the first model (inside paddle.jit.save / paddle2onnx)."""
    run = copy_run(tiny_run, tmp_path / "run")
    for _ in range(3):  # an export that ends before the signal lands is tried again, from nothing
        shutil.rmtree(os.path.join(run, "export"), ignore_errors=True)
        p = subprocess.Popen([sys.executable, "export/to_onnx.py", "--run", run], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.time() + 120
        while not glob.glob(os.path.join(run, "export", ".tmp-*", ".sgd.tmp")) and time.time() < deadline and p.poll() is None:
            time.sleep(0.01)
        time.sleep(0.3)  # well inside the conversion (jit.save alone takes longer than this)
        os.killpg(p.pid, sig) if sig == signal.SIGINT else p.send_signal(sig)
        out, err = p.communicate(timeout=60)
        if not os.path.exists(os.path.join(run, "export", "manifest.json")):
            break
    else:
        pytest.skip("the export ended before the signal could land, 3 times")
    assert_interrupted(p, out, err)
    assert not os.path.exists(os.path.join(run, "export", "manifest.json"))
    p = run_cli("export/to_onnx.py", "--run", run)  # the same command again finishes, leaving no working folders
    assert hidden(os.path.join(run, "export")) == []


# ---- issue 18: nobody else's files run code; one export at a time; a re-export never loses what works --------

def file_hashes(folder) -> dict:
    return {f: hashlib.sha256(open(os.path.join(folder, f), "rb").read()).hexdigest() for f in sorted(os.listdir(folder))}


def test_a_failed_re_export_keeps_the_working_model_and_a_checkpoint_never_runs_code(tiny_run, tiny_export, tmp_path):
    """Twice sgd's new export fails: in paddle2onnx (an opset it cannot write), then at its checkpoint, which runs
    os.system when unpickled. Both times sgd's files and manifest entry stay as they were (still served), the row
    says why, exit 1; the checkpoint's code never runs."""
    run = copy_run(tiny_run, tmp_path / "run", keep_export=True)
    export = os.path.join(run, "export")
    before, files = read_manifest(export), file_hashes(os.path.join(export, "sgd"))
    p = run_cli("export/to_onnx.py", "--run", run, "--optimizers", "sgd", "--force", "--opset", "99", check=False)
    assert p.returncode == 1 and "Traceback" not in p.stdout + p.stderr
    assert "sgd: the new export failed, so the manifest keeps its previous one (still served)" in p.stdout
    assert read_manifest(export)["models"] == before["models"] and file_hashes(os.path.join(export, "sgd")) == files

    marker = tmp_path / "code-ran"
    with open(os.path.join(run, "sgd", "best.pdparams"), "wb") as f:
        pickle.dump({"fc.weight": RunsCode(marker)}, f)
    p = run_cli("export/to_onnx.py", "--run", run, check=False)
    assert p.returncode == 1 and not marker.exists()
    row = next(ln for ln in p.stdout.splitlines() if ln.startswith("sgd "))
    assert "failed: sgd/best.pdparams is not a readable checkpoint (refused global posix.system" in row
    assert "nothing in it was run" in row
    assert read_manifest(export)["models"] == before["models"] and file_hashes(os.path.join(export, "sgd")) == files
    assert hidden(export) == []


def test_export_works_with_a_read_only_home(tiny_run, tiny_export, tmp_path):
    """Paddle's to_static writes under ~/.cache/paddle; a HOME where it cannot (read-only; as root, whom
    permissions do not stop, a file where its folder would be) once failed every model and dropped them all from
    the manifest. Now the export passes and HOME is left as it was."""
    run = copy_run(tiny_run, tmp_path / "run", keep_export=True)
    home = tmp_path / "home"
    (home / ".cache" / "paddle" / "dataset").mkdir(parents=True)
    (home / ".cache" / "paddle" / "to_static_tmp").write_text("not a folder\n")
    os.chmod(home, 0o555)
    try:
        p = run_cli("export/to_onnx.py", "--run", run, "--optimizers", "sgd", "--force", env={"HOME": str(home)}, check=False)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
        assert sorted(str(f.relative_to(home)) for f in home.rglob("*")) == \
            [".cache", ".cache/paddle", ".cache/paddle/dataset", ".cache/paddle/to_static_tmp"]
    finally:
        os.chmod(home, 0o755)
    assert read_manifest(os.path.join(run, "export"))["models"]["sgd"]["status"] == "ok"


def test_one_export_at_a_time(tiny_run, tmp_path):
    """A second export of the same run exits 2 with one line naming the first one's pid."""
    from util.io import FolderLock

    run = copy_run(tiny_run, tmp_path / "run")
    lock = FolderLock(os.path.join(run, "export"), "wait")
    try:
        one_line_error(run_cli("export/to_onnx.py", "--run", run, check=False), f"is being written by process {os.getpid()}",
                       "wait for that export to end")
    finally:
        lock.release()


# -- INT8 (export/int8.py) ---------------------------------------------------------------------------------------
def test_int8_models_are_proven_and_described_in_the_manifest(tiny_run, tiny_export):
    """tiny_export ran with --int8: beside each float model an INT8 QDQ model, calibrated on training photos, with
    the float model's test-time views and temperature (the same output), proven on the test split."""
    import onnx
    from onnx import TensorProto

    m = read_manifest(tiny_export)
    train = load_json(os.path.join(tiny_run, "config.json"))["data"]["counts"]["train"]
    for name, e in m["models"].items():
        q = e["int8"]
        assert q["status"] == "ok" and q["onnx"] == f"{name}/model.int8.onnx", q["status"]
        assert q["plan"] == {"method": "MinMax", "photos": 64, "seed": 0, "min_agreement": 0.995, "max_acc_change": 0.005,
                             "split": "train", "version": 1}
        assert q["calibration_photos"] == min(64, sum(train.values()))
        assert "classifier" in q["kept_float"] and "Softmax.0" in q["float_nodes"]
        assert q["agreement"] >= 0.995 and abs(e["test_acc"]["onnx-int8"] - e["test_acc"]["onnx"]) <= 0.005
        assert 0 <= e["max_abs_diff"]["onnx-int8"] < 1 and q["export_seconds"] > 0 and q["proof_seconds"] > 0
        path = os.path.join(tiny_export, q["onnx"])
        assert q["bytes"] == os.path.getsize(path) < os.path.getsize(os.path.join(tiny_export, e["onnx"]))
        graph = onnx.load(path).graph
        weights = {t.name: t.data_type for t in graph.initializer}
        convs = [n for n in graph.node if n.op_type == "Conv"]
        producer = {o: n for n in graph.node for o in n.output}
        assert convs and all(weights.get(producer[c.input[1]].input[0]) == TensorProto.INT8 for c in convs)
        assert [n.op_type for n in graph.node if n.output[0] == m["output"]["name"]] == ["Softmax"]  # float, last


def _int8_file(export: str, name: str) -> bytes:
    with open(os.path.join(export, name, "model.int8.onnx"), "rb") as f:
        return f.read()


def test_int8_calibration_never_reads_the_test_split(tiny_run, tiny_export, kaggle_fixture, tmp_path):
    """The same run exported from its dataset with half the test photos gone (rows and files) gives byte-identical
    INT8 models: calibration reads training photos only."""
    import csv

    data = shutil.copytree(kaggle_fixture, str(tmp_path / "data"))
    labels = os.path.join(data, "labels.csv")
    with open(labels, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    test = [r for r in rows if r["is_final_validation"] == "1"]
    gone = {r["id"] for r in test[::2]}
    for r in test[::2]:
        os.remove(os.path.join(data, r["path"].replace("\\", "/")))
    with open(labels, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(r for r in rows if r["id"] not in gone)
    run = copy_run(tiny_run, tmp_path / "run")
    p = run_cli("export/to_onnx.py", "--run", run, "--data", data, "--int8")
    m = read_manifest(os.path.join(run, "export"))
    assert "the dataset at" in p.stdout and m["models"]["sgd"]["test_images"] < read_manifest(tiny_export)["models"]["sgd"]["test_images"]
    for name in ("sgd", "adam"):
        assert _int8_file(os.path.join(run, "export"), name) == _int8_file(tiny_export, name)


def test_a_model_whose_int8_proof_fails_is_never_served_as_int8(tiny_run, tmp_path, monkeypatch):
    """One INT8 model spoiled after quantization (a weight scale 1000x too large): its proof fails, its file is removed,
    the float model is still exported, served and the default; predict refuses --backend onnx-int8 for it in one line."""
    import onnx
    from onnx import numpy_helper

    from export import exporter, int8
    from serve.manifest import load

    quantize = int8.quantize

    def spoiled(float_onnx, dest, *args):
        kept = quantize(float_onnx, dest, *args)
        if "sgd" in dest:
            model = onnx.load(dest)
            scale = next(t for t in model.graph.initializer if t.name.endswith("_scale") and t.dims)
            scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 1000, scale.name))
            onnx.save(model, dest)
        return kept

    monkeypatch.setattr(int8, "quantize", spoiled)
    run = copy_run(tiny_run, tmp_path / "run")
    report = exporter.export_run(run, exporter.Options(progress=False, int8=int8.Plan()))
    entries = report.manifest["models"]
    assert report.failed == [] and entries["sgd"]["status"] == "ok"
    assert entries["sgd"]["int8"]["status"].startswith("int8 parity failed: agrees with the trained model on")
    assert "onnx" not in entries["sgd"]["int8"] and entries["adam"]["int8"]["status"] == "ok"
    export = os.path.join(run, "export")
    assert not os.path.exists(os.path.join(export, "sgd", "model.int8.onnx"))
    served = load(os.path.join(export, "manifest.json")).models
    assert served["sgd"].int8_onnx is None and served["sgd"].backends == ["onnx", "paddle"]
    assert served["sgd"].fastest() in ("onnx", "paddle") and "onnx-int8" in served["adam"].backends

    photo = os.path.join(export, read_manifest(export)["examples"][0])
    p = run_cli("serve/predict.py", photo, "--manifest", os.path.join(export, "manifest.json"), "--model", "sgd",
                "--backend", "onnx-int8", check=False)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and \
        p.stderr.startswith("serve/predict.py: sgd has no ONNX Runtime INT8 model that passed its proof (int8 parity failed")
    p = run_cli("serve/predict.py", photo, "--manifest", os.path.join(export, "manifest.json"), "--model", "sgd", "--json")
    assert json.loads(p.stdout)["models"]["sgd"]["backend"] == served["sgd"].fastest()
