"""Scale-out, end to end: data-parallel sweeps under `python -m paddle.distributed.launch` (CPU ranks,
gloo), two "nodes" on localhost, and `run_all.py --parallel 2` against the sequential sweep."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import models  # noqa: F401  (first: quiets Paddle's import-time warnings)
from conftest import ROOT, SMALL, free_port, interrupt_mid_run, load_json, run_cli, saved_epochs

CACHE = models.cache_root()  # run_all.py's default --cache-dir (a temporary folder under the tests)


def files(run):
    """Relative paths of every file training wrote under a run directory (not its export/: a session fixture may have
    exported the run already)."""
    return sorted(p for p in (os.path.relpath(os.path.join(d, f), run) for d, _, fs in os.walk(run) for f in fs)
                  if not p.startswith("export" + os.sep))


def launch(log_dir, *args, nproc=2, check=True, **kw):
    """`python -m paddle.distributed.launch --nproc_per_node N <args>` from the repo root, as a user runs it."""
    return run_cli("-m", "paddle.distributed.launch", "--nproc_per_node", nproc, "--log_dir", log_dir, *args, check=check, **kw)


def evaluate_checkpoint(path, data, size, split, tta="hflip"):
    """(loss, accuracy) of a saved checkpoint on one split, evaluated in this single process with the run's test-time
    views (the default --tta)."""
    import paddle

    from models.dataset import open_dataset
    from train.data import load_splits
    from train.loop import evaluate

    spec = models.preprocessing("smallcnn", size)
    splits, _ = load_splits(open_dataset(data), spec, CACHE)
    model = models.build_model("smallcnn", 4)
    model.set_state_dict(paddle.load(path))
    return evaluate(model, splits[split], spec, tta=tta)


def test_rank_shards_of_every_batch_make_up_the_single_process_batch():
    from train.data import Split, batches, shard

    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 255, (23, 4, 4, 3), dtype=np.uint8), np.arange(23))
    SPEC = models.Preprocessing(4)
    for world in (2, 3, 5, 9):  # contiguous, in rank order, covering all 7 items, sizes within one
        bounds = [shard(7, r, world) for r in range(world)]
        assert bounds[0][0] == 0 and bounds[-1][1] == 7 and all(p[1] == q[0] for p, q in zip(bounds, bounds[1:]))
        sizes = [hi - lo for lo, hi in bounds]
        assert max(sizes) - min(sizes) <= 1
    for batch, world in ((10, 2), (10, 3), (11, 2), (11, 3)):  # 23 % 11 == 1: the last batch leaves ranks empty
        single = list(batches(split, batch, SPEC, np.random.default_rng([4, 1]), augment=True))
        ranks = [list(batches(split, batch, SPEC, np.random.default_rng([4, 1]), augment=True, rank=r, world=world))
                 for r in range(world)]
        assert all(len(r) == len(single) for r in ranks)
        for i, (x, y) in enumerate(single):
            assert np.array_equal(np.concatenate([r[i][0] for r in ranks]), x)  # same images, same flips
            assert np.array_equal(np.concatenate([r[i][1] for r in ranks]), y)
        if batch == 11:
            assert [len(r[-1][1]) for r in ranks][-1] == 0


STEP_CHECK = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {root!r})
    import models, numpy as np, paddle
    from train import ranks as D
    from train.data import Split, batches
    from train.loop import train_step, train_step_dp

    D.join("cpu")
    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 255, (21, 16, 16, 3), dtype=np.uint8), rng.integers(0, 4, 21))
    SPEC = models.Preprocessing(16)

    def make():
        paddle.seed(0)
        m = models.build_model("smallcnn", 4)
        return m, paddle.optimizer.Momentum(0.01, parameters=m.parameters())

    ref, ref_opt = make()
    dp, dp_opt = make()
    net = D.wrap(dp)
    ref.eval(); dp.eval()  # BatchNorm on running statistics: then the gradients must agree
    rows = []
    for (x, y), (xs, ys) in zip(batches(split, 10, SPEC, np.random.default_rng(1), True),
                                batches(split, 10, SPEC, np.random.default_rng(1), True, D.RANK, D.WORLD)):
        loss, ok = train_step(ref, ref_opt, x, y)
        loss_sum, ok_dp, n = train_step_dp(net, dp_opt, xs, ys)
        dp.eval()
        rows.append([len(ys), n, loss, loss_sum / n, ok, ok_dp])
    diff = max(float((a - b).abs().max()) for a, b in zip(ref.parameters(), dp.parameters()))
    json.dump({{"rows": rows, "diff": diff}}, open(sys.argv[1] + f"/rank{{D.RANK}}.json", "w"))
""")


