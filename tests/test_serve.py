"""serve/app.py through its entry point: a real server on a free localhost port, called with
gradio_client, raw HTTP and a headless Chromium; answers checked against ONNX Runtime run directly
on the exported files."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import models
from conftest import ROOT, run_cli

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]


# -- helpers ---------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """`python serve/app.py ...` running in the background until stop()."""

    def __init__(self, *args, log_dir):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = os.path.join(str(log_dir), f"app-{self.port}.log")
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "serve/app.py", "--port", str(self.port), *map(str, args)],
                                         cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve/app.py exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.stop()
        raise AssertionError(f"serve/app.py did not answer within 180 s:\n{self.output()}")

    def output(self) -> str:
        with open(self.log) as f:
            return f.read()[-4000:]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def read_manifest(export: str) -> dict:
    with open(os.path.join(export, "manifest.json")) as f:
        return json.load(f)


def ok_models(export: str) -> list[str]:
    return [n for n, e in read_manifest(export)["models"].items() if e["status"] == "ok"]


def onnx_probs(export: str, name: str, path: str) -> np.ndarray:
    """ONNX Runtime run directly on the exported file, input made by the manifest's models.Preprocessing."""
    import onnxruntime as ort

    man = read_manifest(export)
    sess = ort.InferenceSession(os.path.join(export, man["models"][name]["onnx"]), providers=["CPUExecutionProvider"])
    x = models.Preprocessing.from_dict(man["preprocessing"])(path)[None]
    return sess.run(None, {man["input"]["name"]: x})[0][0]


