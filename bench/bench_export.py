"""Speed of the exported models against the trained (dygraph) model, measured in one process on the same inputs.

    python bench/bench_export.py                       # newest run, its first exported model
    python bench/bench_export.py --run runs/hym --optimizer adam --seconds 3 --sweep

Prints batch-1 latency and batch-32 throughput for dygraph (eval mode), Paddle Inference, ONNX Runtime and its
INT8 model, the ratios the export promises (ONNX Runtime b1 latency <= 1/3 of dygraph's, Paddle Inference < 1),
INT8 ÷ float, and per model its export time, INT8 test accuracy, agreement, max |Δprob| and file sizes from the
manifest. The run is exported first (with --int8) if it is not yet (export/to_onnx.py). The INT8 model timed is
made here, in a temporary folder, with the export's plan (a model that failed its proof keeps no file).
Backends are timed in interleaved rounds, so a neighbour's load on a shared machine hits them alike.
--sweep also times the CPU settings one can tune (threads, oneDNN, IR optimisation, ORT graph level).
--features: would INT8 suit training's feature extraction (the frozen backbone over the training photos)?
The same proof against the float features, through every optimizer's classifier, and the speed of both.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import models  # noqa: E402,F401  (first: quiets Paddle)
import numpy as np  # noqa: E402

from export import exporter, int8  # noqa: E402
from models import inference as backends  # noqa: E402
from util.fmt import pct  # noqa: E402


def measure(runners: dict, x1: np.ndarray, xb: np.ndarray, seconds: float, rounds: int = 5) -> dict:
    """name -> (b1 latency ms, batch throughput img/s): median over `rounds` interleaved rounds of timed calls."""
    t1 = {k: [] for k in runners}
    tb = {k: [] for k in runners}
    for _ in range(rounds):
        for k, run in runners.items():
            t1[k] += backends.call_times(run, x1, seconds / rounds / 2, min_calls=3)
            tb[k] += backends.call_times(run, xb, seconds / rounds / 2, min_calls=2)
    return {k: (float(np.median(t1[k])) * 1e3, len(xb) / float(np.median(tb[k]))) for k in runners}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="run folder (default: the newest under runs/)")
    ap.add_argument("--optimizer", help="which model to export (if not yet) and time (default: every model exported, the first ok one timed)")
    ap.add_argument("--seconds", type=float, default=3.0, help="timing budget per backend and setting")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    ap.add_argument("--threads", type=int, default=None, help="CPU threads per backend (default: the exporter's)")
    ap.add_argument("--sweep", action="store_true", help="also time the tunable CPU settings")
    ap.add_argument("--features", action="store_true", help="also measure INT8 for training's feature extraction")
    args = ap.parse_args(argv)
    try:
        device = backends.choose_device(args.device, args.threads)
        report = exporter.export_run(args.run or exporter.newest_run(),
                                     exporter.Options(device=device, progress=False, int8=int8.Plan(),
                                                      optimizers=(args.optimizer,) if args.optimizer else None))
        ok = [n for n, e in report.manifest["models"].items() if e["status"] == "ok"]
        name = args.optimizer or (ok[0] if ok else None)
        if name not in ok:
            raise exporter.RunError(f"no exported model {name!r} with status ok; exported ok: {', '.join(ok) or 'none'}")
        split = exporter.load_test_split(report.run, progress=False)
    except (exporter.RunError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = os.path.dirname(report.manifest_path)
    entry = report.manifest["models"][name]
    files = (os.path.join(out, entry["paddle"]["model"]), os.path.join(out, entry["paddle"]["params"]), os.path.join(out, entry["onnx"]))
    x1, xb = backends.timing_inputs(split.images, report.run.preprocessing)
    S = report.run.size
    print(f"run {report.run.dir}  model {report.run.model} @ {S}px  optimizer {name}  "
          f"device paddle={device.paddle} onnx={device.onnx} threads={device.threads} onednn={device.onednn}")

    work = tempfile.mkdtemp(prefix="bench-int8-")
    try:
        cal, _ = int8.calibration(exporter.split_samples(report.run, "train")[0], len(report.run.classes),
                                  report.run.preprocessing, int8.Plan())
        int8_file = os.path.join(work, int8.FILE)
        int8.quantize(files[2], int8_file, cal.images, report.run.preprocessing, cal.plan, report.manifest["input"]["name"])
        runners = {"dygraph": backends.DygraphRunner(exporter.load_network(report.run, name)),
                   "paddle": backends.PaddleRunner(files[0], files[1], device),
                   "onnx": backends.OnnxRunner(files[2], device),
                   "onnx-int8": backends.OnnxRunner(int8_file, device)}
        speed = measure(runners, x1, xb, args.seconds)
        sizes = {"onnx": os.path.getsize(files[2]), "onnx-int8": os.path.getsize(int8_file)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'backend':<10}{'b1 latency ms':>15}{f'b{len(xb)} img/s':>14}")
    for k, (lat, ips) in speed.items():
        print(f"{k:<10}{lat:>15.3f}{ips:>14.1f}")
    d = speed["dygraph"][0]
    print(f"\nONNX Runtime b1 latency / dygraph     = {speed['onnx'][0] / d:.3f}   (target <= 0.333)")
    print(f"Paddle Inference b1 latency / dygraph = {speed['paddle'][0] / d:.3f}   (target < 1)")
    print(f"b{len(xb)} throughput vs dygraph: paddle x{speed['paddle'][1] / speed['dygraph'][1]:.1f}, "
          f"onnx x{speed['onnx'][1] / speed['dygraph'][1]:.1f}")
    q, f = speed["onnx-int8"], speed["onnx"]
    print(f"ONNX Runtime INT8 ÷ float: b1 latency {q[0] / f[0]:.3f} ({f[0] / q[0]:.2f}x faster), b{len(xb)} throughput "
          f"x{q[1] / f[1]:.2f}; file {sizes['onnx-int8'] / 1e6:.1f} MB vs {sizes['onnx'] / 1e6:.1f} MB "
          f"({sizes['onnx-int8'] / sizes['onnx']:.2f})")
    print("Paddle Inference INT8: not built (Paddle 3's PIR models have no oneDNN INT8 pass; export/int8.py)")
    print_int8(report.manifest)
    checks = []
    for _ in range(10):
        t = time.perf_counter()
        backends.check_onnx(files[2], report.manifest["input"]["name"], S, len(report.run.classes))
        checks.append(time.perf_counter() - t)
    print(f"\nONNX check before a runtime opens the model (external data, input/output shapes): "
          f"{1e3 * float(np.median(checks)):.1f} ms per open (median of 10)")
    print("\nexport time per model (checkpoint load + jit.save + paddle2onnx + onnx.checker, from the manifest):")
    for n, e in report.manifest["models"].items():
        print(f"  {n:<12}{_s(e.get('export_seconds'))}  {e['status']}")

    if args.sweep and device.paddle == "cpu":
        print(f"\nCPU settings (same inputs; b1 ms / b{len(xb)} img/s):")
        for threads in sorted({1, device.threads, backends.usable_cores()}):
            dev = replace(device, threads=threads)
            backends.set_dygraph_threads(threads)
            variants = {
                f"dygraph            threads={threads}": runners["dygraph"],
                f"paddle oneDNN+IR   threads={threads}": backends.PaddleRunner(files[0], files[1], replace(dev, onednn=True)),
                f"paddle oneDNN,noIR threads={threads}": backends.PaddleRunner(files[0], files[1], replace(dev, onednn=True), ir_optim=False),
                f"paddle plain+IR    threads={threads}": backends.PaddleRunner(files[0], files[1], replace(dev, onednn=False)),
                f"onnx graph=all     threads={threads}": backends.OnnxRunner(files[2], dev),
                f"onnx graph=basic   threads={threads}": backends.OnnxRunner(files[2], dev, graph_opt="basic"),
            }
            for k, (lat, ips) in measure(variants, x1, xb, args.seconds).items():
                print(f"  {k}  {lat:8.3f} ms  {ips:8.1f} img/s")
    if args.features:
        features(report.run, device)
    return 0


def features(run, device) -> None:
    """INT8 for training's feature extraction (the head regime's frozen backbone -> pooled features): float and INT8
    features of every training photo and its mirror image, each optimizer's classifier on both, and the time each
    extraction took (the same runners and threads). The proof is the export's, with training photos in place of test."""
    from models.efficientnet import NUM_BLOCKS, EfficientNetLite0, Top
    from train.features import frozen_runner

    spec = run.preprocessing
    samples = exporter.split_samples(run, "train")[0]
    images = np.stack([spec.load_array(s.path) for s in samples])
    labels = np.array([s.label for s in samples])
    nets = {n: exporter.load_network(run, n) for n in run.checkpoints}
    first = next(iter(nets.values()))
    if not isinstance(first.net, EfficientNetLite0):
        print(f"\nfeatures: {run.model} has no frozen feature extractor; nothing to measure")
        return
    work = tempfile.mkdtemp(prefix="bench-features-")
    try:
        frozen_runner(first.net, NUM_BLOCKS, spec.size, work, device.paddle)  # training's own frozen ONNX model
        float_file, int8_file = os.path.join(work, "model.onnx"), os.path.join(work, int8.FILE)
        cal, _ = int8.calibration(samples, len(run.classes), spec, int8.Plan())
        int8.quantize(float_file, int8_file, cal.images, spec, cal.plan, "x")
        feats, secs = {}, {}
        for k, path in (("float", float_file), ("int8", int8_file)):
            runner, t = backends.OnnxRunner(path, device), time.perf_counter()
            feats[k] = [backends.predict(runner, v, spec) for v in (images, images[:, :, ::-1])]
            secs[k] = time.perf_counter() - t
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nINT8 features for training ({len(images)} training photos and their mirror images, {run.size} px): "
          f"extraction {secs['float']:.1f} s float, {secs['int8']:.1f} s INT8 ({secs['float'] / secs['int8']:.2f}x); "
          f"max |Δfeature| {max(np.abs(a - b).max() for a, b in zip(feats['float'], feats['int8'])):.3f}")
    plan, worst = int8.Plan(), 1.0
    for n, layer in nets.items():
        top = Top(layer.net, NUM_BLOCKS)
        views = len(backends.TTA[layer.tta])  # as training evaluates: the test-time views averaged
        p = {k: np.exp(backends.log_probabilities(top, [v[:views]], layer.temperature)) for k, v in feats.items()}
        acc, agreement, diff, problems = int8.prove(p["float"], p["int8"], labels, plan, "training photos")
        worst = min(worst, agreement)
        print(f"  {n:<12}train acc float {pct(np.mean(p['float'].argmax(1) == labels))}, INT8 {pct(acc)}; agreement "
              f"{pct(agreement)}; max |Δprob| {diff:.3f}  {'passes' if not problems else 'fails: ' + '; '.join(problems)}")
    print(f"  lowest agreement {pct(worst)} (bar {pct(plan.min_agreement)})")


