"""An INT8 ONNX model beside each float one (`export/to_onnx.py --int8`), proven on the test split like the float one.

1. Calibration photos: `Plan.photos` photos of the run's **training** split (the same number per class, drawn
   with `Plan.seed`; never validation, never test), through the run's preprocessing.
2. Quantization, ONNX Runtime's static post-training quantization of the proven float `model.onnx`:
   `quant_pre_process` (shape inference; Conv + BatchNorm fused), then `quantize_static` in QDQ format with
   int8 weights per output channel (symmetric) and uint8 activations per tensor, their ranges from the
   calibration photos (`Plan.method`). Kept in float (`kept_float`): everything after the global average
   pooling — the classifier, the average over the test-time views, the temperature and the softmax — so the
   INT8 model carries the same calibration and test-time views as the float one.
3. The proof: the INT8 model classifies the whole test split; its top-1 answer must equal the trained model's
   on at least `Plan.min_agreement` of the images and its test accuracy be within `Plan.max_acc_change` of the
   float model's; max |Δprob| is reported. Otherwise its status is "int8 parity failed: ...", its file is
   removed and it is never served (the float model still is).

What was chosen, and why (measured on insects4's **validation** split, 304 photos, efficientnet_lite0 320 px,
adadelta's model; the test split only proves): MinMax over 64 photos disagreed with the float model on 7 photos,
Entropy (128 photos) on 7, Percentile 99.999 (128 photos) on 8; MinMax is also the only one whose memory does
not grow with the photo count (it keeps each tensor's min and max per batch; the histogram methods keep every
activation of every photo: 128 photos needed more than 23 GB) and the fastest (10-20 s). Keeping single blocks in float changed nothing (6-7); keeping the
first four blocks in float halved max |Δprob| but still disagreed on 3-5 photos and gave up most of the speed
(b1 1.36x instead of 2.0x): not done. Paddle Inference has no INT8 path for Paddle 3's PIR models
(`enable_onednn_int8()` is accepted, but its pass list only deletes quantize/dequantize ops): not built.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np

import models
from models import inference as backends

FILE = "model.int8.onnx"
BACKEND = "onnx-int8"  # its key in the manifest's test_acc, max_abs_diff, latency_ms and throughput_ips
KEPT_FLOAT = ("everything after the global average pooling: the classifier, the average over the test-time views, "
              "the temperature and the softmax")
QUANTIZATION = ("ONNX Runtime quantize_static, QDQ: int8 weights per output channel (symmetric), uint8 activations "
                "per tensor")
METHODS = ("MinMax", "Entropy", "Percentile")
BATCH = 8  # calibration photos per ONNX Runtime call
VERSION = 1  # of how INT8 models are made: an export with another version makes them again
PARITY_FAILED = "int8 parity failed"


@dataclass(frozen=True)
class Plan:
    """How the INT8 models of an export are made and proven; recorded in each model's manifest entry."""
    method: str = "MinMax"  # ONNX Runtime CalibrationMethod (see the module's docstring for why)
    photos: int = 64  # training photos the activation ranges are taken from
    seed: int = 0  # which training photos
    min_agreement: float = 0.995  # share of test photos whose top-1 answer must equal the trained model's
    max_acc_change: float = 0.005  # |INT8 test accuracy - float test accuracy| allowed

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"INT8 calibration method {self.method!r} is unknown; choose one of {', '.join(METHODS)}")
        if self.photos < 1:
            raise ValueError(f"INT8 calibration needs at least 1 photo, got {self.photos}")

    def as_dict(self) -> dict:
        return {**asdict(self), "split": "train", "version": VERSION}


def done(block: dict | None, plan: Plan) -> bool:
    """Whether a manifest's "int8" block is this plan's finished result: proven, or failed its proof (the same files
    and photos fail it again). One that failed otherwise (an error) is tried again."""
    b = block or {}
    return b.get("plan") == plan.as_dict() and (b.get("status") == "ok" or str(b.get("status")).startswith(PARITY_FAILED))


