"""Shared fixtures: one tiny sweep and one export per test session, made through the users' entry points."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
HYMENOPTERA = os.path.join(SHARED, "data", "hymenoptera")
KAGGLE_LABELS = os.path.join(SHARED, "data", "bee_vs_wasp", "labels.csv")


def pytest_configure(config):
    """Every cache (decoded images, features, converted weights) goes to a temporary folder, never the checkout;
    the CLI runs of the tests inherit it."""
    config._cache_dir = tempfile.mkdtemp(prefix="which-optimizer-test-cache-")
    os.environ["WHICH_OPTIMIZER_CACHE"] = config._cache_dir


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "_cache_dir", ""), ignore_errors=True)


def run_cli(*args, check=True, timeout=600, env=None):
    """Run `python <script> args...` from the repo root as a user would; return the CompletedProcess."""
    e = dict(os.environ, PYTHONUNBUFFERED="1")
    e.update(env or {})
    p = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=e)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}\n--- stdout\n{p.stdout[-4000:]}\n--- stderr\n{p.stderr[-4000:]}")
    return p


@pytest.fixture(scope="session")
def kaggle_fixture(tmp_path_factory):
    """A small learnable Kaggle-layout dataset with the awkward files real data has
    (a corrupt JPEG, a grayscale JPEG, an RGBA PNG, backslash paths in labels.csv)."""
    from train.synthetic import make_dataset

    root = tmp_path_factory.mktemp("kaggle")
    make_dataset(str(root), n_per_class=36, seed=0, extras=True)
    return str(root)


@pytest.fixture(scope="session")
def tiny_run(kaggle_fixture, tmp_path_factory):
    """runs/<run>/ from `train/run_all.py` on the fixture: two optimizers, a few epochs."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    run_cli("train/run_all.py", "--data", kaggle_fixture, *TINY, "--out", out)
    return str(out)


@pytest.fixture(scope="session")
def tiny_export(tiny_run):
    """runs/<run>/export/ from `export/to_onnx.py --int8` on the tiny run."""
    run_cli("export/to_onnx.py", "--run", tiny_run, "--opset", "13", "--int8")
    return os.path.join(tiny_run, "export")

# ---- helpers every stage's tests share ---------------------------------------------------------------------
SMALL = ["--model", "smallcnn", "--image-size", "32", "--batch-size", "16", "--budget", "0"]  # training mechanics, fast
PLAIN = ["--budget", "0"]  # the plain sweep (every optimizer once at its default), not the richest protocol that fits
TINY = ["--optimizers", "sgd,adam", "--epochs", "3", *SMALL]  # the settings of tiny_run


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_manifest(export: str) -> dict:
    return load_json(os.path.join(export, "manifest.json"))


def copy_run(src: str, dst, keep_export: bool = False) -> str:
    """A copy of a run folder to change (the session fixtures stay as made)."""
    return shutil.copytree(src, str(dst), ignore=None if keep_export else shutil.ignore_patterns("export"))


def kaggle_copy(kaggle_fixture, dst, change) -> str:
    """A copy of the fixture dataset whose labels.csv rows go through change(row) -> row."""
    data = shutil.copytree(kaggle_fixture, str(dst))
    labels = os.path.join(data, "labels.csv")
    with open(labels, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(labels, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(change(dict(r)) for r in rows)
    return data


class RunsCode:
    """What a hostile checkpoint holds: unpickling it runs os.system, which touches `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def onnx_model(path, size=32, classes=4, bias=None, external=None) -> str:
    """A small valid ONNX model: float32 input x (N, 3, size, size) -> y (N, classes) = 0 * mean(x) + bias, the bias
    stored in the file, or (external) read by ONNX Runtime from `external`, a path relative to the model's folder."""
    from onnx import TensorProto, helper

    b = helper.make_tensor("b", TensorProto.FLOAT, [classes], bias if bias is not None else [1.0 / classes] * classes)
    if external:
        b.ClearField("float_data")
        b.data_location = TensorProto.EXTERNAL
        for k, v in (("location", external), ("offset", "0"), ("length", str(4 * classes))):
            e = b.external_data.add()
            e.key, e.value = k, v
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2, 3], keepdims=1),
             helper.make_node("Reshape", ["m", "shape"], ["m2"]), helper.make_node("Mul", ["m2", "zero"], ["z"]),
             helper.make_node("Add", ["z", "b"], ["y"])]
    graph = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])],
                              [b, helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 1]),
                               helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return str(path)


