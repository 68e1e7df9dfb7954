"""serve/app.py through its entry point: a real server on a free localhost port, called with
gradio_client, raw HTTP (raw sockets for the body-size probes) and a headless Chromium; answers checked
against ONNX Runtime run directly on the exported files and against serve/predict.py. Two more
servers (a manifest that attacks, a synthetic run) are stopped with SIGTERM and Ctrl+C (SIGINT)."""
from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import time

import numpy as np
import pytest
from PIL import Image

import models
from conftest import HYMENOPTERA, App, load_json, read_manifest, run_cli
from models import ranking
from util.fmt import pct

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]


# -- helpers ---------------------------------------------------------------------------------------
def ok_models(export: str) -> list[str]:
    return [n for n, e in read_manifest(export)["models"].items() if e["status"] == "ok"]


def onnx_probs(export: str, name: str, path: str, int8: bool = False) -> np.ndarray:
    """ONNX Runtime run directly on the exported file (or its INT8 model), input made by the manifest's models.Preprocessing."""
    import onnxruntime as ort

    man = read_manifest(export)
    e = man["models"][name]
    sess = ort.InferenceSession(os.path.join(export, e["int8"]["onnx"] if int8 else e["onnx"]), providers=["CPUExecutionProvider"])
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
    server = App("--manifest", os.path.join(tiny_export, "manifest.json"), "--backend", "onnx",
                 log_dir=tmp_path_factory.mktemp("logs"))
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


# -- tests: answers --------------------------------------------------------------------------------
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
            assert info.startswith(f"## {label['label']}\n")
            # One percentage format (serve/text.py), "model confidence" named as such, what the model knows.
            assert f"| {label['label']} | {pct(float(want.max()))} |" in info and "| class | model confidence |" in info
            assert "calibrated on the validation split" in info  # what the numbers mean (serve/ui.py CONFIDENCE)
            assert f"This model only knows: {', '.join(man['classes'])}. A photo of anything else still gets one of these." in info
            e = man["models"][name]
            assert f"best validation accuracy **{pct(e['best_val_acc'])}**" in info
            assert f"test accuracy **{pct(e['test_acc']['onnx'])}**" in info
            assert re.search(r"Ran on \*\*(CPU|GPU \d+), ONNX Runtime\*\* in \*\*[0-9.]+ ms\*\*", info), info
            assert "SYNTHETIC" not in info


def test_paddle_backend_agrees_with_onnx(client, tiny_export, photos):
    from gradio_client import handle_file

    man = read_manifest(tiny_export)
    for name in ok_models(tiny_export):
        result = client.predict(handle_file(photos["jpeg"]), name, "paddle", api_name="/classify")
        np.testing.assert_allclose(served_probs(result, man["classes"]), onnx_probs(tiny_export, name, photos["jpeg"]),
                                   rtol=0, atol=1e-4)
        assert re.search(r"Ran on \*\*(CPU|GPU \d+), Paddle Inference\*\*", result[1])


def test_predict_cli_equals_classify(client, tiny_export, photos, tmp_path):
    """serve/predict.py --json gives the page's /classify probabilities for the same files and model,
    for every backend (INT8 too: what ONNX Runtime gives on the INT8 file), photos given one by one and as a folder."""
    from gradio_client import handle_file

    man = read_manifest(tiny_export)
    folder = tmp_path / "photos"
    folder.mkdir()
    for key in ("jpeg", "rgba", "exif"):
        shutil.copy(photos[key], folder)
    for backend in ("onnx", "onnx-int8", "paddle"):
        for name in ok_models(tiny_export):
            p = run_cli("serve/predict.py", folder, "--manifest", os.path.join(tiny_export, "manifest.json"),
                        "--model", name, "--backend", backend, "--json", "--top-k", "4")
            out = json.loads(p.stdout)
            assert [r["photo"] for r in out["results"]] == sorted(str(f) for f in folder.iterdir())
            for r in out["results"]:
                served = served_probs(client.predict(handle_file(r["photo"]), name, backend, api_name="/classify"),
                                      man["classes"])
                np.testing.assert_array_equal(np.array([r["probabilities"][c] for c in man["classes"]]), served)
                assert r["class"] == man["classes"][int(served.argmax())] and r["model"] == name and r["backend"] == backend
                if backend == "onnx-int8":
                    np.testing.assert_allclose(served, onnx_probs(tiny_export, name, r["photo"], int8=True), rtol=0, atol=1e-6)
                assert r["model_confidence"] == served.max()