def _s(x) -> str:
    return "-" if x is None else f"{x:.2f} s"


def print_int8(manifest: dict) -> None:
    """Per model, from the manifest (measured by the export on the whole test split): float and INT8 test accuracy,
    agreement, max |Δprob|, the INT8 export time added beside the float export's, and the verdict."""
    rows = [(n, e) for n, e in manifest["models"].items() if e.get("int8")]
    if not rows:
        return
    print(f"\nINT8 per model (whole test split, {rows[0][1].get('test_images')} images; bar: agreement >= "
          f"{pct(rows[0][1]['int8']['plan']['min_agreement'])}, accuracy within {100 * rows[0][1]['int8']['plan']['max_acc_change']:.1f} pt):")
    print(f"  {'optimizer':<12}{'float acc':>10}{'int8 acc':>10}{'agreement':>11}{'max|Δp|':>9}{'float s':>9}{'+int8 s':>9}  status")
    passed = 0
    for n, e in rows:
        q, acc = e["int8"], e.get("test_acc", {})
        added = (q.get("export_seconds") or 0) + (q.get("proof_seconds") or 0)
        passed += q["status"] == "ok"
        print(f"  {n:<12}{pct(acc.get('onnx')):>10}{pct(acc.get('onnx-int8')):>10}{pct(q.get('agreement')):>11}"
              f"{e.get('max_abs_diff', {}).get('onnx-int8', float('nan')):>9.3f}{e.get('export_seconds', 0):>9.1f}"
              f"{added:>9.1f}  {q['status']}")
    print(f"  {passed} of {len(rows)} INT8 models passed their proof")


if __name__ == "__main__":
    sys.exit(main())
