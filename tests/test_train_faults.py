"""Faults a user meets, each probed through the command a user runs (train/run_all.py, export/to_onnx.py):
damaged files, bad paths, a full disk, broken links, splits without a class, kill -9, SIGTERM and Ctrl+C.
Each must end in a one-line error (exit 2), a named failure (exit 1), a clear recovery, or 130 when stopped;
never a traceback, a Paddle "FatalError" block, or a silently wrong result.

Tests that change a run work on a copy of the session's tiny run (tests/conftest.py); the ones that damage a
cache use a cache folder of their own.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import (ROOT, SMALL, TINY, RunsCode, assert_interrupted, clean, copy_run, kaggle_copy, load_json, one_line_error,
                      run_cli, saved_epochs)

pytestmark = pytest.mark.slow



def sweep(data, out, *more, check=True, **kw):
    return run_cli("train/run_all.py", "--data", data, *TINY, "--out", out, *more, check=check, **kw)


def mtimes(run):
    return {f: os.stat(os.path.join(run, f)).st_mtime_ns for f in ("results.json", "sgd/result.json", "adam/result.json",
                                                                 "sgd/best.pdparams", "adam/last.pdstate")}


# ---- 1. a damaged config.json / results.json / result.json -------------------------------------------------

@pytest.mark.parametrize("content", [b"\xff\xfe\x00\x9c garbage", b"", b"[1, 2, 3]\n"], ids=["binary", "empty", "not-settings"])
def test_damaged_config_json_is_named_with_the_way_out_and_nothing_is_overwritten(tiny_run, kaggle_fixture, tmp_path, content):
    run = copy_run(tiny_run, tmp_path / "run")
    with open(os.path.join(run, "config.json"), "wb") as f:
        f.write(content)
    before = mtimes(run)
    line = one_line_error(sweep(kaggle_fixture, run, check=False), "config.json is unreadable", "another --out",
                          "delete just config.json")
    assert content or "(empty)" in line
    assert mtimes(run) == before  # the run's results are untouched
    with open(os.path.join(run, "config.json"), "rb") as f:
        assert f.read() == content
    one_line_error(run_cli("export/to_onnx.py", "--run", run, check=False), "config.json is unreadable",
                   "run the training command that made it again")


def test_recovery_from_a_damaged_config_json_keeps_the_trained_optimizers(tiny_run, kaggle_fixture, tmp_path):
    """What the error says: the very command that made the run, after deleting config.json, trains nothing
    again and the run exports."""
    run = copy_run(tiny_run, tmp_path / "run")
    with open(os.path.join(run, "config.json"), "w") as f:
        f.write('{"settings": {"epochs": 3')  # cut short
    before = {k: v for k, v in mtimes(run).items() if k != "results.json"}
    os.remove(os.path.join(run, "config.json"))
    p = sweep(kaggle_fixture, run)
    clean(p)
    assert {k: v for k, v in mtimes(run).items() if k != "results.json"} == before  # nothing retrained
    assert load_json(os.path.join(run, "config.json"))["settings"] == load_json(os.path.join(tiny_run, "config.json"))["settings"]
    assert load_json(os.path.join(run, "results.json"))["optimizers"]["adam"]["test_acc"] == \
        load_json(os.path.join(tiny_run, "results.json"))["optimizers"]["adam"]["test_acc"]


def test_damaged_results_json_and_result_json(tiny_run, kaggle_fixture, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    with open(os.path.join(run, "results.json"), "w") as f:
        f.write("{not json")
    one_line_error(run_cli("export/to_onnx.py", "--run", run, check=False), "results.json is unreadable",
                   "rewrites results.json")
    with open(os.path.join(run, "adam", "result.json"), "w") as f:
        f.write('{"status": "do')
    sgd_before = os.stat(os.path.join(run, "sgd", "result.json")).st_mtime_ns
    p = sweep(kaggle_fixture, run)  # results.json is rewritten; adam's result.json is made again from its epochs
    clean(p)
    assert "adam/result.json is unreadable" in p.stderr and "made again from adam's saved epochs" in p.stderr
    ref = load_json(os.path.join(tiny_run, "results.json"))["optimizers"]
    got = load_json(os.path.join(run, "results.json"))["optimizers"]
    for name in ("sgd", "adam"):
        assert (got[name]["status"], got[name]["best_val_acc"], got[name]["test_acc"]) == \
            (ref[name]["status"], ref[name]["best_val_acc"], ref[name]["test_acc"])
    assert os.stat(os.path.join(run, "sgd", "result.json")).st_mtime_ns == sgd_before
    assert len(load_json(os.path.join(run, "adam", "history.json"))) == 3  # not trained again


# ---- 2. damaged caches are rebuilt ---------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["train_x.npy", "val_y.npy", "meta.json"])
def test_a_damaged_decode_cache_is_said_and_rebuilt(kaggle_fixture, tmp_path, damage):
    cache = str(tmp_path / "cache")
    first = str(tmp_path / "first")
    run_cli("train/run_all.py", "--data", kaggle_fixture, "--optimizers", "sgd", "--epochs", "1", *SMALL,
            "--cache-dir", cache, "--out", first)
    (key,) = os.listdir(os.path.join(cache, "images"))  # this test's own cache: one entry
    folder = os.path.join(cache, "images", key)
    path = os.path.join(folder, damage)
    if damage.endswith(".npy"):
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    else:
        with open(path, "wb") as f:
            f.write(b"\x00\x01")
    second = str(tmp_path / "second")
    p = run_cli("train/run_all.py", "--data", kaggle_fixture, "--optimizers", "sgd", "--epochs", "1", *SMALL,
                "--cache-dir", cache, "--out", second)
    clean(p)
    notes = [ln for ln in p.stderr.splitlines() if "decoded-image cache" in ln]
    assert len(notes) == 1 and "is damaged" in notes[0] and damage in notes[0] and "decoding the images again" in notes[0]
    a, b = (load_json(os.path.join(r, "results.json"))["optimizers"]["sgd"] for r in (first, second))
    assert (a["best_val_acc"], a["test_acc"], a["test_loss"]) == (b["best_val_acc"], b["test_acc"], b["test_loss"])
    assert np.load(os.path.join(folder, "train_x.npy"), mmap_mode="r").shape[0] == load_json(os.path.join(second, "config.json"))["data"]["sizes"]["train"]


def test_a_truncated_feature_cache_is_said_and_rebuilt(kaggle_fixture, tmp_path):
    """The default model's cached frozen-backbone features (efficientnet_lite0, head regime; 64 px to be quick)."""
    cache = str(tmp_path / "cache")
    args = ["--data", kaggle_fixture, "--optimizers", "adam", "--epochs", "1", "--image-size", "64", "--budget", "0", "--cache-dir", cache]
    first = str(tmp_path / "first")
    run_cli("train/run_all.py", *args, "--out", first)
    folder = load_json(os.path.join(first, "config.json"))["data"]["features"]["cache"]
    path = os.path.join(folder, "train_flipped.npy")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 1000)
    second = str(tmp_path / "second")
    p = run_cli("train/run_all.py", *args, "--out", second)
    clean(p)
    notes = [ln for ln in p.stderr.splitlines() if "feature cache" in ln]
    assert len(notes) == 1 and "train_flipped.npy" in notes[0] and "computing the features again" in notes[0]
    assert load_json(os.path.join(second, "config.json"))["data"]["features"]["cache_hit"] is False
    a, b = (load_json(os.path.join(r, "results.json"))["optimizers"]["adam"] for r in (first, second))
    assert (a["best_val_acc"], a["test_acc"]) == (b["best_val_acc"], b["test_acc"])