def test_auto_runs_each_models_fastest_proven_backend_and_says_which(client, tiny_export, photos):
    """"auto" (the default of the page and predict): the backend with the lowest batch-1 latency the export measured
    among those that passed their proof; the answer names it and equals that backend's."""
    from gradio_client import handle_file

    from serve.engines import BACKENDS

    man = read_manifest(tiny_export)
    for name in ok_models(tiny_export):
        lat = man["models"][name]["latency_ms"]
        fastest = min(("onnx", "onnx-int8", "paddle"), key=lambda b: lat[f"{b}_b1"])
        label, info = client.predict(handle_file(photos["jpeg"]), name, "auto", api_name="/classify")
        assert re.search(rf"Ran on \*\*(CPU|GPU \d+), {BACKENDS[fastest]}\*\* \(the fastest that passed its proof\)", info), info
        again = client.predict(handle_file(photos["jpeg"]), name, fastest, api_name="/classify")
        np.testing.assert_array_equal(served_probs((label, info), man["classes"]), served_probs(again, man["classes"]))
    table, _ = client.predict(handle_file(photos["jpeg"]), "onnx-int8", api_name="/compare_all")
    assert {r[-1] for r in table["data"]} == {"ONNX Runtime INT8"}


def test_compare_all_runs_every_model_best_on_validation_first(client, tiny_export, photos):
    from gradio_client import handle_file

    man = read_manifest(tiny_export)
    table, info = client.predict(handle_file(photos["jpeg"]), api_name="/compare_all")
    assert table["headers"] == ["optimizer", "answer", "model confidence", "best val accuracy",
                                "test accuracy", "latency (ms)", "backend"]
    rows = {r[0]: r for r in table["data"]}
    vals = [man["models"][r[0]]["best_val_acc"] for r in table["data"]]
    assert vals == sorted(vals, reverse=True)
    assert sorted(rows) == sorted(ok_models(tiny_export))
    for name, (_, cls, conf, val, acc, ms, backend) in rows.items():
        assert backend == "ONNX Runtime"  # the page's backend (the app started with --backend onnx)
        want = onnx_probs(tiny_export, name, photos["jpeg"])
        assert cls == man["classes"][int(want.argmax())]
        assert conf == pct(float(want.max()))
        assert val == pct(man["models"][name]["best_val_acc"]) and acc == pct(man["models"][name]["test_acc"]["onnx"])
        assert ms > 0
    assert f"of {len(rows)} models say" in info and "This model only knows" in info


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


