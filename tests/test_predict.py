"""serve/predict.py through its entry point: what it prints, which model it uses, folders, unreadable
files and exit statuses. (Its answer equals the page's /classify: tests/test_serve.py, which has a server.)"""
from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import onnx_model, read_manifest, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def photos(tiny_export, tmp_path_factory):
    """A folder of the export's example photos, a nested folder, a text file among them, an RGBA PNG."""
    d = tmp_path_factory.mktemp("predict_photos")
    m = read_manifest(tiny_export)
    for rel in m["examples"][:3]:
        shutil.copy(os.path.join(tiny_export, rel), d)
    (d / "nested").mkdir()
    shutil.copy(os.path.join(tiny_export, m["examples"][-1]), d / "nested" / "last.JPG")
    rgba = Image.open(os.path.join(tiny_export, m["examples"][0])).convert("RGBA")
    rgba.save(d / "nested" / "alpha.png")
    (d / "notes.txt").write_text("not a photo, and not an image name: folders skip it\n")
    return d


def predict(tiny_export, *args, check=True):
    return run_cli("serve/predict.py", *args, "--manifest", os.path.join(tiny_export, "manifest.json"), check=check)


def test_folder_is_walked_and_the_winner_answers(tiny_export, photos):
    import onnxruntime as ort

    import models

    m = read_manifest(tiny_export)
    p = predict(tiny_export, photos, "--json", "--backend", "onnx")
    out = json.loads(p.stdout)
    want = sorted([str(f) for f in photos.iterdir() if f.suffix == ".jpg"]) + \
        [str(photos / "nested" / "alpha.png"), str(photos / "nested" / "last.JPG")]
    assert [r["photo"] for r in out["results"]] == want and out["unreadable"] == []
    assert {r["model"] for r in out["results"]} == {m["winner"]} and out["winner"] == m["winner"]
    assert out["models"][m["winner"]]["device"].split(", ")[0] in ("CPU", "GPU 0") and out["synthetic"] is False
    sess = ort.InferenceSession(os.path.join(tiny_export, m["models"][m["winner"]]["onnx"]), providers=["CPUExecutionProvider"])
    for r in out["results"]:
        probs = sess.run(None, {m["input"]["name"]: models.Preprocessing.from_dict(m["preprocessing"])(r["photo"])[None]})[0][0]
        np.testing.assert_allclose([r["probabilities"][c] for c in m["classes"]], probs, rtol=0, atol=1e-6)
        assert r["class"] == m["classes"][int(probs.argmax())] and r["model_confidence"] == pytest.approx(float(probs.max()))
    assert p.returncode == 0 and p.stderr == ""


def test_table_all_models_best_on_validation_first(tiny_export, photos):
    from util.fmt import pct

    m = read_manifest(tiny_export)
    p = predict(tiny_export, photos / "nested" / "last.JPG", "--all", "--top-k", "2")
    lines = p.stdout.splitlines()
    assert lines[0] == f"This model only knows: {', '.join(m['classes'])}. A photo of anything else still gets one of these."
    order = [ln.split()[1].rstrip(":") for ln in lines if ln.startswith("model ")]
    vals = [m["models"][n]["best_val_acc"] for n in order]
    assert sorted(order) == sorted(m["models"]) and vals == sorted(vals, reverse=True)
    header = next(i for i, ln in enumerate(lines) if ln.startswith("photo"))
    assert lines[header].split() == ["photo", "answer", "model", "confidence", "model", "next"]
    rows = lines[header + 1:]
    assert [r.split()[3] for r in rows] == order
    for r in rows:
        assert re.fullmatch(r"\S+ +\w+ +\d+\.\d% +\w+ +\w+ \d+\.\d%", r), r
    assert f"best validation accuracy {pct(vals[0])}" in p.stdout