def served_probs(result, classes) -> np.ndarray:
    """The Label output of /classify as a probability vector in class order."""
    label, _info = result
    conf = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert set(conf) == set(classes)
    return np.array([conf[c] for c in classes])


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app(tiny_export, tmp_path_factory):
    server = App("--manifest", os.path.join(tiny_export, "manifest.json"), log_dir=tmp_path_factory.mktemp("logs"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    return Client(app.url, verbose=False)


@pytest.fixture(scope="module")
def photos(kaggle_fixture, tmp_path_factory):
    """A bee photo from the fixture's test split and the awkward variants of it users upload."""
    from models.dataset import open_dataset

    d = tmp_path_factory.mktemp("photos")
    bee = next(s.path for s in open_dataset(kaggle_fixture).split("test") if s.label == 0 and s.path.endswith(".jpg"))
    rgb = models.load_rgb(bee).resize((160, 120))
    p = {"jpeg": str(d / "bee.jpg"), "gray": str(d / "gray.jpg"), "rgba": str(d / "rgba.png"),
         "cmyk": str(d / "cmyk.jpg"), "upright": str(d / "upright.png"), "sideways": str(d / "sideways.png"),
         "exif": str(d / "exif_rotated.jpg"), "truncated": str(d / "truncated.jpg"), "text": str(d / "notes.jpg"),
         "bomb": str(d / "bomb.png"), "huge_bomb": str(d / "huge_bomb.png")}
    rgb.save(p["jpeg"], quality=92)
    rgb.convert("L").save(p["gray"])
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgb.size))
    rgba.save(p["rgba"])
    rgb.convert("CMYK").save(p["cmyk"])
    rgb.save(p["upright"])
    # Stored sideways, with EXIF Orientation 6 ("rotate 90 degrees clockwise to display").
    sideways = rgb.transpose(Image.Transpose.ROTATE_90)
    sideways.save(p["sideways"])
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(p["exif"], quality=95, exif=exif)
    with open(p["jpeg"], "rb") as f:
        data = f.read()
    with open(p["truncated"], "wb") as f:
        f.write(data[: len(data) // 2])
    with open(p["text"], "w") as f:
        f.write("not a photo, just text with a .jpg name\n")
    Image.new("1", (8000, 6000)).save(p["bomb"])  # 48 Mpx, a few KB: above models.MAX_PIXELS
    Image.new("1", (15000, 15000)).save(p["huge_bomb"])  # 225 Mpx: above PIL's own hard limit too
    return p


# -- tests -----------------------------------------------------------------------------------------
def test_classify_equals_onnxruntime_on_the_exported_model(client, tiny_export, photos):
    from gradio_client import handle_file

    man = read_manifest(tiny_export)
    names = ok_models(tiny_export)
    assert len(names) == 2
    for name in names:
        for key in ("jpeg", "upright"):
            label, info = client.predict(handle_file(photos[key]), name, api_name="/classify")
            want = onnx_probs(tiny_export, name, photos[key])
            got = served_probs((label, info), man["classes"])
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
            assert label["label"] == man["classes"][int(want.argmax())]
            acc = man["models"][name]["test_acc"]["onnx"]
            assert f"{100 * acc:.1f}%" in info and re.search(r"ONNX Runtime on (CPU|GPU)", info) and " ms" in info


def test_paddle_backend_agrees_with_onnx(client, tiny_export, photos):
    from gradio_client import handle_file

    man = read_manifest(tiny_export)
    for name in ok_models(tiny_export):
        result = client.predict(handle_file(photos["jpeg"]), name, "paddle", api_name="/classify")
        np.testing.assert_allclose(served_probs(result, man["classes"]), onnx_probs(tiny_export, name, photos["jpeg"]),
                                   rtol=0, atol=1e-4)
        assert re.search(r"Paddle Inference on (CPU|GPU)", result[1])


def test_compare_all_runs_every_model(client, tiny_export, photos):
    from gradio_client import handle_file

    man = read_manifest(tiny_export)
    table, info = client.predict(handle_file(photos["jpeg"]), api_name="/compare_all")
    assert table["headers"] == ["optimizer", "predicted class", "confidence (%)", "test accuracy (%)", "latency (ms)"]
    rows = {r[0]: r for r in table["data"]}
    assert sorted(rows) == sorted(ok_models(tiny_export))
    for name, (_, cls, conf, acc, ms) in rows.items():
        want = onnx_probs(tiny_export, name, photos["jpeg"])
        assert cls == man["classes"][int(want.argmax())]
        assert conf == pytest.approx(100 * want.max(), abs=0.01)
        assert acc == pytest.approx(100 * man["models"][name]["test_acc"]["onnx"], abs=0.01)
        assert ms > 0
    assert f"of {len(rows)} models say" in info


@pytest.mark.parametrize("key", ["gray", "rgba", "cmyk"])
def test_unusual_color_modes_are_classified_like_the_exported_model(client, tiny_export, photos, key):
    from gradio_client import handle_file

    man = read_manifest(tiny_export)
    name = ok_models(tiny_export)[0]
    result = client.predict(handle_file(photos[key]), name, api_name="/classify")
    np.testing.assert_allclose(served_probs(result, man["classes"]), onnx_probs(tiny_export, name, photos[key]),
                               rtol=0, atol=1e-6)


def test_exif_rotated_photo_is_classified_upright(client, tiny_export, photos):
    from gradio_client import handle_file

    man = read_manifest(tiny_export)
    for name in ok_models(tiny_export):
        def served(key):
            return served_probs(client.predict(handle_file(photos[key]), name, api_name="/classify"), man["classes"])

        exif, upright, sideways = served("exif"), served("upright"), served("sideways")
        np.testing.assert_allclose(exif, onnx_probs(tiny_export, name, photos["exif"]), rtol=0, atol=1e-6)
        # Same pixels as the upright photo up to JPEG loss; the stored (sideways) pixels give another answer.
        assert np.abs(exif - upright).sum() < np.abs(exif - sideways).sum()


@pytest.mark.parametrize("key,message", [
    (None, "No image: upload a photo"),
    ("text", "notes.jpg: not a readable image"),
    ("truncated", "truncated.jpg: not a readable image"),
    ("bomb", "bomb.png: image is 8000x6000 pixels, above the 40,000,000 pixel limit"),
    ("huge_bomb", "huge_bomb.png: image is above the 40,000,000 pixel limit"),
])
def test_bad_input_gets_a_clear_message_and_the_server_keeps_answering(client, tiny_export, photos, key, message):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    name = ok_models(tiny_export)[0]
    for api in ("/classify", "/compare_all"):
        args = (None if key is None else handle_file(photos[key]),) + ((name,) if api == "/classify" else ())
        with pytest.raises(AppError) as err:
            client.predict(*args, api_name=api)
        assert message in str(err.value)
        assert "Traceback" not in str(err.value)
    label, _ = client.predict(handle_file(photos["jpeg"]), name, api_name="/classify")
    assert label["label"] in read_manifest(tiny_export)["classes"]


def test_unknown_model_or_backend_is_refused_with_a_message(client, photos):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Unknown model 'nope'"):
        client.predict(handle_file(photos["jpeg"]), "nope", api_name="/classify")
    with pytest.raises(AppError, match="Unknown backend"):
        client.predict(handle_file(photos["jpeg"]), api_name="/compare_all", backend="tensorrt")


def test_paths_written_into_a_request_are_never_opened(app, tiny_export, photos):
    """Raw HTTP calls naming server-side files (a model file, an image outside the upload folder,
    /etc/passwd): every one is refused, none is classified."""
    import httpx

    name = ok_models(tiny_export)[0]
    model_file = os.path.join(tiny_export, read_manifest(tiny_export)["models"][name]["onnx"])
    for path in ("/etc/passwd", photos["jpeg"], model_file, "/tmp/gradio/../../etc/passwd"):
        fd = {"path": path, "orig_name": os.path.basename(path), "meta": {"_type": "gradio.FileData"}}
        call = app.url + "gradio_api/call/classify"
        event = httpx.post(call, json={"data": [fd, name, "onnx"]}, timeout=30).json()["event_id"]
        answer = httpx.get(f"{call}/{event}", timeout=60).text
        assert answer.startswith("event: error"), (path, answer)
        assert "confidences" not in answer and "not a readable image" not in answer


def test_upload_size_limit(app, client, tmp_path):
    """Above --max-file-size (default 20mb): gradio_client refuses to send it, and the server itself
    answers 413 to a raw upload, so nothing that large is stored or decoded."""
    import httpx
    from gradio_client import handle_file

    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:
        f.write(b"\xff\xd8" + os.urandom(21 * 1024 * 1024))
    with pytest.raises(ValueError, match="exceeds the maximum file size of 20971520 bytes"):
        client.predict(handle_file(str(big)), api_name="/compare_all")
    with open(big, "rb") as f:
        r = httpx.post(app.url + "gradio_api/upload", files={"files": ("big.jpg", f, "image/jpeg")}, timeout=120)
    assert r.status_code == 413


def test_binds_only_localhost_by_default(app):
    """The listening socket is on 127.0.0.1 (read from the kernel's table, not from our own output)."""
    port_hex = f"{app.port:04X}"
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(table):
            with open(table) as f:
                for line in f.readlines()[1:]:
                    local, state = line.split()[1], line.split()[3]
                    if local.endswith(":" + port_hex) and state == "0A":
                        listening.append(local.split(":")[0])
    assert listening == ["0100007F"]


def test_page_lists_models_with_test_accuracy_leaderboard_and_examples(app, tiny_export):
    import httpx

    man = read_manifest(tiny_export)
    config = httpx.get(app.url + "config", timeout=30).json()
    text = json.dumps(config)
    for name in ok_models(tiny_export):
        assert f"{name} (test acc {100 * man['models'][name]['test_acc']['trained']:.1f}%)" in text
    with open(os.path.join(tiny_export, man["leaderboard"]["markdown"])) as f:
        first_line = f.read().strip().splitlines()[0]
    assert json.dumps(first_line)[1:-1] in text
    existing = [e for e in man["examples"] if os.path.isfile(os.path.join(tiny_export, e))]
    shown = {c["props"].get("label"): c["props"] for c in config["components"]}
    samples = shown["Examples from the test split"]["samples"] if existing else []
    assert [os.path.basename(s[0]["orig_name"] if "orig_name" in s[0] else s[0]["path"]) for s in samples] == \
        [os.path.basename(e) for e in existing]


def test_no_manifest_says_which_commands_to_run(tmp_path):
    p = run_cli("serve/app.py", "--runs", tmp_path, check=False)
    assert p.returncode != 0
    assert "python train/run_all.py" in p.stderr and "python export/to_onnx.py" in p.stderr
    assert "Traceback" not in p.stderr
    p = run_cli("serve/app.py", "--manifest", tmp_path / "nowhere" / "manifest.json", check=False)
    assert p.returncode != 0 and "python export/to_onnx.py" in p.stderr and "Traceback" not in p.stderr


def test_default_manifest_is_the_newest_run(tmp_path):
    from serve.manifest import newest

    paths = []
    for i, run in enumerate(("b-old", "a-new")):
        (tmp_path / run / "export").mkdir(parents=True)
        paths.append(tmp_path / run / "export" / "manifest.json")
        paths[-1].write_text("{}")
        os.utime(paths[-1], (1_000_000 + i, 1_000_000 + i))
    assert newest(str(tmp_path)) == str(paths[1])


def test_model_files_outside_the_export_folder_are_refused(tiny_export, tmp_path):
    """A manifest whose model paths climb out of its folder: those models are not loaded."""
    man = read_manifest(tiny_export)
    export = tmp_path / "run" / "export"
    export.mkdir(parents=True)
    for name in ok_models(tiny_export):
        real = os.path.join(tiny_export, name)
        man["models"][name]["onnx"] = os.path.relpath(os.path.join(real, "model.onnx"), export)
        for k, f in (("model", "inference.json"), ("params", "inference.pdiparams")):
            man["models"][name]["paddle"][k] = os.path.relpath(os.path.join(real, f), export)
    with open(export / "manifest.json", "w") as f:
        json.dump(man, f)
    p = run_cli("serve/app.py", "--manifest", export / "manifest.json", check=False)
    assert p.returncode != 0
    assert "points outside the export folder" in p.stderr and "Traceback" not in p.stderr


def test_manifest_keeps_only_what_exists_and_is_ok(tiny_export, tmp_path):
    """Examples missing on disk are dropped; a failed model is listed with its reason, not served."""
    from serve.manifest import load

    man = read_manifest(tiny_export)
    export = tmp_path / "export"
    shutil.copytree(tiny_export, export)
    real = [os.path.realpath(os.path.join(tiny_export, e)) for e in man["examples"]][:1]
    man["examples"] = [os.path.relpath(real[0], export), "../no/such/photo.jpg"]
    man["models"]["lion"] = {"status": "failed: diverged at epoch 2"}
    with open(export / "manifest.json", "w") as f:
        json.dump(man, f)
    loaded = load(str(export / "manifest.json"))
    assert loaded.examples == real
    assert loaded.unavailable == {"lion": "failed: diverged at epoch 2"}
    assert sorted(loaded.models) == sorted(ok_models(tiny_export))
    assert loaded.run == tmp_path.name  # "run": ".." names the folder above the manifest's


def test_browser_upload_shows_the_predicted_class(app, tiny_export, photos):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent (Debian: apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    man = read_manifest(tiny_export)
    best = max(ok_models(tiny_export), key=lambda n: man["models"][n]["test_acc"]["trained"])
    want = man["classes"][int(onnx_probs(tiny_export, best, photos["jpeg"]).argmax())]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(app.url)
            page.set_input_files("#photo input[type=file]", photos["jpeg"])
            page.click("#classify")
            heading = page.locator("#prediction h2")
            heading.wait_for(timeout=60_000)
            assert heading.inner_text().strip() == want
            assert best in page.inner_text("#info") and "ONNX Runtime on" in page.inner_text("#info")
            # A broken upload: the message appears on the page, and the page keeps working.
            page.set_input_files("#photo input[type=file]", photos["truncated"])
            page.click("#classify")
            page.get_by_text("truncated.jpg: not a readable image").first.wait_for(timeout=60_000)
        finally:
            browser.close()
