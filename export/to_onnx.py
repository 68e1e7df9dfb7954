"""Export every best checkpoint of a run to a static Paddle model and ONNX, and prove they agree.

    python export/to_onnx.py                                   # the newest run under runs/
    python export/to_onnx.py --run runs/hym --optimizers momentum,qhm --opset 13
    python export/to_onnx.py --winner                          # only the run's winner (best validation accuracy)
    python export/to_onnx.py --int8                            # and an INT8 ONNX model per optimizer, proven too

Writes runs/<run>/export/<optimizer>/{inference.json, inference.pdiparams, model.onnx} and
runs/<run>/export/manifest.json (with the run's winner, chosen on validation accuracy, and copies of the
run's leaderboard files in export/board/), and prints one row per model. With --int8, also
runs/<run>/export/<optimizer>/model.int8.onnx for each model whose INT8 proof passed (export/int8.py). Exit status:
0 when every float model is ok (an INT8 model that failed its proof is only left out: the float one is served),
1 when any model failed (export or parity), 2 when the run cannot be exported at all.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import models  # noqa: E402  (first: quiets Paddle)
from util import runtime  # noqa: E402
from export import exporter, int8  # noqa: E402
from models import inference as backends  # noqa: E402
from util.fmt import pct  # noqa: E402  (the one percentage format)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="run folder written by train/run_all.py (default: the newest under runs/)")
    ap.add_argument("--runs", default=exporter.RUNS, help="where to look for the newest run when --run is not given")
    ap.add_argument("--optimizers", help="comma-separated optimizers to export (default: every one with a best checkpoint)")
    ap.add_argument("--winner", action="store_true",
                    help="export only the run's winner: results.json's, else the winner rule on its rows "
                         "(best validation accuracy; ties: lower validation loss; diverged/failed never win)")
    ap.add_argument("--opset", type=int, default=13, help="ONNX opset, 13 or newer (default 13)")
    ap.add_argument("--force", action="store_true", help="export again even when the checkpoint has not changed")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"), help="where the checks and timings run")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads per backend (default: cores, at most 4)")
    ap.add_argument("--data", help="dataset folder, if it moved since training (default: the one in config.json)")
    ap.add_argument("--tolerance", type=float, default=exporter.TOLERANCE, help="the proof: the largest |Δprob| an "
                    "exported backend may differ from the trained model by on any test image (it must also answer the "
                    "same class on every one)")
    ap.add_argument("--int8", action="store_true", help="also an INT8 ONNX model per optimizer, calibrated on training "
                    "photos and proven on the test split (export/int8.py; off by default: docs/export.md says why)")
    ap.add_argument("--int8-method", default=int8.Plan.method, choices=int8.METHODS,
                    help=f"INT8 calibration method (default {int8.Plan.method}, chosen on validation)")
    ap.add_argument("--int8-photos", type=int, default=int8.Plan.photos,
                    help=f"training photos the INT8 ranges come from (default {int8.Plan.photos})")
    args = ap.parse_args(argv)
    if args.opset < 13:
        ap.error("--opset must be 13 or newer")
    if args.threads is not None and args.threads < 1:
        ap.error("--threads must be at least 1")
    if not args.tolerance >= 0:
        ap.error("--tolerance must be a number of at least 0, e.g. 1e-4")
    if args.winner and args.optimizers:
        ap.error("--winner and --optimizers choose the models in two ways; give one of them")
    if args.int8_photos < 1:
        ap.error(f"--int8-photos must be at least 1, got {args.int8_photos}")
    return args


def _f(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def print_table(report: exporter.Report) -> None:
    with_int8 = any("int8" in r.entry for r in report.rows)
    head = ("optimizer", "best val acc", "paddle test acc", "onnx test acc", "max|Δprob|", "dygraph b1 ms", "paddle b1 ms",
            "onnx b1 ms") + (("int8 test acc", "int8 agreement", "int8 max|Δprob|", "int8 b1 ms") if with_int8 else ()) + ("status",)
    lines = [head]
    for r in report.rows:
        e = r.entry
        acc, lat, diff = e.get("test_acc", {}), e.get("latency_ms", {}), e.get("max_abs_diff", {})
        q = e.get("int8") or {}
        status = e["status"] + (f"; INT8 {q['status']}" if q else "") + \
            (" (unchanged, not exported again)" if r.action == "unchanged" else "")
        floats = [v for k, v in diff.items() if k != int8.BACKEND]
        lines.append((r.name, pct(e.get("best_val_acc")), pct(acc.get("paddle")), pct(acc.get("onnx")),
                      _f(max(floats) if floats else None, ".1e"), _f(lat.get("dygraph_b1"), ".2f"),
                      _f(lat.get("paddle_b1"), ".2f"), _f(lat.get("onnx_b1"), ".2f"))
                     + ((pct(acc.get(int8.BACKEND)), pct(q.get("agreement")), _f(diff.get(int8.BACKEND), ".3f"),
                         _f(lat.get(f"{int8.BACKEND}_b1"), ".2f")) if with_int8 else ()) + (status,))
    widths = [max(len(row[i]) for row in lines) for i in range(len(head) - 1)]
    for row in lines:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])


def main(argv=None) -> int:
    args = parse_args(argv)
    runtime.on_stop_signals()  # SIGTERM and Ctrl+C: KeyboardInterrupt, no Paddle FatalError block
    try:
        return export(args)
    except KeyboardInterrupt:
        print("\ninterrupted: the manifest is written once every model is done; run the same command again to resume",
              file=sys.stderr)
        return runtime.INTERRUPTED


def export(args) -> int:
    try:
        device = backends.choose_device(args.device, args.threads)
        run_dir = args.run or exporter.newest_run(args.runs)
        names = tuple(o.strip() for o in args.optimizers.split(",") if o.strip()) if args.optimizers else None
        plan = int8.Plan(method=args.int8_method, photos=args.int8_photos) if args.int8 else None
        report = exporter.export_run(run_dir, exporter.Options(
            optimizers=names, winner_only=args.winner, opset=args.opset, force=args.force, device=device,
            data_root=args.data, tolerance=args.tolerance, int8=plan))
    except (exporter.RunError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, permissions: one line, not a traceback
        print(f"error: {e.strerror or e}{f': {e.filename}' if e.filename else ''}; fix that and run the same "
              f"command again", file=sys.stderr)
        return 2
    for note in report.run.notes:
        print(f"note: {note}")
    print_table(report)
    d = report.manifest.get("device", {})
    shown = os.path.relpath(report.manifest_path)
    shown = report.manifest_path if shown.startswith("..") else shown
    m = report.manifest
    if m.get("winner"):
        print(f"winner: {m['winner']} (chosen by {m.get('winner_chosen_by')})")
    if (m.get("dataset") or {}).get("synthetic"):
        print("note: this run was trained on SYNTHETIC pictures (not insects); the demo says so on its page")
    print(f"manifest: {shown}  (paddle on {d.get('paddle')}, onnx on {d.get('onnx')})")
    if report.failed:
        print(f"{len(report.failed)} of {len(report.rows)} models failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