# ---- 3. broken links in the dataset; the fingerprint does not depend on how the data was opened --------------

def _folder_dataset(root, n=6):
    from PIL import Image

    rng = np.random.default_rng(0)
    for sp in ("train", "val", "test"):
        for c, colour in (("ants", (200, 40, 40)), ("bees", (40, 40, 200))):
            d = os.path.join(root, sp, c)
            os.makedirs(d)
            for i in range(n):
                img = np.clip(np.array(colour) + rng.normal(0, 20, (40, 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(os.path.join(d, f"{i}.jpg"))
    return str(root)


def test_link_loops_and_dangling_links_in_the_dataset_are_missing_files_not_a_crash(tmp_path):
    data = _folder_dataset(tmp_path / "data")
    os.symlink("loop.jpg", os.path.join(data, "train", "ants", "loop.jpg"))  # points at itself
    os.symlink(str(tmp_path / "nowhere.jpg"), os.path.join(data, "train", "bees", "dangling.jpg"))
    out = str(tmp_path / "run")
    p = run_cli("train/run_all.py", "--data", data, "--optimizers", "sgd", "--epochs", "1", *SMALL, "--out", out)
    clean(p)
    cfg = load_json(os.path.join(out, "config.json"))
    assert sorted(cfg["data"]["missing"]) == ["train/ants/loop.jpg", "train/bees/dangling.jpg"]
    assert cfg["data"]["sizes"] == {"train": 12, "val": 12, "test": 12}
    assert "2 missing image(s)" in p.stderr


def test_a_synthetic_run_exports_without_a_dataset_changed_note_and_writes_nothing_in_the_checkout(tmp_path):
    had = os.path.exists(os.path.join(ROOT, "data", "synthetic"))
    cache = str(tmp_path / "cache")
    out = str(tmp_path / "run")
    p = run_cli("train/run_all.py", "--data", "synthetic", "--optimizers", "sgd", "--epochs", "1", *SMALL,
                "--cache-dir", cache, "--out", out)
    clean(p)
    assert "SYNTHETIC" in p.stderr
    cfg = load_json(os.path.join(out, "config.json"))
    assert cfg["data"]["root"] == os.path.join(cache, "synthetic") and cfg["data"]["synthetic"] is True
    assert os.path.exists(os.path.join(ROOT, "data", "synthetic")) == had  # generated in the cache, not the checkout
    p = run_cli("export/to_onnx.py", "--run", out, env={"WHICH_OPTIMIZER_CACHE": cache})
    clean(p)
    assert "changed since training" not in p.stdout + p.stderr
    assert load_json(os.path.join(out, "export", "manifest.json"))["dataset"]["synthetic"] is True


# ---- 4. paths that are files, or cannot be written -----------------------------------------------------------

@pytest.mark.parametrize("flag, where, message", [
    ("--out", "file", "is a file, not a folder"),
    ("--out", "below-file", "cannot be made"),
    ("--cache-dir", "file", "is a file, not a folder"),
    ("--cache-dir", "below-file", "cannot be made"),
    ("--data", "file", "is a file, not a dataset folder"),
])
def test_paths_that_are_files_get_one_line_errors(kaggle_fixture, tmp_path, flag, where, message):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder\n")
    path = str(a_file) if where == "file" else str(a_file / "sub")
    args = {"--out": str(tmp_path / "run"), "--cache-dir": str(tmp_path / "cache"), "--data": kaggle_fixture}
    args[flag] = path
    p = run_cli("train/run_all.py", *TINY, *[x for kv in args.items() for x in kv], check=False)
    one_line_error(p, flag if flag != "--data" else "dataset folder", message)
    assert a_file.read_text() == "not a folder\n"


# ---- 5. failed optimizers: exit 1 and a summary; a damaged last.pdstate restarts -----------------------------

def test_an_optimizer_that_cannot_write_fails_and_the_sweep_exits_1_with_a_summary(kaggle_fixture, tmp_path):
    out = tmp_path / "run"
    (out / "adam" / "best.pdparams").mkdir(parents=True)  # its first checkpoint cannot be written there
    p = sweep(kaggle_fixture, out, check=False)
    clean(p)
    assert p.returncode == 1
    tail = p.stderr.strip().splitlines()[-3:]
    assert tail[0] == "1 of 2 optimizer(s) failed:" and tail[1].startswith("  adam: failed: IsADirectoryError")
    assert "run the same command again" in tail[2]
    res = load_json(out / "results.json")
    assert res["optimizers"]["sgd"]["status"] == "done" and res["winner"] == "sgd"
    os.rmdir(out / "adam" / "best.pdparams")
    sgd_done = os.stat(out / "sgd" / "result.json").st_mtime_ns
    p = sweep(kaggle_fixture, out)  # fixed: the same command finishes the sweep, status 0
    assert load_json(out / "results.json")["optimizers"]["adam"]["status"] == "done"
    assert os.stat(out / "sgd" / "result.json").st_mtime_ns == sgd_done


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="simulates a full disk with RLIMIT_FSIZE (Linux)")
def test_a_full_disk_fails_the_optimizer_it_hits_and_leaves_no_temp_files(tiny_run, kaggle_fixture, tmp_path):
    """Every write above 600 kB fails with EFBIG as on a full disk: adam's last.pdstate (weights and two moments)
    does; sgd's checkpoints and the reports fit."""
    import resource

    def full_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (600_000, 600_000))

    out = str(tmp_path / "run")
    e = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.run([sys.executable, "train/run_all.py", "--data", kaggle_fixture, *TINY, "--out", out], cwd=ROOT,
                       capture_output=True, text=True, timeout=600, env=e, preexec_fn=full_disk)
    clean(p)
    assert p.returncode == 1, p.stderr
    assert "adam: failed: OSError: [Errno 27] File too large" in p.stderr.strip().splitlines()[-2]
    assert not [f for _, _, files in os.walk(out) for f in files if f.endswith(".tmp")]
    sweep(kaggle_fixture, out)  # space again: adam trains, to what an undisturbed run gets
    ref = load_json(os.path.join(tiny_run, "results.json"))["optimizers"]["adam"]
    got = load_json(os.path.join(out, "results.json"))["optimizers"]["adam"]
    assert (got["status"], got["best_val_acc"], got["test_acc"]) == (ref["status"], ref["best_val_acc"], ref["test_acc"])


def test_a_diverged_optimizer_is_a_result_with_status_0(kaggle_fixture, tmp_path):
    p = run_cli("train/run_all.py", "--data", kaggle_fixture, "--optimizers", "sgd", "--epochs", "1", *SMALL,
                "--lr", "sgd=1e38", "--out", tmp_path / "run")
    assert p.returncode == 0 and "sgd diverged at epoch 1: a result of the comparison" in p.stderr.splitlines()[-1]


@pytest.mark.parametrize("damage", ["truncated", "not-a-state", "runs-code"])
def test_a_damaged_last_pdstate_trains_that_optimizer_again_saying_so(tiny_run, kaggle_fixture, tmp_path, damage):
    """runs-code: a last.pdstate whose unpickling calls os.system (from someone else's run folder) is refused,
    nothing in it runs."""
    import paddle

    run = copy_run(tiny_run, tmp_path / "run")
    last = os.path.join(run, "adam", "last.pdstate")
    if damage == "truncated":
        with open(last, "r+b") as f:
            f.truncate(1000)
    elif damage == "runs-code":
        with open(last, "wb") as f:
            pickle.dump({"model": RunsCode(tmp_path / "code-ran"), "epoch": 3}, f)
    else:
        paddle.save({"epoch": 3}, last)
    os.remove(os.path.join(run, "adam", "result.json"))  # as if killed during its last epoch
    p = sweep(kaggle_fixture, run)
    clean(p)
    notes = [ln for ln in p.stderr.splitlines() if "last.pdstate is unreadable" in ln]
    assert len(notes) == 1 and "adam trains again from epoch 1" in notes[0]
    assert not (tmp_path / "code-ran").exists()
    assert damage != "runs-code" or "(refused global posix.system" in notes[0]
    ref, got = (load_json(os.path.join(r, "results.json"))["optimizers"]["adam"] for r in (tiny_run, run))
    assert (got["status"], got["best_val_acc"], got["test_acc"], got["epochs_run"]) == \
        (ref["status"], ref["best_val_acc"], ref["test_acc"], 3)  # same initial weights and data order: same result


# ---- 6. kill -9 leaves no decode workers behind ---------------------------------------------------------------

@pytest.fixture(scope="module")
def big_dataset(tmp_path_factory):
    """1,400 copies (hard links) of one 640x480 JPEG per class folder: decoding takes seconds, making it takes none."""
    from PIL import Image

    root = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(0)
    for sp, n in (("train", 600), ("val", 100)):
        for c in ("a", "b"):
            d = root / sp / c
            d.mkdir(parents=True)
            Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(d / "0.jpg", quality=90)
            for i in range(1, n):
                os.link(d / "0.jpg", d / f"{i}.jpg")
    return str(root)


def _children(pid: int) -> set[int]:
    kids = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids |= {int(c) for c in f.read().split()}
        except OSError:
            pass
    return kids


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False


def _start_decoding(data, tmp_path, **popen):
    cmd = [sys.executable, "train/run_all.py", "--data", data, "--optimizers", "sgd", "--epochs", "1", *SMALL,
           "--workers", "2", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "run")]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    deadline, kids = time.time() + 120, set()
    while time.time() < deadline and len(kids) < 2 and p.poll() is None:
        kids = _children(p.pid)
        time.sleep(0.05)
    if p.poll() is not None or len(kids) < 2:
        p.kill()
        p.communicate()
        pytest.skip("the decode workers were not seen running (decoding ended, or never started, within the poll)")
    while time.time() < deadline and p.poll() is None and not all(_cpu_ticks(k) > 0 for k in kids):
        time.sleep(0.02)  # until both workers have really decoded something (not a fixed sleep)
    if p.poll() is not None:
        pytest.skip("decoding ended before it could be interrupted")
    return p, kids