def choose_photos(samples: list, classes: int, plan: Plan) -> list:
    """`plan.photos` samples of the training split, about the same number per class, drawn with `plan.seed` from
    each class's samples in path order: the same photos whatever the other splits hold."""
    rng = np.random.default_rng(plan.seed)
    per_class = [sorted((s for s in samples if s.label == c), key=lambda s: s.path) for c in range(classes)]
    want = [plan.photos // classes + (c < plan.photos % classes) for c in range(classes)]
    picked = [s for group, n in zip(per_class, want) for s in
              (group[i] for i in sorted(rng.permutation(len(group))[:n]))]
    return sorted(picked, key=lambda s: s.path)


@dataclass(frozen=True)
class Calibration:
    """The plan and its calibration photos (uint8 NHWC, the run's preprocessing), read once per export."""
    plan: Plan
    images: np.ndarray


def calibration(train: list, classes: int, spec: models.Preprocessing, plan: Plan) -> tuple[Calibration, list]:
    """The plan's calibration photos from the training samples `train`, and one note per unreadable one."""
    images, notes = [], []
    for s in choose_photos(train, classes, plan):
        try:
            images.append(spec.load_array(s.path))
        except models.ImageError as e:
            notes.append(f"calibration photo left out: {e}")
    return Calibration(plan, np.stack(images) if images else np.zeros((0, spec.size, spec.size, 3), np.uint8)), notes


class _Reader:
    """ONNX Runtime's CalibrationDataReader over normalized batches of the calibration photos."""

    def __init__(self, images: np.ndarray, spec: models.Preprocessing, input_name: str):
        self.batches = iter([{input_name: x} for x in backends.image_batches(images, spec, BATCH)])

    def get_next(self):
        return next(self.batches, None)


def after_pooling(graph) -> list:
    """Names of the nodes from each GlobalAveragePool on (all that depends on a pooled output): the part kept float."""
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    todo, kept = [n for n in graph.node if n.op_type == "GlobalAveragePool"], {}
    while todo:
        node = todo.pop()
        if node.name not in kept:
            kept[node.name] = None
            todo += [c for out in node.output for c in consumers.get(out, [])]
    return list(kept)


def quantize(float_onnx: str, dest: str, images: np.ndarray, spec: models.Preprocessing, plan: Plan,
             input_name: str) -> list:
    """Write the INT8 model of `float_onnx` to `dest` (atomically); returns the names of the nodes kept float."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    work = tempfile.mkdtemp(prefix=".int8-", dir=os.path.dirname(dest))
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.WARNING)  # quantize_static logs one INFO line per adjusted weight scale
    ort.set_default_logger_severity(3)  # and ONNX Runtime one warning per initializer quant_pre_process drops
    try:
        pre = os.path.join(work, "pre.onnx")
        quant_pre_process(float_onnx, pre)
        kept = after_pooling(onnx.load(pre, load_external_data=False).graph)
        out = os.path.join(work, FILE)
        quantize_static(pre, out, _Reader(images, spec, input_name), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, plan.method), nodes_to_exclude=kept)
        _share_equal_initializers(out)
        os.replace(out, dest)
    finally:
        logging.getLogger().setLevel(quiet)
        shutil.rmtree(work, ignore_errors=True)
    return kept


def _share_equal_initializers(path: str) -> None:
    """Store equal initializers once. The test-time views run the network twice; quant_pre_process fuses each
    view's Conv + BatchNorm into a weight of its own, so every weight would be in the file twice."""
    import onnx
    from onnx.numpy_helper import to_array

    model = onnx.load(path)
    first, rename, keep = {}, {}, []
    for t in model.graph.initializer:
        key = (t.data_type, tuple(t.dims), to_array(t).tobytes())
        if key in first:
            rename[t.name] = first[key]
        else:
            first[key] = t.name
            keep.append(t)
    if not rename:
        return
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    onnx.save(model, path)


def prove(reference: np.ndarray, probs: np.ndarray, labels: np.ndarray, plan: Plan,
          images: str = "test images") -> tuple[float, float, float, list]:
    """(INT8 test accuracy, top-1 agreement with the trained model, max |Δprob|, problems: one phrase per test missed)."""
    ref_pred, pred = reference.argmax(1), probs.argmax(1)
    acc, float_acc = float(np.mean(pred == labels)), float(np.mean(ref_pred == labels))
    agreement, diff = float(np.mean(pred == ref_pred)), float(np.max(np.abs(probs - reference)))
    problems = []
    if not agreement >= plan.min_agreement:
        problems.append(f"agrees with the trained model on {agreement:.1%} of {len(labels)} {images} "
                        f"(needs {plan.min_agreement:.1%})")
    if not abs(acc - float_acc) <= plan.max_acc_change + 1e-12:
        problems.append(f"test accuracy {acc:.1%} vs {float_acc:.1%} float (allowed: within {100 * plan.max_acc_change:.1f} pt)")
    if not np.isfinite(diff):
        problems.append("outputs are not finite")
    return acc, agreement, diff, problems


def export(folder: str, name: str, cal: Calibration, reference: np.ndarray, images: np.ndarray, labels: np.ndarray,
           spec: models.Preprocessing, device: backends.Device, timing: tuple, bench_s: float,
           input_name: str) -> tuple[dict, dict]:
    """Quantize `folder`/model.onnx (the float model, already proven), prove the result on the test images (uint8,
    `labels`; `reference`: the trained model's probabilities) and time it on `timing` (batch 1, batch N).

    Returns (the manifest's "int8" block, BACKEND's values for the entry's test_acc, max_abs_diff, latency_ms and
    throughput_ips). The INT8 file stays in `folder` only when its proof passed."""
    plan = cal.plan
    block = {"plan": plan.as_dict(), "quantization": QUANTIZATION, "kept_float": KEPT_FLOAT,
             "calibration_photos": int(len(cal.images))}
    if not len(cal.images):
        return {**block, "status": "failed: no readable training photo to calibrate on"}, {}
    dest = os.path.join(folder, FILE)
    t0 = time.perf_counter()
    block["float_nodes"] = quantize(os.path.join(folder, "model.onnx"), dest, cal.images, spec, plan, input_name)
    t1 = time.perf_counter()
    runner = backends.OnnxRunner(dest, device)
    probs = backends.predict(runner, images, spec)
    acc, agreement, diff, problems = prove(reference, probs, labels, plan)
    try:
        backends.check_probabilities(probs, reference.shape[1], "the INT8 model")
    except backends.Refused as e:
        problems.append(str(e).removesuffix("; not shown"))
    b1, bn = backends.speed(runner, *timing, bench_s)
    block.update(status="ok" if not problems else f"{PARITY_FAILED}: " + "; ".join(problems),
                 agreement=agreement, export_seconds=round(t1 - t0, 3),
                 proof_seconds=round(time.perf_counter() - t1, 3), bytes=os.path.getsize(dest))
    if problems:
        os.remove(dest)  # never served
    else:
        block["onnx"] = f"{name}/{FILE}"
    return block, {"test_acc": acc, "max_abs_diff": diff, "latency_ms": round(b1, 4),
                   "throughput_ips": round(bn, 1) if bn is not None else None}
