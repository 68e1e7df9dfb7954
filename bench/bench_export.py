"""Speed of the exported models against the trained (dygraph) model, measured in one process on the same inputs.

    python bench/bench_export.py                       # newest run, its first exported model
    python bench/bench_export.py --run runs/hym --optimizer adam --seconds 3 --sweep

Prints batch-1 latency and batch-32 throughput for dygraph (eval mode), Paddle Inference and ONNX Runtime,
the ratios the export promises (ONNX Runtime b1 latency <= 1/3 of dygraph's, Paddle Inference < 1), and
each model's export time from the manifest. The run is exported first if it is not yet (export/to_onnx.py).
Backends are timed in interleaved rounds, so a neighbour's load on a shared machine hits them alike.
--sweep also times the CPU settings one can tune (threads, oneDNN, IR optimisation, ORT graph level).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import models  # noqa: E402,F401  (first: quiets Paddle)
import numpy as np  # noqa: E402

from export import exporter  # noqa: E402
from models import inference as backends  # noqa: E402


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
    ap.add_argument("--optimizer", help="which exported model to time (default: the first ok one)")
    ap.add_argument("--seconds", type=float, default=3.0, help="timing budget per backend and setting")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    ap.add_argument("--threads", type=int, default=None, help="CPU threads per backend (default: the exporter's)")
    ap.add_argument("--sweep", action="store_true", help="also time the tunable CPU settings")
    args = ap.parse_args(argv)
    try:
        device = backends.choose_device(args.device, args.threads)
        report = exporter.export_run(args.run or exporter.newest_run(), exporter.Options(device=device, progress=False))
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

    runners = {"dygraph": backends.DygraphRunner(exporter.load_network(report.run, name)),
               "paddle": backends.PaddleRunner(files[0], files[1], device),
               "onnx": backends.OnnxRunner(files[2], device)}
    speed = measure(runners, x1, xb, args.seconds)
    print(f"\n{'backend':<10}{'b1 latency ms':>15}{f'b{len(xb)} img/s':>14}")
    for k, (lat, ips) in speed.items():
        print(f"{k:<10}{lat:>15.3f}{ips:>14.1f}")
    d = speed["dygraph"][0]
    print(f"\nONNX Runtime b1 latency / dygraph     = {speed['onnx'][0] / d:.3f}   (target <= 0.333)")
    print(f"Paddle Inference b1 latency / dygraph = {speed['paddle'][0] / d:.3f}   (target < 1)")
    print(f"b{len(xb)} throughput vs dygraph: paddle x{speed['paddle'][1] / speed['dygraph'][1]:.1f}, "
          f"onnx x{speed['onnx'][1] / speed['dygraph'][1]:.1f}")
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
    return 0


def _s(x) -> str:
    return "-" if x is None else f"{x:.2f} s"


if __name__ == "__main__":
    sys.exit(main())