@pytest.mark.slow
def test_data_parallel_step_equals_the_one_process_step(tmp_path):
    """Batches of 10, 10 and 1 over 2 ranks: even shards, then one rank with nothing. The loss scaling
    must make DataParallel's averaged gradient the whole batch's, so both models stay equal."""
    script = tmp_path / "step_check.py"
    script.write_text(STEP_CHECK.format(root=ROOT))
    launch(tmp_path / "log", script, tmp_path)
    for rank in (0, 1):
        out = load_json(tmp_path / f"rank{rank}.json")
        assert [r[0] for r in out["rows"]] == [5, 5, 1 - rank]  # rank 1's last shard is empty
        for _, n, loss, loss_dp, ok, ok_dp in out["rows"]:
            assert loss == pytest.approx(loss_dp, rel=1e-5) and ok == ok_dp
        assert [r[1] for r in out["rows"]] == [10, 10, 1]
        assert out["diff"] < 1e-5


@pytest.fixture(scope="module")
def dp_run(kaggle_fixture, tmp_path_factory):
    """The tiny sweep, data-parallel over two CPU processes."""
    tmp = tmp_path_factory.mktemp("dp")
    p = launch(tmp / "log", "train/run_all.py", "--data", kaggle_fixture, "--optimizers", "sgd,adam", *SMALL, "--epochs", "3", "--out", tmp / "run")
    return str(tmp / "run"), p


@pytest.mark.slow
def test_data_parallel_sweep_on_two_cpu_processes(dp_run, tiny_run, kaggle_fixture):
    import paddle

    from train.ranks import weights_sha256

    run, proc = dp_run
    cfg = load_json(os.path.join(run, "config.json"))
    assert cfg["distributed"]["world_size"] == 2 and cfg["distributed"]["backend"] == "gloo"
    assert cfg["distributed"]["effective_batch_size"] == 16 and cfg["distributed"]["per_rank_batch_size"] == [8, 8]
    assert cfg["distributed"]["lr_scaling"].startswith("none")
    assert files(run) == files(tiny_run)  # exactly one set of outputs, the same as a single-process run's
    assert proc.stdout.count("run directory:") == 1  # only rank 0 reports
    res = load_json(os.path.join(run, "results.json"))["optimizers"]
    assert list(res) == ["sgd", "adam"]
    for name, r in res.items():
        assert r["status"] == "done" and r["best_val_acc"] > 0.8 and r["test_acc"] > 0.8, (name, r)  # it learns
        hist = load_json(os.path.join(run, name, "history.json"))
        assert [h["epoch"] for h in hist] == [1, 2, 3]
        for h in hist:  # both ranks held the same weights after every epoch
            assert len(h["rank_weights_sha256"]) == 2 and len(set(h["rank_weights_sha256"])) == 1
        last = paddle.load(os.path.join(run, name, "last.pdstate"))["model"]
        assert hist[-1]["rank_weights_sha256"][0] == weights_sha256(last)  # ... and they are the saved ones
        # the reduced validation/test metrics equal a single-process evaluation of the saved checkpoint
        best = os.path.join(run, name, "best.pdparams")
        assert evaluate_checkpoint(best, kaggle_fixture, 32, "val")[1] == r["best_val_acc"]
        assert hist[r["best_epoch"] - 1]["val_acc"] == r["best_val_acc"]
        test_loss, test_acc = evaluate_checkpoint(best, kaggle_fixture, 32, "test")
        assert test_acc == r["test_acc"] and test_loss == pytest.approx(r["test_loss"], rel=1e-6)


