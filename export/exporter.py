"""Turn a run's best checkpoints into deployable files and prove the files agree with the trained model.

For each optimizer of `runs/<run>/` with a `<optimizer>/best.pdparams`:

1. rebuild the network (`models.build_model`), load the weights, add softmax, and `paddle.jit.save` it
   with a dynamic batch (`export/<optimizer>/inference.json` + `inference.pdiparams`);
2. convert that to ONNX with paddle2onnx in a child process (it calls sys.exit on failure), at an explicit
   opset, and run `onnx.checker` on the result (`export/<optimizer>/model.onnx`);
3. run the dygraph model, Paddle Inference and ONNX Runtime over the run's test split with the shared
   preprocessing: each backend must predict exactly what the trained model predicts, with
   max |Δprob| <= 1e-4; otherwise the model's status is "parity failed: ...";
4. with an INT8 plan (`--int8`), quantize the proven ONNX model, calibrated on training photos, and prove it
   on the same test split (export/int8.py): `export/<optimizer>/model.int8.onnx` and the entry's "int8" block.

`export/manifest.json` (models/manifest.py: format, writer, reader; every path relative to its folder) is
all the demo reads. A model whose checkpoint sha256, opset and device are unchanged is not exported again.

One export writes an export folder at a time (`export/.lock`), in a work folder of its own (`.tmp-<pid>-*`):
a model's files and manifest entry are replaced only once its new export passed the proof, so a failed
re-export leaves the previous, working one served.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field, replace

import numpy as np
from tqdm import tqdm

import models
from export import int8
from models import inference as backends
from models import manifest as contract
from models import ranking
from models import rundir
from models.dataset import DatasetError, open_dataset
from util import runtime
from util.io import CheckpointError, DamagedFile, FolderLock, load_paddle, remove_stale_temps, sha256, temp_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = os.path.join(ROOT, "runs")
TOLERANCE = 1e-4  # max |Δprob| allowed between an exported backend and the trained model
EXAMPLES_PER_CLASS = 2
INPUT_NAME = contract.INPUT_NAME


class RunError(Exception):
    """The run cannot be exported at all. The message is one line that says what to do."""


class ModelFailed(Exception):
    """One model could not be exported; the message is its manifest status ("failed: ...")."""


@dataclass
class Run:
    dir: str
    saved: rundir.RunDir  # what training wrote (models/rundir.py)
    results: dict  # optimizer -> results.json row
    checkpoints: dict  # optimizer -> best.pdparams path, in the run's optimizer order
    notes: list = field(default_factory=list)
    winner: str | None = None  # results.json "winner": chosen by training on validation accuracy

    @property
    def size(self) -> int:
        return self.saved.image_size

    @property
    def preprocessing(self) -> models.Preprocessing:
        return self.saved.preprocessing

    @property
    def classes(self) -> list:
        return self.saved.classes

    @property
    def model(self) -> str:
        return self.saved.model


@dataclass(frozen=True)
class Options:
    """How an export runs, chosen once (export/to_onnx.py's arguments)."""
    optimizers: tuple | None = None  # None: every optimizer with a best checkpoint
    winner_only: bool = False  # just the run's winner
    opset: int = 13
    force: bool = False  # export again even when nothing changed
    device: backends.Device | None = None  # None: the GPU when usable, else the CPU
    data_root: str | None = None  # the dataset, if it moved since training
    tolerance: float = TOLERANCE  # the proof: max |Δprob| an exported backend may differ from the trained model by
    progress: bool = True
    bench_s: float = 0.25  # seconds of timing per backend and batch size
    int8: int8.Plan | None = None  # also an INT8 model per optimizer, made and proven by this plan (--int8)


@dataclass
class TestSplit:
    images: np.ndarray  # uint8 N x S x S x 3
    labels: np.ndarray  # int N
    paths: list


def newest_run(runs_dir: str = RUNS) -> str:
    """The run folder under `runs_dir` whose config.json is newest."""
    found = rundir.newest(runs_dir)
    if found is None:
        raise RunError(f"no runs under {runs_dir}: train one first (python train/run_all.py) or pass --run DIR")
    return found


def open_run(run_dir: str, optimizers: list | None = None, winner_only: bool = False) -> Run:
    """The run's settings, results and best checkpoints; RunError if nothing can be exported.
    `winner_only`: just the run's winner (results.json's, else the winner rule on its rows: models/ranking.py)."""
    saved, summary = _read_run(run_dir)
    results, run_dir = summary.get("optimizers", {}), saved.path
    names = saved.optimizers
    have = {n: saved.checkpoint(n) for n in names if os.path.isfile(saved.checkpoint(n))}
    named = summary.get("winner") if isinstance(summary.get("winner"), str) and summary.get("winner") else None
    if winner_only:
        best = named or ranking.winner({n: results.get(n, {}) for n in have})
        if best is None:
            raise RunError(f"{run_dir}/results.json names no winner and gives no best validation accuracy to choose "
                           f"one on; pass --optimizers instead of --winner")
        optimizers = [best]
    if optimizers:
        have = _selected(run_dir, names, have, optimizers, results)
    if not have:
        raise RunError(f"{run_dir} has no best checkpoints (<optimizer>/best.pdparams): its training did not finish; "
                       f"rerun train/run_all.py (it resumes)")
    notes = [f"not exported: {n} has no best checkpoint ({_train_status(results, n)})" for n in names if n not in have
             and not optimizers]
    return Run(run_dir, saved, results, have, notes, named)


def _read_run(run_dir: str) -> tuple[rundir.RunDir, dict]:
    try:
        saved = rundir.read(run_dir)
    except rundir.RunDirError as e:
        raise RunError(f"{e}: pass --run runs/<name>, or omit --run for the newest run") from None
    except DamagedFile as e:
        raise RunError(f"{e}: the run's settings are lost, so it cannot be exported; run the training command that "
                       f"made it again (train/run_all.py says how to recover)") from None
    try:
        return saved, saved.results()
    except DamagedFile as e:
        raise RunError(f"{e}; run the training command that made this run again: it rewrites results.json from "
                       f"the optimizers' own files without training again") from None


def _selected(run_dir: str, names: list, have: dict, optimizers: list, results: dict) -> dict:
    unknown = [o for o in optimizers if o not in names]
    if unknown:
        raise RunError(f"this run has no optimizer {', '.join(unknown)}; it has: {', '.join(names)}")
    lacking = [o for o in optimizers if o not in have]
    if lacking:
        raise RunError(f"no best checkpoint for {', '.join(lacking)} ({_train_status(results, lacking[0])}); "
                       f"train it again or leave it out of --optimizers")
    return {o: have[o] for o in names if o in optimizers}


def dataset_of(config: dict) -> dict:
    """What the manifest says about the training data: its name, and whether it was generated pictures."""
    data = config.get("data") or {}
    notes = " ".join(str(n) for n in data.get("notes") or [])
    synthetic = bool(data.get("synthetic")) or data.get("layout") == "synthetic" or "synthetic" in notes.lower()
    name = os.path.basename(str(data.get("root") or "").rstrip("/\\")) or "unknown"
    return {"name": name, "synthetic": synthetic}


BOARD = rundir.BOARD


def copy_board(run_dir: str, out: str) -> dict:
    """Copy whichever of the run's BOARD files exist into out/board/ (the demo opens nothing outside its
    export folder); returns the manifest's "leaderboard" block. Unchanged files are left as they are."""
    found = [f for f in BOARD if os.path.isfile(os.path.join(run_dir, f))]
    dest = os.path.join(out, "board")

    def same(f):
        a, b = os.path.join(run_dir, f), os.path.join(dest, f)
        if not os.path.isfile(b) or os.path.getsize(a) != os.path.getsize(b):
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            return fa.read() == fb.read()

    there = sorted(os.listdir(dest)) if os.path.isdir(dest) else []
    if not (there == sorted(found) and all(same(f) for f in found)):
        tmp = temp_dir(out)
        for f in found:
            shutil.copyfile(os.path.join(run_dir, f), os.path.join(tmp, f))
        replace_dir(tmp, dest)
    rel = {f: f"board/{f}" for f in found}
    return {"markdown": rel.get("leaderboard.md"),
            "plots": [rel[f] for f in ("compare.png", "leaderboard.png", "calibration.png", "confusion.png") if f in rel],
            "mistakes": rel.get("mistakes.png")}


def _train_status(results: dict, name: str) -> str:
    return f"training status: {results.get(name, {}).get('status', 'unknown')}"


def split_samples(run: Run, split: str, data_root: str | None = None) -> tuple[list, str]:
    """The samples of one split of the run's dataset, minus the files training skipped, and the dataset's folder.
    RunError when the dataset cannot be opened or has other classes than the run."""
    data = run.saved.data
    root = data_root or data.get("root", "")
    try:
        ds = open_dataset(root)
    except DatasetError as e:
        raise RunError(f"cannot open the run's dataset: {e}; the test split proves the exported models, "
                       f"so pass --data DIR if the dataset moved") from None
    if list(ds.classes) != run.classes:
        raise RunError(f"{ds.root} has classes {', '.join(ds.classes)} but the run was trained on {', '.join(run.classes)}; "
                       f"pass --data with the run's dataset")
    note = f"the dataset at {ds.root} changed since training (fingerprint differs); figures use the current files"
    if data.get("fingerprint") and ds.fingerprint() != data["fingerprint"] and note not in run.notes:
        run.notes.append(note)
    skipped = {s["path"].replace("\\", "/") for s in data.get("skipped", [])}
    roots = {ds.root, os.path.abspath(root)}
    return [s for s in ds.split(split) if not {os.path.relpath(s.path, r) for r in roots} & skipped], ds.root


def load_test_split(run: Run, data_root: str | None = None, progress: bool = True) -> TestSplit:
    """The run's test images (minus the ones training skipped), decoded and resized by the run's preprocessing."""
    samples, root = split_samples(run, "test", data_root)
    if not samples:
        raise RunError(f"the dataset at {root} has no test images; give it a test split (Kaggle labels.csv "
                       f"is_final_validation, or a test/ folder) or pass --data DIR")
    images, labels, paths, spec = [], [], [], run.preprocessing
    for s in tqdm(samples, desc="test images", unit="img", leave=False, disable=None if progress else True):
        try:
            images.append(spec.load_array(s.path))
        except models.ImageError as e:
            run.notes.append(f"test image left out: {e}")
            continue
        labels.append(s.label)
        paths.append(s.path)
    if not images:
        raise RunError(f"none of the {len(samples)} test images in {root} could be read; check the dataset")
    return TestSplit(np.stack(images), np.asarray(labels), paths)


def calibration_of(run: Run, name: str) -> dict:
    """The model's calibration, fitted on validation by training (train/calibration.py): {"temperature", "threshold"};
    T = 1 and no "not sure" threshold for runs trained before calibration existed."""
    cal = run.results.get(name, {}).get("calibration") or {}
    return {"temperature": float(cal.get("temperature", 1.0)), "threshold": float(cal.get("threshold", 0.0)),
            "fitted": bool(cal)}


def load_network(run: Run, name: str) -> backends.Deployed:
    """The trained network of optimizer `name` as it is deployed (test-time views, temperature, softmax), in eval
    mode; ModelFailed if the checkpoint is unreadable or does not fit the run's network."""
    path = run.checkpoints[name]
    rel = os.path.relpath(path, run.dir)
    try:
        state = load_paddle(path)
    except CheckpointError as e:
        raise ModelFailed(f"failed: {str(e).replace(path, rel)}; retrain {name} or remove its folder") from None
    net = models.build_model(run.model, len(run.classes), image_size=run.size)
    want = net.state_dict()
    if not isinstance(state, dict):
        raise ModelFailed(f"failed: {rel} holds a {type(state).__name__}, not a state dict; retrain {name}")
    bad = [k for k in want if k not in state or list(state[k].shape) != list(want[k].shape)]
    if bad:
        raise ModelFailed(f"failed: {rel} does not fit {run.model} with {len(run.classes)} classes "
                          f"({len(bad)} of {len(want)} weights missing or misshapen, e.g. {bad[0]}); retrain {name}")
    net.set_state_dict(state)
    return backends.Deployed(net, calibration_of(run, name)["temperature"], run.saved.settings["tta"]).eval()


def check_parity(probs: dict, labels: np.ndarray, tolerance: float = TOLERANCE) -> tuple[dict, dict, list]:
    """Compare each exported backend's probabilities with probs["dygraph"] (the trained model).

    Returns (test accuracy per backend, with the reference as "trained"; max |Δprob| per backend;
    problems: one phrase per backend that predicts any image differently or is off by more than `tolerance`).
    """
    ref = probs["dygraph"]
    ref_pred = ref.argmax(1)
    acc, diff, problems = {"trained": float(np.mean(ref_pred == labels))}, {}, []
    for k, p in probs.items():
        if k == "dygraph":
            continue
        if p.shape != ref.shape:
            problems.append(f"{k} outputs shape {list(p.shape)}, expected {list(ref.shape)}")
            continue
        diff[k] = float(np.max(np.abs(p - ref)))
        acc[k] = float(np.mean(p.argmax(1) == labels))
        differ = int(np.sum(p.argmax(1) != ref_pred))
        if differ:
            problems.append(f"{k} differs from the trained model on {differ} of {len(ref)} test images")
        if not diff[k] <= tolerance:  # also catches NaN
            problems.append(f"{k} max |Δprob| {diff[k]:.2e} > {tolerance:g}")
    return acc, diff, problems


def replace_dir(tmp: str, dest: str) -> None:
    """Put the finished folder `tmp` at `dest`, replacing what was there (two renames, never half a folder)."""
    old = os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.old")
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(dest):
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def reference_probabilities(layer: backends.Deployed, images: np.ndarray, spec: models.Preprocessing, memo: dict) -> np.ndarray:
    """The trained model's probabilities on the test images (dygraph, eval mode, its test-time views and temperature):
    what the exported files must equal.

    The optimizers of an efficientnet_lite0 run usually share the whole backbone (the "head" regime trains only
    fc), and dygraph is slow at this size on a CPU: the pooled features of each view are computed once per distinct
    backbone (memo, keyed by the hash of its weights), then each model's own classifier runs on them — the same
    operations as a whole forward pass, done once instead of once per optimizer."""
    from models.efficientnet import NUM_BLOCKS, EfficientNetLite0, Frozen, Top, frozen_sha

    net, views = layer.net, backends.TTA[layer.tta]
    flip = {"identity": lambda x: x, "hflip": lambda x: x[:, :, ::-1]}
    if not isinstance(net, EfficientNetLite0):
        batches = ([spec.normalize(flip[v](images[i:i + 64])) for v in views] for i in range(0, len(images), 64))
        return np.exp(backends.log_probabilities(net, batches, layer.temperature))
    key = frozen_sha(net, NUM_BLOCKS)
    if key not in memo:
        frozen = backends.DygraphRunner(Frozen(net, NUM_BLOCKS))
        memo[key] = {v: backends.predict(frozen, flip[v](images), spec) for v in backends.TTA["hflip"]}
    return np.exp(backends.log_probabilities(Top(net, NUM_BLOCKS), [[memo[key][v] for v in views]], layer.temperature))


def export_model(run: Run, name: str, out: str, split: TestSplit, options: Options, memo: dict | None = None,
                 cal: int8.Calibration | None = None) -> tuple[dict, str, str]:
    """Export one optimizer's model into out/<name>/ and prove it; with `cal`, its INT8 model too (`add_int8`).
    Returns (manifest entry, onnx provider, output name)."""
    device, bench_s = options.device, options.bench_s
    t0 = time.perf_counter()
    layer = load_network(run, name)
    load_seconds = time.perf_counter() - t0
    reference = backends.DygraphRunner(layer)
    spec = run.preprocessing
    x1, xb = backends.timing_inputs(split.images, spec)
    probs = {"dygraph": reference_probabilities(layer, split.images, spec, {} if memo is None else memo)}
    speeds = {"dygraph": backends.speed(reference, x1, None, bench_s)}  # batch-1 latency only: it is not deployed
                                                                           # (bench/bench_export.py times its throughput)
    t1 = time.perf_counter()

    tmp = os.path.join(out, f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    backends.save_static(layer, tmp, [None, 3, run.size, run.size], INPUT_NAME)
    try:
        got_opset = backends.to_onnx(tmp, options.opset)
    except backends.ConversionError as e:
        raise ModelFailed(f"failed: {e}") from None
    replace_dir(tmp, os.path.join(out, name))
    export_seconds = load_seconds + time.perf_counter() - t1  # load + jit.save + paddle2onnx + checker

    files = {"paddle": {"model": f"{name}/inference.json", "params": f"{name}/inference.pdiparams"}, "onnx": f"{name}/model.onnx"}
    runners = {"paddle": backends.PaddleRunner(os.path.join(out, files["paddle"]["model"]), os.path.join(out, files["paddle"]["params"]), device),
               "onnx": backends.OnnxRunner(os.path.join(out, files["onnx"]), device)}
    for k, r in runners.items():
        probs[k] = backends.predict(r, split.images, spec)
        speeds[k] = backends.speed(r, x1, xb, bench_s)

    problems = [f"{k} input is named {r.input_name!r}, not {INPUT_NAME!r}" for k, r in runners.items() if r.input_name != INPUT_NAME]
    acc, diff, more = check_parity(probs, split.labels, options.tolerance)
    problems += more
    n = int(len(split.labels))
    entry = {
        "status": "ok" if not problems else "parity failed: " + "; ".join(problems),
        **files,
        "opset": got_opset,
        "test_acc": acc,
        "test_images": n,
        "max_abs_diff": diff,
        "latency_ms": {f"{k}_b1": round(v[0], 4) for k, v in speeds.items()},
        "throughput_ips": {f"{k}_b{len(xb)}": round(v[1], 1) for k, v in speeds.items() if v[1] is not None},
        "export_seconds": round(export_seconds, 3),
        "calibration": {k: v for k, v in calibration_of(run, name).items() if k != "fitted"},
    }
    if cal is not None and not problems:
        add_int8(entry, os.path.join(out, name), name, cal, probs["dygraph"], split, run.preprocessing, device,
                 (x1, xb), bench_s)
    trained = run.results.get(name, {}).get("test_acc")
    if trained is not None and abs(trained - acc["trained"]) > 1e-9:
        run.notes.append(f"{name}: results.json says test acc {trained:.4f}, the checkpoint scores "
                         f"{acc['trained']:.4f} on the {n} test images read now")
    return entry, runners["onnx"].provider, runners["onnx"].output_name


def add_int8(entry: dict, folder: str, name: str, cal: int8.Calibration, reference: np.ndarray, split: TestSplit,
             spec: models.Preprocessing, device: backends.Device, timing: tuple, bench_s: float) -> None:
    """Add the INT8 model of the proven float model in `folder` to its manifest entry (export/int8.py): the "int8"
    block, and its figures under int8.BACKEND beside the float backends'. Whatever fails here fails the INT8 model
    only, never the float one."""
    try:
        block, figures = int8.export(folder, name, cal, reference, split.images, split.labels, spec, device, timing,
                                     bench_s, INPUT_NAME)
    except Exception as e:  # noqa: BLE001 - ONNX Runtime's quantization raises many types; the float model stays served
        runtime.check_stop()
        if os.path.exists(os.path.join(folder, int8.FILE)):
            os.remove(os.path.join(folder, int8.FILE))
        block, figures = {"plan": cal.plan.as_dict(), "status": f"failed: {type(e).__name__}: "
                          f"{(str(e).strip().splitlines() or [''])[0][:200]}"}, {}
    entry["int8"] = block
    keys = {"test_acc": int8.BACKEND, "max_abs_diff": int8.BACKEND, "latency_ms": f"{int8.BACKEND}_b1",
            "throughput_ips": f"{int8.BACKEND}_b{len(timing[1])}"}
    for field, value in figures.items():
        if value is not None:
            entry[field][keys[field]] = value


def copy_examples(split: TestSplit, classes: list, out: str, per_class: int = EXAMPLES_PER_CLASS) -> list:
    """Copy up to `per_class` readable test images per class into out/examples/ (so a copied run folder
    still has them); returns their paths relative to `out`."""
    chosen = []
    for label in range(len(classes)):
        chosen += [(label, p) for p in [p for p, y in zip(split.paths, split.labels) if y == label][:per_class]]
    tmp, rels = temp_dir(out), []
    for i, (label, src) in enumerate(chosen):
        name = f"{i:02d}_{classes[label]}{os.path.splitext(src)[1].lower()}"
        shutil.copyfile(src, os.path.join(tmp, name))
        rels.append(f"examples/{name}")
    replace_dir(tmp, os.path.join(out, "examples"))
    return rels


def _files_exist(out: str, entry: dict) -> bool:
    int8_file = (entry.get("int8") or {}).get("onnx")
    paths = [entry.get("onnx"), *(entry.get("paddle") or {}).values(), *([int8_file] if int8_file else [])]
    return all(p and os.path.isfile(os.path.join(out, p)) for p in paths)


@dataclass
class Row:
    name: str
    entry: dict
    action: str  # "exported" | "unchanged" | "failed"


@dataclass
class Report:
    run: Run
    manifest_path: str
    manifest: dict
    rows: list

    @property
    def failed(self) -> list:
        return [r for r in self.rows if r.entry["status"] != "ok"]


def export_run(run_dir: str, options: Options = Options()) -> Report:
    """Export every selected model of a run (or only its winner; skipping unchanged ones unless `options.force`) and
    write the manifest (only when its content changes), holding the export folder's lock (Busy, naming the
    holder's pid, when another export holds it). With `options.int8`, an INT8 model beside each (export/int8.py)."""
    run = open_run(run_dir, list(options.optimizers) if options.optimizers else None, options.winner_only)
    lock = FolderLock(os.path.join(run.dir, "export"), "wait for that export to end")
    try:
        return _export_run(run, replace(options, device=options.device or backends.choose_device("auto")))
    finally:
        lock.release()


def _export_run(run: Run, options: Options) -> Report:
    device = options.device
    out = os.path.join(run.dir, "export")
    path = os.path.join(out, contract.FILE)
    prev, prev_models = _previous(run, path, device)
    shas = {n: sha256(p) for n, p in run.checkpoints.items()}
    calibrations = {n: {k: v for k, v in calibration_of(run, n).items() if k != "fitted"} for n in run.checkpoints}
    todo = [n for n in run.checkpoints
            if options.force or not _unchanged(prev_models.get(n), shas[n], options.opset, out, calibrations[n],
                                               options.int8)]
    split = load_test_split(run, options.data_root, options.progress) if todo else None
    cal = None
    if options.int8 is not None and todo:  # training photos only: the test split proves, it never calibrates
        cal, notes = int8.calibration(split_samples(run, "train", options.data_root)[0], len(run.classes),
                                      run.preprocessing, options.int8)
        run.notes += notes
    _clean(out)
    work = temp_dir(out)  # this process's own: each model is made and proven here, then moved into out
    try:
        rows, provider, output_name = _export_all(run, Batch(todo, prev_models, shas, out, work, split, cal), options)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    entries = _entries(run, rows, prev, prev_models, out)
    if provider and provider != device.onnx:
        run.notes.append(f"ONNX Runtime could not use {device.onnx}; it ran on {provider}")
        device = replace(device, onnx=provider)
    examples = copy_examples(split, run.classes, out) if split is not None else \
        [p for p in prev.get("examples", []) if os.path.isfile(os.path.join(out, p))]
    winner, chosen_by = run.winner, "results.json (training: best validation accuracy)"
    if winner is None:
        winner = ranking.winner({n: run.results.get(n, {}) for n, e in entries.items() if e.get("status") == "ok"})
        chosen_by = f"export, among the exported models: {ranking.WINNER_RULE}"
    manifest = contract.document(
        model=run.model, classes=run.classes, spec=run.preprocessing, tta=run.saved.settings["tta"], dataset=dataset_of(run.saved.config),
        output_name=output_name or (prev.get("output") or {}).get("name"), device=device.as_dict(), winner=winner,
        winner_chosen_by=chosen_by, examples=examples, leaderboard=copy_board(run.dir, out), models=entries)
    return Report(run, path, contract.write(path, manifest, prev), rows)


def _previous(run: Run, path: str, device: backends.Device) -> tuple[dict, dict]:
    """The previous manifest ({} if none or unreadable) and its model entries that may be reused (same device,
    classes, model and preprocessing)."""
    prev = {}
    if os.path.exists(path):
        try:
            prev = contract.read(path)
        except contract.ManifestError:
            run.notes.append("the previous manifest.json was unreadable or of another format: every model is exported again")
    same_setup = prev.get("device") == device.as_dict() and prev.get("classes") == run.classes and \
        prev.get("model") == run.model and prev.get("preprocessing") == run.preprocessing.as_dict()
    return prev, (prev.get("models", {}) if same_setup else {})


def _unchanged(entry: dict | None, sha: str, opset: int, out: str, calibration: dict, int8_plan: int8.Plan | None) -> bool:
    """Whether the previous export of a model stands: same checkpoint, opset and calibration, its files there, and,
    when INT8 is asked for, an INT8 model made by the same plan (`int8.done`)."""
    e = entry or {}
    return e.get("status") == "ok" and e.get("checkpoint_sha256") == sha and e.get("opset") == opset and _files_exist(out, e) \
        and e.get("calibration") == calibration \
        and (int8_plan is None or int8.done(e.get("int8"), int8_plan))


def _clean(out: str) -> None:
    """What a killed export left: atomic writes' temp files, and its working folders."""
    os.makedirs(out, exist_ok=True)
    remove_stale_temps(out)
    for f in os.listdir(out):
        if (f.endswith(".tmp") or f.endswith(".old")) and f.startswith(".") and os.path.isdir(os.path.join(out, f)):
            shutil.rmtree(os.path.join(out, f), ignore_errors=True)


@dataclass
class Batch:
    """This export's models: which to export (todo; the others are unchanged), their earlier manifest entries and
    checkpoint hashes, the export folder, this process's work folder, the test split they are proven on and the INT8
    calibration."""
    todo: list
    prev_models: dict
    shas: dict
    out: str
    work: str
    split: TestSplit | None
    cal: int8.Calibration | None = None  # the INT8 calibration photos, when INT8 models are made


def _export_all(run: Run, batch: Batch, options: Options) -> tuple[list, str | None, str | None]:
    """One Row per selected model (exported, unchanged or failed); the ONNX provider and output name used. Each
    model is exported and proven in the work folder; its files replace those in the export folder only when the proof
    passed."""
    rows, output_name, provider, memo = [], None, None, {}
    for n in tqdm(run.checkpoints, desc="export", unit="model", disable=None if options.progress and batch.todo else True):
        if n not in batch.todo:
            rows.append(Row(n, batch.prev_models[n], "unchanged"))
            continue
        try:
            entry, provider, output_name = export_model(run, n, batch.work, batch.split, options, memo, batch.cal)
        except ModelFailed as e:
            runtime.check_stop()  # paddle2onnx killed by Ctrl+C is not this model's fault
            entry = {"status": str(e)}
        except Exception as e:  # noqa: BLE001 - an unexpected error in one model must not stop the others; it is its status
            runtime.check_stop()  # an interrupt that Paddle's code re-raised as its own error
            entry = {"status": f"failed: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"}
        if entry["status"] == "ok":
            replace_dir(os.path.join(batch.work, n), os.path.join(batch.out, n))
        shutil.rmtree(os.path.join(batch.work, n), ignore_errors=True)
        shutil.rmtree(os.path.join(batch.work, f".{n}.tmp"), ignore_errors=True)
        res = run.results.get(n, {})
        entry.update(checkpoint_sha256=batch.shas[n], best_val_acc=res.get("best_val_acc"), best_epoch=res.get("best_epoch"))
        rows.append(Row(n, entry, "exported" if entry["status"] == "ok" else "failed"))
    return rows, provider, output_name


def _entries(run: Run, rows: list, prev: dict, prev_models: dict, out: str) -> dict:
    """The manifest's models in the run's order: this export's (a failed one keeps its earlier working entry), plus
    those exported earlier but not selected now while their checkpoint and files are unchanged."""
    entries = {r.name: r.entry for r in rows}
    for r in rows:
        earlier = prev_models.get(r.name) or {}
        if r.action == "failed" and earlier.get("status") == "ok" and _files_exist(out, earlier):
            entries[r.name] = earlier
            run.notes.append(f"{r.name}: the new export failed, so the manifest keeps its previous one (still served)")
    for n, e in prev.get("models", {}).items():
        if n in entries:
            continue
        ckpt = run.saved.checkpoint(n)
        if n in prev_models and os.path.isfile(ckpt) and e.get("checkpoint_sha256") == sha256(ckpt) and _files_exist(out, e):
            entries[n] = e
        else:
            run.notes.append(f"{n} left out of the manifest (its checkpoint or device changed): export it with --optimizers {n}")
    order = list(run.saved.optimizers) + sorted(entries)
    return {n: entries[n] for n in dict.fromkeys(order) if n in entries}
