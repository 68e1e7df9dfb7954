"""Confidence that means what it says: the temperature and the "not sure" threshold are fitted on validation only,
baked into every exported model, and shown the same way by the page and serve/predict.py."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import TINY, kaggle_copy, load_json, read_manifest, run_cli
from train import calibration


def _sample(n, temperature, seed=0, classes=4):
    """Logits and labels drawn from softmax(logits / temperature): a model whose right temperature is known."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, size=(n, classes))
    p = np.exp(calibration.scaled(z, temperature))
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return z - np.log(np.exp(z).sum(1, keepdims=True)), labels


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with(true_t):
    logp, labels = _sample(6000, true_t)
    t = calibration.fit_temperature(logp, labels)
    assert t == pytest.approx(true_t, rel=0.1)
    after = np.exp(calibration.scaled(logp, t))
    assert (after.argmax(1) == logp.argmax(1)).all()  # the answer never changes, only how sure it is
    assert calibration.ece(after, labels) < 0.02
    over = np.exp(calibration.scaled(logp, true_t / 3))  # three times too sharp
    assert calibration.ece(over, labels) > 3 * calibration.ece(after, labels)
    assert calibration.nll(calibration.scaled(logp, t), labels) <= calibration.nll(calibration.scaled(logp, true_t / 3), labels)


def test_ece_and_confident_mistakes_on_a_hand_made_case():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])
    # bin 9: conf 0.95, accuracy 0.5; bin 6: conf 0.6, accuracy 1.0 -> 0.5 * 0.45 + 0.5 * 0.4
    assert calibration.ece(probs, labels) == pytest.approx(0.425)
    assert calibration.confident_mistakes(probs, labels) == pytest.approx(0.25)
    assert calibration.selective(probs, labels, 0.9) == {"coverage": 0.5, "accuracy": 0.5}


def test_not_sure_threshold_is_the_lowest_that_keeps_the_answers_precise():
    # 100 answers at 0.99..0.50: right except the two least confident and one at 0.80
    conf = np.linspace(0.99, 0.50, 100)
    probs = np.stack([conf, 1 - conf], 1)
    labels = np.zeros(100, int)
    labels[[98, 99]] = 1
    assert calibration.abstain_threshold(probs, labels, 0.99) == pytest.approx(conf[97])
    labels[40] = 1  # one mistake among the confident ones: 1 of 41 wrong keeps 97.6% -> the threshold rises above it
    assert calibration.abstain_threshold(probs, labels, 0.99) == pytest.approx(conf[39])
    assert calibration.abstain_threshold(probs, np.zeros(100, int), 0.99) == 0.0  # always right: never "not sure"
    assert calibration.abstain_threshold(probs, np.ones(100, int), 0.99) == 1.0  # never right: always "not sure"


def _shuffled_test_labels(row):
    """The same images, every test image's class moved one on (bee -> wasp -> ... -> bee)."""
    if row["is_final_validation"] == "1":
        cols = ["is_bee", "is_wasp", "is_otherinsect", "is_other"]
        flags = [row[c] for c in cols]
        row.update(zip(cols, flags[-1:] + flags[:-1]))
    return row


@pytest.mark.slow
def test_calibration_is_fitted_on_validation_only(tiny_run, kaggle_fixture, tmp_path):
    """A run whose test labels are all wrong gets the same temperature and threshold: the test split never fits them."""
    data = kaggle_copy(kaggle_fixture, tmp_path / "data", _shuffled_test_labels)
    out = tmp_path / "run"
    run_cli("train/run_all.py", "--data", data, *TINY, "--out", out)
    for name in ("sgd", "adam"):
        a, b = (load_json(os.path.join(r, name, "result.json")) for r in (tiny_run, out))
        assert a["calibration"]["temperature"] == b["calibration"]["temperature"] != 1.0
        assert a["calibration"]["threshold"] == b["calibration"]["threshold"]
        assert a["calibration"]["val"] == b["calibration"]["val"]
        assert a["test_acc"] != b["test_acc"] and a["calibration"]["test"] != b["calibration"]["test"]
    cfg = load_json(os.path.join(out, "config.json"))
    assert cfg["settings"]["tta"] == "hflip" and "validation" in cfg["calibration"]["temperature"]