def saved_epochs(folder: str) -> list:
    """(epoch, seconds) of every epoch whose state resume can start from (last.pdstate's): a rerun that trains one
    of them again gives it another time, so an equal list after the rerun proves those epochs were not retrained."""
    from util.io import load_paddle

    last = os.path.join(folder, "last.pdstate")
    if not os.path.isfile(last):
        return []
    return [(h["epoch"], h["seconds"]) for h in load_paddle(last)["history"]]


def interrupt_mid_run(cmd: list, watch: str, done: str, sig=signal.SIGKILL, tries: int = 3, timeout: float = 180):
    """Start `python cmd...`, send `sig` once `watch` (a file training writes after an epoch) exists, and wait.
    Retried from scratch (`done`, a file written only when the work finished, is removed with its folder's run) when
    the signal came too late; skips the test after `tries` late attempts, instead of failing on a fast machine."""
    for _ in range(tries):
        proc = subprocess.Popen([sys.executable, *map(str, cmd)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while not os.path.exists(watch) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(sig)
        proc.wait(timeout=60)
        if os.path.exists(watch) and not os.path.exists(done):
            return proc
        out = cmd[cmd.index("--out") + 1]
        shutil.rmtree(str(out), ignore_errors=True)  # too late (or it never started): again, from nothing
    pytest.skip(f"could not interrupt {os.path.basename(str(cmd[0]))} mid-run in {tries} tries")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean(p):
    """No traceback, no Paddle C++ error block."""
    both = p.stdout + p.stderr
    assert "Traceback" not in both and "FatalError" not in both and "C++ Traceback" not in both, both[-3000:]


def one_line_error(p, *needles) -> str:
    """Exit status 2 and exactly one "error: " line naming every needle."""
    clean(p)
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, p.stderr
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


def assert_interrupted(p, out, err):
    both = out + err
    assert p.returncode == 130, (p.returncode, err[-2000:])
    assert "Traceback" not in both and "FatalError" not in both and "Termination signal" not in both, both[-3000:]
    assert "run the same command again to resume" in err


class App:
    """`python serve/app.py ...` running in the background until stop(), with its own TMPDIR (so the
    demo's temporary folder, and the machine-wide Gradio folder it must not use, are under log_dir)."""

    def __init__(self, *args, log_dir):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = os.path.join(str(log_dir), f"app-{self.port}.log")
        self.tmpdir = os.path.join(str(log_dir), f"tmp-{self.port}")
        os.makedirs(self.tmpdir)
        env = dict(os.environ, TMPDIR=self.tmpdir, PYTHONUNBUFFERED="1")
        env.pop("GRADIO_TEMP_DIR", None)
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "serve/app.py", "--port", str(self.port), *map(str, args)],
                                         cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve/app.py exited {self.proc.returncode}:\n{self.output()}")
            try:  # answering, and its start line printed (Gradio answers a moment before launch() returns)
                if httpx.get(self.url, timeout=2).status_code == 200 and "(removed on exit)" in self.output():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.stop()
        raise AssertionError(f"serve/app.py did not answer within 180 s:\n{self.output()}")

    def output(self, tail: int = 4000) -> str:
        with open(self.log) as f:
            return f.read()[-tail:]

    @property
    def temp(self) -> str:
        """The demo's own temporary folder, as its start line names it."""
        return re.search(r"temporary files in (\S+) \(removed on exit\)", self.output(100_000))[1]

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

    def signal(self, sig, timeout=30) -> float:
        """Send `sig`; the seconds the process took to exit."""
        t = time.monotonic()
        self.proc.send_signal(sig)
        self.proc.wait(timeout)
        return time.monotonic() - t

    def stop(self):
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def effnet_run(kaggle_fixture, tmp_path_factory):
    """The default model and regime (efficientnet_lite0, head on cached features) on the small fixture at 64 px."""
    out = tmp_path_factory.mktemp("effnet") / "run"
    run_cli("train/run_all.py", "--data", kaggle_fixture, "--optimizers", "sgd,adam", "--epochs", "3",
            "--image-size", "64", *PLAIN, "--out", out)
    return str(out)


@pytest.fixture(scope="session")
def hym_export(tmp_path_factory):
    """A run on real photos (adam, the default profile at 224 px: the export's proof on real photos at a third of the
    default's cost; test_train checks the default profile itself), exported."""
    if not os.path.isdir(HYMENOPTERA):
        pytest.skip("needs ../shared/data/hymenoptera (real photos), absent here")
    out = tmp_path_factory.mktemp("hym") / "run"
    run_cli("train/run_all.py", "--data", HYMENOPTERA, "--optimizers", "adam", "--image-size", "224", *PLAIN, "--out", out)
    run_cli("export/to_onnx.py", "--run", out)
    return os.path.join(out, "export")