@pytest.mark.slow
def test_data_parallel_resume_under_the_launcher(dp_run, kaggle_fixture, tmp_path):
    """Stop the launcher mid-run (as Ctrl-C does), launch again: the same numbers as the uninterrupted run."""
    ref = dp_run[0]
    out = tmp_path / "run"
    cmd = ["-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(tmp_path / "log"),
           "train/run_all.py", "--data", kaggle_fixture, "--optimizers", "adam", *SMALL, "--epochs", "3", "--out", str(out)]
    hist = out / "adam" / "history.json"
    interrupt_mid_run(cmd, str(out / "adam" / "last.pdstate"), str(out / "adam" / "result.json"), signal.SIGTERM)  # both ranks stop
    saved = saved_epochs(str(out / "adam"))
    assert 1 <= len(saved) < 3
    launch(tmp_path / "log", "train/run_all.py", "--data", kaggle_fixture, "--optimizers", "adam", *SMALL, "--epochs", "3", "--out", out)
    assert saved_epochs(str(out / "adam"))[:len(saved)] == saved  # the saved epochs were not trained again
    a, b = load_json(os.path.join(ref, "adam", "result.json")), load_json(out / "adam" / "result.json")
    for key in ("status", "best_val_acc", "best_epoch", "test_acc", "test_loss"):
        assert a[key] == b[key], key
    ha, hb = load_json(os.path.join(ref, "adam", "history.json")), load_json(hist)
    assert [(h["train_loss"], h["val_loss"], h["rank_weights_sha256"]) for h in ha] == \
           [(h["train_loss"], h["val_loss"], h["rank_weights_sha256"]) for h in hb]
    # rank 0 checks the run's settings; a mismatch stops every rank with its one-line error
    p = launch(tmp_path / "log", "train/run_all.py", "--data", kaggle_fixture, "--optimizers", "adam", "--epochs", "5",
               "--image-size", "32", "--batch-size", "16", "--out", out, check=False)
    assert p.returncode == 2 and "epochs=3" in p.stdout + p.stderr