def test_unreadable_files_get_one_line_and_the_rest_are_classified(tiny_export, photos, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    good = next(f for f in photos.iterdir() if f.suffix == ".jpg")
    p = predict(tiny_export, broken, good, photos / "notes.txt", tmp_path / "missing.png", empty, "--json", check=False)
    assert p.returncode == 1
    out = json.loads(p.stdout)
    assert [r["photo"] for r in out["results"]] == [str(good)]
    assert {u["photo"] for u in out["unreadable"]} == {str(broken), str(photos / "notes.txt"), str(tmp_path / "missing.png"), str(empty)}
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 4 and "Traceback" not in p.stderr
    assert any(ln.endswith("missing.png: no such file or folder") for ln in lines)
    assert any("broken.jpg: not a readable image" in ln for ln in lines)


def test_usage_errors_exit_2(tiny_export, photos, tmp_path):
    good = str(next(f for f in photos.iterdir() if f.suffix == ".jpg"))
    empty = tmp_path / "runs"
    empty.mkdir()
    p = run_cli("serve/predict.py", good, "--runs", empty, check=False)
    assert p.returncode == 2 and "python export/to_onnx.py" in p.stderr and "Traceback" not in p.stderr
    p = predict(tiny_export, good, "--model", "lion", check=False)
    assert p.returncode == 2 and "model 'lion' cannot be used" in p.stderr and "sgd" in p.stderr
    for bad in (["--model", "sgd", "--all"], ["--top-k", "0"], []):
        p = run_cli("serve/predict.py", *([good] if bad else []), *bad, check=False)
        assert p.returncode == 2 and "usage:" in p.stderr, bad


def test_default_manifest_is_the_newest(tiny_export, photos, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(tiny_export, runs / "copied" / "export")
    p = run_cli("serve/predict.py", photos, "--runs", runs, "--json")
    assert json.loads(p.stdout)["manifest"] == str(runs / "copied" / "export" / "manifest.json")


# ---- issue 18: what exists but is no photo, odd names, hostile model files -----------------------------------

def test_a_fifo_dev_zero_and_a_newline_in_a_name(tiny_export, photos, tmp_path):
    """A FIFO and /dev/zero exist (not 'no such file'), and reading them would block or never end; a file name
    with a newline keeps to one table row and one error line."""
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    odd = tmp_path / "two\nlines.jpg"
    shutil.copy(next(f for f in photos.iterdir() if f.suffix == ".jpg"), odd)
    odd_broken = tmp_path / "bad\nname.jpg"
    odd_broken.write_bytes(b"not a photo")
    p = predict(tiny_export, fifo, "/dev/zero", odd, odd_broken, check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    errors = p.stderr.strip().splitlines()
    assert len(errors) == 3
    assert errors[0] == f"serve/predict.py: {fifo}: not a regular file (a FIFO, device or socket); give an image file"
    assert errors[1] == "serve/predict.py: /dev/zero: not a regular file (a FIFO, device or socket); give an image file"
    assert errors[2].startswith(f"serve/predict.py: {tmp_path}/bad\\nname.jpg: ")
    rows = [ln for ln in p.stdout.splitlines() if "lines.jpg" in ln]
    assert len(rows) == 1 and rows[0].startswith(f"{tmp_path}/two\\nlines.jpg ")


def test_a_model_that_reads_outside_its_folder_or_answers_non_probabilities_is_refused(tiny_export, photos, tmp_path):
    """An ONNX file whose weights live in ../../etc/passwd: ONNX Runtime read it and predict printed 7.6e+31 as a
    probability. It is refused before ONNX Runtime opens it; a model whose outputs are not probabilities is
    refused before they are shown. One line each, exit 2."""
    export = shutil.copytree(tiny_export, tmp_path / "export")
    good = next(f for f in photos.iterdir() if f.suffix == ".jpg")
    size = read_manifest(export)["preprocessing"]["size"]
    onnx_model(export / "sgd" / "model.onnx", size=size, external="../../../../../../../../../../etc/passwd")
    p = predict(export, good, "--model", "sgd", "--backend", "onnx", "--json", check=False)
    assert p.returncode == 2 and p.stdout == "" and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [f"serve/predict.py: {export}/sgd/model.onnx refused: tensor 'b' keeps its data "
                                             f"in '../../../../../../../../../../etc/passwd', outside the model's folder; "
                                             f"not opened (export the model again)"]
    onnx_model(export / "sgd" / "model.onnx", size=size, bias=[5.0, -1.0, 0.0, 0.0])
    p = predict(export, good, "--model", "sgd", "--backend", "onnx", check=False)
    assert p.returncode == 2 and "sgd (ONNX Runtime) gave values that are not probabilities" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and p.stdout == ""


def test_manifests_without_int8_or_latencies_still_serve(tiny_export, photos, tmp_path):
    """A manifest written before INT8 existed (no "int8" block, no INT8 figures) serves its float models: auto picks the
    faster of ONNX Runtime and Paddle Inference, onnx-int8 is refused in one line; without any latency, ONNX Runtime."""
    from serve.manifest import NO_INT8, load

    export = shutil.copytree(tiny_export, tmp_path / "export")
    m = read_manifest(export)
    for e in m["models"].values():
        e.pop("int8")
        for field in ("test_acc", "max_abs_diff", "latency_ms", "throughput_ips"):
            e[field] = {k: v for k, v in e[field].items() if not k.startswith("onnx-int8")}
    with open(export / "manifest.json", "w") as f:
        json.dump(m, f)
    served = load(str(export / "manifest.json")).models
    lat = m["models"][m["winner"]]["latency_ms"]
    assert served[m["winner"]].backends == ["onnx", "paddle"] and served[m["winner"]].int8_status == NO_INT8
    assert served[m["winner"]].fastest() == min(("onnx", "paddle"), key=lambda b: lat[f"{b}_b1"])
    good = next(f for f in photos.iterdir() if f.suffix == ".jpg")
    out = json.loads(predict(export, good, "--json").stdout)
    assert out["models"][m["winner"]]["backend"] == served[m["winner"]].fastest()
    p = predict(export, good, "--backend", "onnx-int8", check=False)
    assert p.returncode == 2 and p.stderr == f"serve/predict.py: {m['winner']} has no ONNX Runtime INT8 model that passed " \
        f"its proof ({NO_INT8}); choose auto or one of onnx, paddle\n"
    for e in m["models"].values():
        e.pop("latency_ms")
    with open(export / "manifest.json", "w") as f:
        json.dump(m, f)
    assert {e.fastest() for e in load(str(export / "manifest.json")).models.values()} == {"onnx"}