@pytest.mark.slow
def test_exported_models_answer_the_calibrated_probabilities_training_measured(tiny_run, tiny_export):
    """The temperature and the test-time views are inside the exported files: ONNX Runtime and Paddle Inference give
    the probabilities of training's test_predictions.json (calibrated), not the raw softmax."""
    import onnxruntime as ort

    from models.dataset import open_dataset
    from models.inference import TTA

    m = read_manifest(tiny_export)
    assert m["tta"] == "hflip" and set(TTA) >= {m["tta"]}
    spec_path = load_json(os.path.join(tiny_run, "config.json"))["preprocessing"]
    import models

    spec = models.Preprocessing.from_dict(spec_path)
    ds = open_dataset(load_json(os.path.join(tiny_run, "config.json"))["data"]["root"])
    skipped = {s["path"].replace("\\", "/") for s in load_json(os.path.join(tiny_run, "config.json"))["data"]["skipped"]}
    test = [s for s in ds.split("test") if os.path.relpath(s.path, ds.root) not in skipped]
    x = np.stack([spec(s.path) for s in test])
    for name, e in m["models"].items():
        t = e["calibration"]["temperature"]
        assert t == load_json(os.path.join(tiny_run, name, "result.json"))["calibration"]["temperature"] != 1.0
        want = np.asarray(load_json(os.path.join(tiny_run, name, "test_predictions.json"))["probabilities"])
        sess = ort.InferenceSession(os.path.join(tiny_export, e["onnx"]), providers=["CPUExecutionProvider"])
        got = sess.run(None, {m["input"]["name"]: x})[0]
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)  # test_predictions.json keeps 6 decimals
        raw = np.exp(calibration.scaled(np.log(np.clip(got, 1e-12, 1)), 1.0 / t))  # what T = 1 would have answered
        assert np.abs(raw - got).max() > 1e-3  # the temperature matters: this test would notice it missing


@pytest.mark.slow
def test_not_sure_when_the_top_probability_is_below_the_threshold(tiny_export, tmp_path):
    """The same photo is answered, or "not sure" with the two likeliest classes, as the model's threshold straddles
    its top probability (serve/predict.py; the page shares serve/text.answer)."""
    import shutil

    export = shutil.copytree(tiny_export, tmp_path / "export")
    m = read_manifest(export)
    every = json.loads(run_cli("serve/predict.py", os.path.join(export, "examples"), "--all", "--json",
                               "--manifest", os.path.join(export, "manifest.json")).stdout)["results"]
    top = min(every, key=lambda r: r["model_confidence"])  # the least sure answer: room for a threshold above it
    assert top["model_confidence"] < 1 - 2e-4
    name = top["model"]
    args = ("serve/predict.py", top["photo"], "--model", name, "--manifest", os.path.join(export, "manifest.json"), "--json")
    for threshold, sure in ((top["model_confidence"] - 1e-4, True), (top["model_confidence"] + 1e-4, False)):
        m["models"][name]["calibration"]["threshold"] = threshold
        with open(os.path.join(export, "manifest.json"), "w") as f:
            json.dump(m, f)
        r = json.loads(run_cli(*args).stdout)["results"][0]
        assert r["sure"] is sure and r["class"] == top["class"]
        if sure:
            assert r["answer"] == top["class"]
        else:
            second = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[1]
            assert r["answer"].startswith(f"not sure: {top['class']} ") and f", {second[0]} " in r["answer"]
        table = run_cli(*args[:-1]).stdout
        assert ("not sure:" in table) is not sure


def test_older_manifests_and_runs_without_calibration_still_read(tiny_export, tmp_path):
    """A manifest written before calibration and test-time views existed serves its models uncalibrated and always
    answers; a run's config.json without "tta" reads as "none"."""
    import shutil

    from models import rundir
    from serve.manifest import load

    export = shutil.copytree(tiny_export, tmp_path / "export")
    m = read_manifest(export)
    m.pop("tta")
    for e in m["models"].values():
        e.pop("calibration")
    with open(os.path.join(export, "manifest.json"), "w") as f:
        json.dump(m, f)
    loaded = load(os.path.join(export, "manifest.json"))
    assert all(e.temperature == 1.0 and e.threshold == 0.0 for e in loaded.models.values())
    cfg = load_json(os.path.join(tiny_export, "..", "config.json"))
    cfg["settings"].pop("tta")
    assert rundir.RunDir(str(tmp_path), cfg).settings["tta"] == "none"