@pytest.mark.slow
def test_two_nodes_on_localhost_with_an_uneven_last_batch(tmp_path):
    """Two launchers joined by --nnodes 2 --master, each in its own folder (no shared run directory).
    52 training images in batches of 17: the last batch has 1 image, so node 1's rank has none."""
    from train.synthetic import make_dataset

    data = make_dataset(str(tmp_path / "data"), n_per_class=20, seed=1)
    master = f"127.0.0.1:{free_port()}"
    procs = []
    for node in (0, 1):
        cwd = tmp_path / f"node{node}"
        cwd.mkdir()
        cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nnodes", "2", "--master", master, "--rank", str(node),
               "--nproc_per_node", "1", "--log_dir", "log", os.path.join(ROOT, "train", "run_all.py"), "--data", data,
               "--optimizers", "adam", "--model", "smallcnn", "--epochs", "2", "--image-size", "16", "--batch-size", "17", "--out", "run",
               "--cache-dir", "cache"]
        procs.append(subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    run = tmp_path / "node0" / "run"
    assert not (tmp_path / "node1" / "run").exists()  # only global rank 0 writes the run directory
    cfg = load_json(run / "config.json")
    assert cfg["distributed"]["world_size"] == 2 and cfg["data"]["sizes"]["train"] == 52
    r = load_json(run / "results.json")["optimizers"]["adam"]
    assert r["status"] == "done"
    for h in load_json(run / "adam" / "history.json"):
        assert len(set(h["rank_weights_sha256"])) == 1
    import paddle

    from models.dataset import open_dataset
    from train.data import load_splits
    from train.loop import evaluate

    spec = models.preprocessing("smallcnn", 16)
    splits, _ = load_splits(open_dataset(data), spec, str(tmp_path / "node0" / "cache"))
    model = models.build_model("smallcnn", 4)
    model.set_state_dict(paddle.load(str(run / "adam" / "best.pdparams")))
    assert evaluate(model, splits["val"], spec)[1] == r["best_val_acc"]


@pytest.mark.slow
def test_parallel_sweep_equals_the_sequential_sweep(tiny_run, kaggle_fixture, tmp_path):
    import paddle

    out = tmp_path / "par"
    run_cli("train/run_all.py", "--data", kaggle_fixture, "--optimizers", "sgd,adam", *SMALL, "--epochs", "3", "--out", out, "--parallel", "2")
    assert files(out) == files(tiny_run)
    seq, par = load_json(os.path.join(tiny_run, "results.json"))["optimizers"], load_json(out / "results.json")["optimizers"]
    assert list(par) == ["sgd", "adam"]
    for name in ("sgd", "adam"):
        for key in ("status", "best_val_acc", "best_epoch", "test_acc", "test_loss", "epochs_run", "hyperparams"):
            assert seq[name][key] == par[name][key], (name, key)
        hs, hp = load_json(os.path.join(tiny_run, name, "history.json")), load_json(out / name / "history.json")
        drop = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
        assert drop(hs) == drop(hp)
        a, b = paddle.load(os.path.join(tiny_run, name, "best.pdparams")), paddle.load(str(out / name / "best.pdparams"))
        assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    # a second run finds everything done and starts no worker
    before = {n: os.path.getmtime(out / n / "result.json") for n in ("sgd", "adam")}
    p = run_cli("train/run_all.py", "--data", kaggle_fixture, "--optimizers", "sgd,adam", *SMALL, "--epochs", "3", "--out", out, "--parallel", "2")
    assert {n: os.path.getmtime(out / n / "result.json") for n in before} == before
    assert "adam" in p.stdout


def test_parallel_must_be_positive(tmp_path):
    p = run_cli("train/run_all.py", "--parallel", "0", "--out", tmp_path / "x", check=False)
    assert p.returncode == 2 and "--parallel must be at least 1" in p.stderr and "Traceback" not in p.stderr


def test_parallel_reports_a_failing_optimizer_like_the_sequential_sweep(kaggle_fixture, tmp_path):
    args = ["train/run_all.py", "--data", kaggle_fixture, "--optimizers", "adam", "--lr", "adam=-1", *SMALL, "--epochs", "3"]
    seq = run_cli(*args, "--out", tmp_path / "seq", check=False)
    par = run_cli(*args, "--out", tmp_path / "par", "--parallel", "2", check=False)
    assert seq.returncode == par.returncode == 1  # a failed optimizer: exit status 1, summed up at the end
    assert "1 of 1 optimizer(s) failed:" in seq.stderr and "1 of 1 optimizer(s) failed:" in par.stderr
    a = load_json(tmp_path / "seq" / "results.json")["optimizers"]["adam"]["status"]
    b = load_json(tmp_path / "par" / "results.json")["optimizers"]["adam"]["status"]
    assert a == b and a.startswith("failed: ValueError") and "learning_rate" in a
    assert "adam: failed: ValueError" in seq.stderr and "adam: failed: ValueError" in par.stderr
    assert not (tmp_path / "par" / "adam" / "result.json").exists()  # a rerun tries it again


def test_gpu_requested_without_one_is_a_one_line_error(tmp_path):
    from util import runtime

    if runtime.gpus():
        pytest.skip("this machine has a GPU")
    p = run_cli("train/run_all.py", "--device", "gpu", "--out", tmp_path / "x", check=False)
    assert p.returncode == 2 and "--device gpu: no CUDA device" in p.stderr and "Traceback" not in p.stderr