def test_page_lists_models_by_validation_accuracy_with_the_winner_preselected(app, tiny_export):
    import httpx

    man = read_manifest(tiny_export)
    config = httpx.get(app.url + "config", timeout=30).json()
    shown = {c["props"].get("elem_id") or c["props"].get("label"): c["props"] for c in config["components"]}
    dropdown = shown["model"]
    names = [c[1] for c in dropdown["choices"]]
    vals = [man["models"][n]["best_val_acc"] for n in names]
    assert sorted(names) == sorted(ok_models(tiny_export)) and vals == sorted(vals, reverse=True)
    # the run's winner, by the one rule (models/ranking.py) on training's results: preselected
    results = load_json(os.path.join(tiny_export, "..", "results.json"))
    want = ranking.winner(results["optimizers"])
    assert want in names and results["winner"] == want and man["winner"] == want and dropdown["value"] == want
    for label, name in dropdown["choices"]:
        e = man["models"][name]
        assert label.startswith(f"{name}: val {pct(e['best_val_acc'])}, test {pct(e['test_acc']['trained'])}")
    assert "· the run's winner" in dict((n, lb) for lb, n in dropdown["choices"])[want]
    text = json.dumps(config)
    assert "This model only knows: bee, wasp, other_insect, other_noinsect" in text
    assert "synthetic-banner" not in text
    # The Leaderboard tab: the copy of leaderboard.md in the export folder, and its plots.
    assert man["leaderboard"]["markdown"] == "board/leaderboard.md"
    with open(os.path.join(tiny_export, man["leaderboard"]["markdown"])) as f:
        first_line = f.read().strip().splitlines()[0]
    assert json.dumps(first_line)[1:-1] in text
    plots = [c["props"]["value"] for c in config["components"] if c["type"] == "image" and c["props"].get("value")]
    board = man["leaderboard"]["plots"] + ([man["leaderboard"]["mistakes"]] if man["leaderboard"].get("mistakes") else [])
    assert "board/mistakes.png" in board  # the winner's mistakes gallery, written by training
    assert sorted(os.path.basename(p["path"]) for p in plots) == sorted(os.path.basename(p) for p in board)
    assert all(os.path.commonpath([os.path.realpath(p["path"]), os.path.realpath(app.temp)]) == os.path.realpath(app.temp)
               for p in plots)
    existing = [e for e in man["examples"] if os.path.isfile(os.path.join(tiny_export, e))]
    samples = shown["Examples from the test split"]["samples"] if existing else []
    assert [os.path.basename(s[0]["orig_name"] if "orig_name" in s[0] else s[0]["path"]) for s in samples] == \
        [os.path.basename(e) for e in existing]


# -- tests: bad input, attacks, faults (probes) ------------------------------------------------------
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
    for path in ("/etc/passwd", photos["jpeg"], model_file, "/tmp/gradio/../../etc/passwd",
                 os.path.join(app.temp, "..", "..", "etc", "passwd")):
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