def _cpu_ticks(pid: int) -> int:
    """CPU time (clock ticks, user + system) a process has used so far; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads the process tree from /proc (Linux)")
def test_kill_9_during_decoding_leaves_no_worker_running(big_dataset, tmp_path):
    p, kids = _start_decoding(big_dataset, tmp_path)  # returns once both workers are decoding
    p.kill()
    p.communicate()
    deadline = time.time() + 10
    while time.time() < deadline and any(_running(k) for k in kids):
        time.sleep(0.1)
    assert not [k for k in kids if _running(k)], "decode workers outlived their parent"


# ---- 7. stale temp files --------------------------------------------------------------------------------------

def _dead_pid() -> int:
    q = subprocess.Popen([sys.executable, "-c", "pass"])
    q.wait()
    return q.pid


def test_stale_temp_files_of_killed_writers_are_removed(tiny_run, kaggle_fixture, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    cache = tmp_path / "cache"
    dead = _dead_pid()
    stale = [os.path.join(run, f".results.json.{dead}-abcd1234.tmp"),
             os.path.join(run, "adam", f".last.pdstate.{dead}-k2j3h4g5.tmp"),
             os.path.join(run, "sgd", ".history.json.x8y7z6w5.tmp"),  # an older version's name, a day old
             str(cache / "images" / "0123456789abcdef" / f".train_x.npy.{dead}-qwertyui.tmp")]
    live = os.path.join(run, "sgd", f".curves.png.{os.getpid()}-asdfghjk.tmp")  # a writer still running
    frozen = cache / "features" / "fedcba9876543210" / f".frozen-{dead}-zxcvbnm1"
    frozen.mkdir(parents=True)
    (frozen / "model.onnx").write_bytes(b"half")
    for path in stale + [live]:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"half a file")
    os.utime(stale[2], (time.time() - 86400, time.time() - 86400))
    p = sweep(kaggle_fixture, run, "--cache-dir", cache)
    clean(p)
    assert "removed 5 temporary file(s) left by an interrupted run" in p.stderr
    assert not any(os.path.exists(s) for s in stale) and not frozen.exists()
    assert os.path.exists(live)


# ---- 8. a lost history.json ----------------------------------------------------------------------------------

def test_a_deleted_history_json_is_rebuilt_from_last_pdstate_else_reported(tiny_run, kaggle_fixture, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    os.remove(os.path.join(run, "sgd", "history.json"))
    p = sweep(kaggle_fixture, run)
    clean(p)
    assert "sgd/history.json is missing; rebuilt it from last.pdstate (3 epochs)" in p.stderr
    assert load_json(os.path.join(run, "sgd", "history.json")) == load_json(os.path.join(tiny_run, "sgd", "history.json"))

    os.remove(os.path.join(run, "sgd", "history.json"))
    os.remove(os.path.join(run, "sgd", "last.pdstate"))
    p = sweep(kaggle_fixture, run)
    clean(p)
    assert p.returncode == 0
    line = next(ln for ln in p.stderr.splitlines() if "sgd/history.json is missing" in ln)
    assert "no last.pdstate to rebuild it from" in line and "left out of compare.png" in line


# ---- 9. splits without a class, empty splits ---------------------------------------------------------------------

def test_a_split_without_a_class_is_reported_before_training(kaggle_fixture, tmp_path):
    # every validation wasp moves to the training split: validation says nothing about wasps
    data = kaggle_copy(kaggle_fixture, tmp_path / "data",
                       lambda r: {**r, "is_validation": "0"} if r["is_wasp"] == "1" and r["is_validation"] == "1" else r)
    p = run_cli("train/run_all.py", "--data", data, "--optimizers", "sgd", "--epochs", "1", *SMALL, "--out", tmp_path / "run")
    clean(p)
    lines = p.stderr.splitlines()
    warn = [i for i, ln in enumerate(lines) if ln.startswith("warning: the val split has no wasp image(s)")]
    first_epoch = next(i for i, ln in enumerate(lines) if "epoch 1/1" in ln)
    assert len(warn) == 1 and warn[0] < first_epoch


@pytest.mark.parametrize("split, change", [
    ("val", lambda r: {**r, "is_validation": "0"}),
    ("train", lambda r: {**r, "is_validation": "1"} if r["is_final_validation"] != "1" else r),
])
def test_an_empty_train_or_val_split_is_an_error(kaggle_fixture, tmp_path, split, change):
    data = kaggle_copy(kaggle_fixture, tmp_path / "data", change)
    p = run_cli("train/run_all.py", "--data", data, *TINY, "--out", tmp_path / "run", check=False)
    one_line_error(p, f"the {split} split of", "has no images")


# ---- 10. SIGTERM and Ctrl+C ---------------------------------------------------------------------------------------

def test_sigterm_during_training_stops_cleanly_and_the_same_command_resumes(kaggle_fixture, tmp_path):
    out = str(tmp_path / "run")
    cmd = [sys.executable, "-u", "train/run_all.py", "--data", kaggle_fixture, "--optimizers", "sgd", "--epochs", "200",
           *SMALL, "--out", out]
    def start_and_stop():
        """Run the command until it has printed its first epoch line, SIGTERM it; (that epoch, its output)."""
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        err, first = "", None
        deadline = time.time() + 120
        while first is None and time.time() < deadline and p.poll() is None:
            err += p.stderr.readline()
            first = next((int(m) for m in re.findall(r"sgd epoch (\d+)/200:", err)), None)
        p.send_signal(signal.SIGTERM)
        rest_out, rest_err = p.communicate(timeout=60)
        assert_interrupted(p, rest_out, err + rest_err)
        return first

    assert start_and_stop() == 1
    saved = saved_epochs(os.path.join(out, "sgd"))
    assert len(saved) >= 1  # finished epochs kept
    assert start_and_stop() == len(saved) + 1  # the same command goes on from the next epoch, not from epoch 1
    assert saved_epochs(os.path.join(out, "sgd"))[:len(saved)] == saved


_STOP_INSIDE_A_PROGRESS_BAR = """
import io, os, signal, sys
from util import runtime
from tqdm import tqdm
runtime.on_stop_signals()
class Terminal(io.StringIO):
    def isatty(self):  # asked inside tqdm.__init__, before the bar has its attributes
        os.kill(os.getpid(), signal.SIGTERM)
        return True
