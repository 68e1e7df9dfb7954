"""Shared fixtures: one tiny sweep and one export per test session, made through the users' entry points."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

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
    run_cli("train/run_all.py", "--data", kaggle_fixture, "--optimizers", "sgd,adam", "--epochs", "3",
            "--model", "smallcnn", "--image-size", "32", "--batch-size", "16", "--out", out)
    return str(out)


@pytest.fixture(scope="session")
def tiny_export(tiny_run):
    """runs/<run>/export/ from `export/to_onnx.py` on the tiny run."""
    run_cli("export/to_onnx.py", "--run", tiny_run, "--opset", "13")
    return os.path.join(tiny_run, "export")