def _raw(port: int, head: str, chunks=(), timeout: float = 30) -> tuple[int, int]:
    """Send request headers, then body chunks until the server answers; (HTTP status, body bytes sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode())
        for chunk in chunks:
            if select.select([s], [], [], 0)[0]:  # an answer is waiting: stop sending
                break
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        status = s.recv(64).split(b" ", 2)
    return int(status[1]), sent


def _alive(client, tiny_export, photos):
    from gradio_client import handle_file

    label, _ = client.predict(handle_file(photos["jpeg"]), ok_models(tiny_export)[0], api_name="/classify")
    assert label["label"] in read_manifest(tiny_export)["classes"]


def test_oversize_json_body_is_refused_before_it_is_read(app, client, tiny_export, photos):
    """A declared 150 MB JSON body to the queue: 413 from the headers alone (no body byte sent), the
    server's memory unchanged; a 2 MB one sent in full: 413 too; the server answers afterwards."""
    import httpx

    before = app.rss_mb()
    head = (f"POST /gradio_api/queue/join HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {150 * 1024 * 1024}\r\n\r\n")
    assert _raw(app.port, head) == (413, 0)
    r = httpx.post(app.url + "gradio_api/queue/join", content=b"[" + b"0," * (1 << 20) + b"0]",
                   headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413 and "byte limit" in r.text
    assert app.rss_mb() < before + 50
    _alive(client, tiny_export, photos)


def test_oversize_chunked_body_is_refused_as_it_streams(app, client, tiny_export, photos):
    """Bodies without a Content-Length (chunked): counted as they arrive and refused once past the limit
    (1 MiB for JSON; --max-file-size plus framing for uploads), long before the 150 MB are sent."""
    block = 64 * 1024

    def chunked(start: bytes, total: int):
        yield f"{len(start):x}\r\n".encode() + start + b"\r\n"
        for _ in range(total // block):
            yield f"{block:x}\r\n".encode() + b"0" * block + b"\r\n"

    part = b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    for path, ctype, start in (("/gradio_api/queue/join", "application/json", b"["),
                               ("/gradio_api/upload", "multipart/form-data; boundary=xyz", part)):
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
                f"Transfer-Encoding: chunked\r\n\r\n")
        status, sent = _raw(app.port, head, chunked(start, 150 * 1024 * 1024))
        assert status == 413, path
        assert sent < 40 * 1024 * 1024, (path, sent)
    _alive(client, tiny_export, photos)


def test_temporary_files_are_the_demos_own(app, client, photos):
    """Uploads land in the demo's own folder (not the machine-wide <tmp>/gradio); a file another app
    cached in <tmp>/gradio is not served; requests for files outside are 403."""
    import httpx
    from gradio_client import handle_file

    shared = os.path.join(app.tmpdir, "gradio", "0123abcd")
    os.makedirs(shared, exist_ok=True)
    other = os.path.join(shared, "other_app.txt")
    with open(other, "w") as f:
        f.write("another app's cached file\n")
    temp = app.temp
    assert os.path.dirname(temp) == app.tmpdir and os.path.basename(temp).startswith("insect-demo-")
    client.predict(handle_file(photos["jpeg"]), api_name="/compare_all")
    uploads = [os.path.join(d, f) for d, _, fs in os.walk(temp) for f in fs if f == "bee.jpg"]
    assert uploads
    assert httpx.get(app.url + "gradio_api/file=" + uploads[0], timeout=30).status_code == 200
    for path in (other, "/etc/passwd", os.path.join(temp, "..", "gradio", "0123abcd", "other_app.txt")):
        assert httpx.get(app.url + "gradio_api/file=" + path, timeout=30).status_code in (403, 404), path


def settled_rss(app, within: float = 0.02, timeout: float = 30) -> float:
    """The server's resident memory once two readings 0.2 s apart differ by less than `within` (not after a fixed sleep)."""
    deadline, last = time.monotonic() + timeout, app.rss_mb()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = app.rss_mb()
        if abs(now - last) <= within * last:
            return now
        last = now
    return last


def test_large_images_leave_no_memory_behind(app, client, tiny_export, tmp_path):
    """Eight clients at once send 40-megapixel PNGs (RGB and RGBA, ~1 MB each): all are classified, and
    the server's resident memory is back within 20% of its baseline afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client, handle_file

    w, h = 7300, 5475  # 39.97 Mpx, just under models.MAX_PIXELS
    rgb = np.full((h, w, 3), 90, np.uint8)
    rgb[..., 0] = np.linspace(0, 255, w)[None, :]
    rgb[..., 1] = np.linspace(0, 255, h)[:, None]
    paths = [str(tmp_path / "big_rgb.png"), str(tmp_path / "big_rgba.png")]
    Image.fromarray(rgb).save(paths[0])
    Image.fromarray(rgb).convert("RGBA").save(paths[1])
    del rgb
    name = ok_models(tiny_export)[0]
    client.predict(handle_file(paths[0]), name, api_name="/classify")  # every code path warmed once
    baseline = settled_rss(app)

    def one(i):
        return Client(app.url, verbose=False).predict(handle_file(paths[i % 2]), name, api_name="/classify")[0]["label"]

    with ThreadPoolExecutor(8) as pool:
        labels = list(pool.map(one, range(8)))
    assert all(lb in read_manifest(tiny_export)["classes"] for lb in labels)
    deadline, after = time.monotonic() + 30, app.rss_mb()
    while after > 1.2 * baseline and time.monotonic() < deadline:  # the heap is handed back as requests end
        time.sleep(0.2)
        after = app.rss_mb()
    assert after <= 1.2 * baseline, (baseline, after)


def _attack_manifest(tiny_export, tmp_path, outside_photo):
    """A copy of the export whose manifest names /etc/passwd, ../config.json and links pointing out, in
    every field that names a file; returns (manifest path, the number of bad entries)."""
    run = tmp_path / "run"
    export = run / "export"
    shutil.copytree(tiny_export, export)
    (run / "config.json").write_text('{"secret": "SECRET-CONFIG"}')
    os.symlink(run / "config.json", export / "board" / "evil.png")
    os.symlink(outside_photo, export / "examples" / "evil.jpg")
    man = read_manifest(tiny_export)
    man["leaderboard"] = {"markdown": "/etc/passwd", "plots": ["../config.json", "board/evil.png"],
                          "mistakes": "board/evil.png"}
    man["examples"] = ["/etc/passwd", "../config.json", "examples/evil.jpg", man["examples"][0]]
    name = ok_models(tiny_export)[1]
    shutil.copy(export / man["models"][name]["onnx"], run / "model.onnx")
    os.remove(export / man["models"][name]["onnx"])
    os.symlink(run / "model.onnx", export / man["models"][name]["onnx"])
    (export / "manifest.json").write_text(json.dumps(man))
    return str(export / "manifest.json"), 1 + 2 + 1 + 3 + 1


@pytest.mark.parametrize("field", ["markdown", "plots", "mistakes", "examples"])
@pytest.mark.parametrize("bad", ["/etc/passwd", "../config.json", "link"])
def test_every_manifest_file_outside_the_export_folder_is_refused(tiny_export, tmp_path, field, bad):
    """Each field that names a file, each way out: refused with one line, never opened."""
    from serve.manifest import load

    run = tmp_path / "run"
    export = run / "export"
    shutil.copytree(tiny_export, export)
    (run / "config.json").write_text("{}")
    if bad == "link":
        os.symlink(run / "config.json", export / "board" / "link.md")
        bad = "board/link.md"
    man = read_manifest(tiny_export)
    if field == "examples":
        man["examples"] = [bad]
    else:
        man["leaderboard"][field] = [bad] if field == "plots" else bad
    (export / "manifest.json").write_text(json.dumps(man))
    m = load(str(export / "manifest.json"))
    assert len(m.refused) == 1 and m.refused[0].startswith("refused ") and repr(bad) in m.refused[0]
    assert "outside the export folder" in m.refused[0]
    assert {"markdown": m.leaderboard_md, "plots": m.plots, "mistakes": m.mistakes, "examples": m.examples}[field] in ("", [], None)


def test_attacking_manifest_is_refused_then_sigterm_stops_cleanly(tiny_export, tmp_path, photos):
    """A manifest naming /etc/passwd, ../config.json and links out in every file field (and one model
    linked out): one refusal line each at start, none of those files shown or served (403/404), the
    other model still served. Then SIGTERM: exit 0 within seconds, no Paddle 'FatalError' block, the
    demo's temporary folder removed."""
    import httpx

    manifest, n_bad = _attack_manifest(tiny_export, tmp_path, photos["jpeg"])
    server = App("--manifest", manifest, log_dir=tmp_path)
    try:
        out = server.output(100_000)
        refusals = [ln for ln in out.splitlines() if ln.startswith("serve/app.py: refused ")]
        assert len(refusals) == n_bad, out
        assert "Traceback" not in out
        config = httpx.get(server.url + "config", timeout=30).text
        assert "root:" not in config and "SECRET-CONFIG" not in config and "evil" not in config
        temp = server.temp
        copied = [f for _, _, fs in os.walk(temp) for f in fs]
        assert not {"passwd", "config.json", "evil.png", "evil.jpg", "model.onnx"} & set(copied), copied
        for path in ("/etc/passwd", str(tmp_path / "run" / "config.json"), str(tmp_path / "run" / "model.onnx"),
                     os.path.join(temp, "x", "passwd")):
            assert httpx.get(server.url + "gradio_api/file=" + path, timeout=30).status_code in (403, 404), path
        dropdown = next(c["props"] for c in httpx.get(server.url + "config", timeout=30).json()["components"]
                        if c["props"].get("elem_id") == "model")
        assert [c[1] for c in dropdown["choices"]] == [ok_models(tiny_export)[0]]
        seconds = server.signal(signal.SIGTERM)
        out = server.output(100_000)
        assert server.proc.returncode == 0, out
        assert seconds < 15 and "FatalError" not in out and "Traceback" not in out and "Stopped." in out
        assert not os.path.exists(temp)
    finally:
        server.stop()


def test_synthetic_run_banner_winner_and_mistakes_then_ctrl_c(tiny_export, tmp_path):
    """A run trained on synthetic pictures whose results.json named adam the winner, with a mistakes
    image: the page says SYNTHETIC at the top, preselects adam, shows the mistakes; predict prints the
    warning and uses adam. Then Ctrl+C (SIGINT): clean exit, temporary folder removed."""
    import httpx

    export = tmp_path / "run" / "export"
    shutil.copytree(tiny_export, export)
    man = read_manifest(tiny_export)
    man["dataset"] = {"name": "synthetic", "synthetic": True}
    man["winner"] = "adam"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(export / "board" / "mistakes.png")
    man["leaderboard"]["mistakes"] = "board/mistakes.png"
    (export / "manifest.json").write_text(json.dumps(man))
    server = App("--manifest", export / "manifest.json", log_dir=tmp_path)
    try:
        config = httpx.get(server.url + "config", timeout=30).json()
        shown = {c["props"].get("elem_id"): c["props"] for c in config["components"] if c["props"].get("elem_id")}
        assert "Trained on SYNTHETIC pictures" in shown["synthetic-banner"]["value"]
        assert config["components"].index(next(c for c in config["components"]
                                                if c["props"].get("elem_id") == "synthetic-banner")) < 3
        assert shown["model"]["value"] == "adam"
        assert os.path.basename(shown["mistakes"]["value"]["path"]) == "mistakes.png"
        assert "the run's winner (adam)" in shown["mistakes"]["label"]
        p = run_cli("serve/predict.py", export / "examples", "--manifest", export / "manifest.json", "--json")
        out = json.loads(p.stdout)
        assert out["synthetic"] is True and {r["model"] for r in out["results"]} == {"adam"}
        p = run_cli("serve/predict.py", export / "examples", "--manifest", export / "manifest.json")
        assert "warning: Trained on SYNTHETIC pictures" in p.stderr and "model adam (the run's winner)" in p.stdout
        temp = server.temp
        seconds = server.signal(signal.SIGINT)
        out = server.output(100_000)
        assert server.proc.returncode == 0 and seconds < 15, out
        assert "FatalError" not in out and "KeyboardInterrupt" not in out and "Traceback" not in out
        assert not os.path.exists(temp)
    finally:
        server.stop()


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


def test_only_its_own_host_names_are_answered(app):
    """DNS rebinding: a web page whose name now points at 127.0.0.1 reached the demo (200, its whole config).
    Any Host but this machine's names (and --host, --allowed-hosts) gets 400, before Gradio sees the request."""
    import httpx

    for host, status in (("evil.example", 400), (f"evil.example:{app.port}", 400), ("127.0.0.1.evil.example", 400),
                         (f"localhost:{app.port}", 200), (f"127.0.0.1:{app.port}", 200)):
        r = httpx.get(app.url + "config", headers={"host": host}, timeout=30)
        assert r.status_code == status, host
        assert status == 200 or "components" not in r.text


def test_uploads_go_after_a_short_age_and_their_total_is_capped(tiny_export, tmp_path):
    """Uploads stayed until the demo stopped (10 x 5 MB: +49 MB), nothing bounded them. Now one that could take
    the temporary folder past --max-temp-size is refused (507, one line) before it is read, and every upload is
    removed once --upload-max-age old; the page's own copies (examples, plots) stay."""
    import httpx

    server = App("--manifest", os.path.join(tiny_export, "manifest.json"), "--max-temp-size", "1mb",
                 "--upload-max-age", "4", log_dir=tmp_path)
    try:
        def files():
            return sorted(os.path.join(d, f) for d, _, fs in os.walk(server.temp) for f in fs)

        own = files()
        answers = []
        for i in range(5):
            r = httpx.post(server.url + "gradio_api/upload", files={"files": (f"{i}.jpg", os.urandom(300_000), "image/jpeg")},
                           timeout=60)
            answers.append(r.status_code)
            if r.status_code != 200:
                break
        assert answers[-1] == 507 and set(answers[:-1]) == {200}, answers
        assert re.fullmatch(r"The demo's upload space is full \(\d+\.\d MB of 1 MB\); try again in a minute", r.text)
        assert sum(os.path.getsize(f) for f in files()) <= 1 << 20
        deadline = time.monotonic() + 30  # 4 s of age, then the next tidy (every 0.5 s)
        while files() != own and time.monotonic() < deadline:
            time.sleep(0.5)
        assert files() == own
        r = httpx.post(server.url + "gradio_api/upload", files={"files": ("again.jpg", os.urandom(300_000), "image/jpeg")},
                       timeout=60)
        assert r.status_code == 200
    finally:
        server.stop()


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
    assert "outside the export folder" in p.stderr and "Traceback" not in p.stderr


def test_manifest_keeps_only_what_exists_and_is_ok(tiny_export, tmp_path):
    """Examples missing on disk are dropped with a line; a failed model is listed with its reason, not
    served; the run's winner, if not served, is said so and the best on validation is offered."""
    from serve.manifest import load

    man = read_manifest(tiny_export)
    export = tmp_path / "export"
    shutil.copytree(tiny_export, export)
    man["examples"] = [man["examples"][0], "examples/no_such_photo.jpg"]
    man["models"]["lion"] = {"status": "failed: diverged at epoch 2"}
    man["winner"] = "lion"
    with open(export / "manifest.json", "w") as f:
        json.dump(man, f)
    loaded = load(str(export / "manifest.json"))
    assert loaded.examples == [os.path.realpath(export / man["examples"][0])]
    assert loaded.refused == ["refused example 'examples/no_such_photo.jpg': no such file in the export folder"]
    assert loaded.unavailable == {"lion": "failed: diverged at epoch 2"}
    assert sorted(loaded.models) == sorted(ok_models(tiny_export))
    assert loaded.winner == list(loaded.models)[0] and "lion, is not served here" in loaded.winner_note
    assert loaded.run == tmp_path.name  # "run": ".." names the folder above the manifest's


def test_browser_upload_shows_the_predicted_class(app, tiny_export, photos):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent (Debian: apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    man = read_manifest(tiny_export)
    winner = man["winner"]
    want = man["classes"][int(onnx_probs(tiny_export, winner, photos["jpeg"]).argmax())]
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
            text = page.inner_text("#prediction")
            assert winner in text and "ONNX Runtime" in text and "model confidence" in text
            # A broken upload: the message appears on the page, and the page keeps working.
            page.set_input_files("#photo input[type=file]", photos["truncated"])
            page.click("#classify")
            page.get_by_text("truncated.jpg: not a readable image").first.wait_for(timeout=60_000)
        finally:
            browser.close()


def test_demo_calls_a_real_bee_photo_bees(hym_export, tmp_path):
    from gradio_client import Client, handle_file

    bees = os.path.join(HYMENOPTERA, "val", "bees")
    photo = os.path.join(bees, sorted(os.listdir(bees))[1])  # odd position: held out as test
    app = App("--manifest", os.path.join(hym_export, "manifest.json"), log_dir=tmp_path)
    try:
        client = Client(app.url, verbose=False)
        label, _ = client.predict(handle_file(photo), "adam", "onnx", api_name="/classify")
        assert label["label"] == "bees", label
        assert max(c["confidence"] for c in label["confidences"]) > 0.8
    finally:
        app.stop()