try:
    tqdm(total=10, file=Terminal(), disable=None)  # as every bar here: hidden when not a terminal
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(runtime.INTERRUPTED)
"""


def test_a_stop_signal_inside_a_constructor_prints_no_traceback_on_the_way_out():
    """SIGTERM can arrive while a progress bar is being built (seen in the test above, once in a few runs): the
    half-built bar fails in __del__, and Python would print 'Exception ignored ... Traceback' after our line."""
    p = subprocess.run([sys.executable, "-c", _STOP_INSIDE_A_PROGRESS_BAR], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 130, p.stderr
    assert p.stderr.strip() == "interrupted", p.stderr  # and no "Exception ignored ... Traceback" after it


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads the process tree from /proc (Linux)")
def test_ctrl_c_during_decoding_stops_parent_and_workers_cleanly(big_dataset, tmp_path):
    p, kids = _start_decoding(big_dataset, tmp_path, start_new_session=True)  # returns once both workers are decoding
    os.killpg(p.pid, signal.SIGINT)  # what the terminal does on Ctrl+C: the whole foreground process group
    out, err = p.communicate(timeout=60)
    assert_interrupted(p, out, err)
    deadline = time.time() + 10
    while time.time() < deadline and any(_running(k) for k in kids):
        time.sleep(0.1)
    assert not [k for k in kids if _running(k)]




# ---- 11. labels.csv from elsewhere, a second writer, a full --cache-dir (issue 18) ------------------------------

def test_label_rows_outside_the_dataset_are_never_read_and_every_doubtful_row_is_counted(kaggle_fixture, tmp_path):
    """Rows naming a photo outside the dataset (first in the file: export would copy it into the demo's examples)
    and /etc/passwd, a row with no class, one with two, a file in two splits, a duplicate id. The file in two
    splits stops training (exit 2) until --allow-split-overlap; then the rest are counted in config.json and named
    in one warning line, and the outside photo is neither trained on, listed, nor exported."""
    data = shutil.copytree(kaggle_fixture, str(tmp_path / "data"))
    os.makedirs(tmp_path / "outside")
    with open(os.path.join(data, "bee1", "img_0_00030.jpg"), "rb") as f:  # a bee photo, and after it: not yours
        (tmp_path / "outside" / "secret.jpg").write_bytes(f.read() + b"secret")
    for name in ("none.jpg", "both.jpg"):
        shutil.copy(os.path.join(data, "bee1", "img_0_00000.jpg"), os.path.join(data, "bee1", name))
    with open(os.path.join(data, "labels.csv"), encoding="utf-8") as f:
        head, *rows = f.read().splitlines()
    rows = ["9001,..\\outside\\secret.jpg,1,0,0,0,1,0,1", *rows, "9002,/etc/passwd,0,1,0,0,1,0,0",
            "9003,bee1\\none.jpg,0,0,0,0,1,0,0", "9004,bee1\\both.jpg,1,1,0,0,1,0,0",
            "9005,bee1\\img_0_00000.jpg,1,0,0,0,1,0,1", "1,bee1\\img_0_00001.jpg,1,0,0,0,1,0,0"]
    with open(os.path.join(data, "labels.csv"), "w", encoding="utf-8") as f:
        f.write("\n".join([head, *rows]) + "\n")
    out = str(tmp_path / "run")
    train = ["train/run_all.py", "--data", data, "--optimizers", "sgd", "--epochs", "1", *SMALL, "--out", out]
    one_line_error(run_cli(*train, check=False), "1 file(s) are listed in two splits (e.g. bee1/img_0_00000.jpg)",
                   "--allow-split-overlap")
    p = run_cli(*train, "--allow-split-overlap")
    clean(p)
    warnings = [ln for ln in p.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and "2 path(s) outside the dataset folder (refused, never read) (../outside/secret.jpg, " \
        "/etc/passwd); 1 row(s) with no class (bee1/none.jpg); 1 row(s) with two or more classes (bee1/both.jpg); " \
        "1 file(s) in two splits (bee1/img_0_00000.jpg); 1 duplicate id(s) (1)" in warnings[0], warnings
    cfg = load_json(os.path.join(out, "config.json"))
    assert {k: v["count"] for k, v in cfg["data"]["label_problems"].items()} == \
        {"outside": 2, "no_class": 1, "two_classes": 1, "in_two_splits": 1, "duplicate_ids": 1}
    assert "secret" not in json.dumps([cfg["data"]["skipped"], cfg["data"]["missing"]])
    run_cli("export/to_onnx.py", "--run", out)
    examples = os.path.join(out, "export", "examples")
    secret = (tmp_path / "outside" / "secret.jpg").read_bytes()
    assert all(open(os.path.join(examples, f), "rb").read() != secret for f in os.listdir(examples))


@pytest.mark.parametrize("damage, message", [
    (lambda text: text.replace(",1,0,0,0,1,0,0\n", ",1,0,0,0,1,yes,0\n", 1), "is_validation is 'yes'; a flag is 0 or 1"),
    (lambda text: text + "99999,bee1\\abeille_\xe9.jpg,1,0,0,0,1,0,0\n", "is not UTF-8 text"),
], ids=["yes-flag", "latin-1"])
def test_a_label_file_with_a_bad_flag_or_bytes_is_one_line(kaggle_fixture, tmp_path, damage, message):
    data = shutil.copytree(kaggle_fixture, str(tmp_path / "data"))
    with open(os.path.join(data, "labels.csv"), encoding="utf-8") as f:
        text = damage(f.read())
    with open(os.path.join(data, "labels.csv"), "w", encoding="latin-1") as f:
        f.write(text)
    one_line_error(sweep(data, tmp_path / "run", check=False), "labels.csv", message)


def test_a_second_training_on_the_same_out_exits_2_naming_the_first(kaggle_fixture, tmp_path):
    from util.io import FolderLock

    lock = FolderLock(str(tmp_path / "run"), "wait")  # this test process is the first writer
    try:
        one_line_error(sweep(kaggle_fixture, tmp_path / "run", check=False), f"is being written by process {os.getpid()}",
                       "another --out")
    finally:
        lock.release()
    assert not os.path.exists(tmp_path / "run" / "config.json")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="simulates a full disk with RLIMIT_FSIZE (Linux)")
def test_a_full_cache_dir_is_named(kaggle_fixture, tmp_path):
    """numpy says only 'N requested and M written' when the disk fills while the decoded images are cached."""
    import resource

    def full_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (700_000, 700_000))  # the initial weights fit, 64 px images do not

    cache = str(tmp_path / "cache")
    p = subprocess.run([sys.executable, "train/run_all.py", "--data", kaggle_fixture, "--optimizers", "sgd", *SMALL,
                        "--image-size", "64", "--cache-dir", cache, "--out", str(tmp_path / "run")], cwd=ROOT,
                       capture_output=True, text=True, timeout=600, preexec_fn=full_disk)
    one_line_error(p, "requested and", f"{cache}/images/")
