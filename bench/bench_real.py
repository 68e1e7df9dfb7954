"""The product on real photos: the default sweep on insects4 (the measuring set) and hymenoptera, timed from a cold
cache, with what each optimizer scores — per class (wasps first, with intervals), calibrated or not — beside the
majority-class baseline.

    python bench/bench_real.py                                   # both sets, the default profile
    python bench/bench_real.py --sets insects4 -- --image-size 224 --tta none --epochs 10   # the profile before issue 17

Everything after `--` goes to train/run_all.py unchanged. Each set runs in a fresh run folder and cache (first-run
time: decoding and feature extraction included); `--keep DIR` keeps them there. Reads the run through the run-folder
contract (models/rundir.py), as export does.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from models import rundir  # noqa: E402
from models.ranking import ranked  # noqa: E402
from train.tables import ci_text, class_order  # noqa: E402
from util.fmt import pct  # noqa: E402

SETS = {"insects4": os.path.join(os.path.dirname(ROOT), "shared", "data", "insects4"),
        "hymenoptera": os.path.join(os.path.dirname(ROOT), "shared", "data", "hymenoptera")}


def table(run: rundir.RunDir) -> list[str]:
    summary = run.results()
    res = summary["optimizers"]
    first = class_order(summary["classes"])[0]
    head = ["optimizer", "val acc", "test acc (95% CI)", f"{first} recall (95% CI)", "test ECE before → after",
            "test NLL before → after", "wrong >90% before → after", "answered / right when answered"]
    rows = [head]
    for name, r in ranked(res):
        c, per = r.get("calibration") or {}, (r.get("per_class") or {}).get(first) or {}
        t = c.get("test") or {}
        rows.append([name + (" (winner)" if name == summary["winner"] else ""), pct(r.get("best_val_acc")),
                     f"{pct(r.get('test_acc'))} ({ci_text(r.get('test_acc_ci95'))})",
                     f"{pct(per.get('recall'))} {per.get('correct', '?')}/{per.get('support', '?')} ({ci_text(per.get('recall_ci95'))})",
                     f"{pct(t.get('ece_before'))} → {pct(t.get('ece_after'))}" if t else "-",
                     f"{t['nll_before']:.3f} → {t['nll_after']:.3f}" if t else "-",
                     f"{pct(t.get('confident_mistakes_before'))} → {pct(t.get('confident_mistakes_after'))}" if t else "-",
                     f"{pct(t['answered']['coverage'])} / {pct(t['answered']['accuracy'])}" if t else "-"])
    b = summary["baseline"]
    rows.append([f"majority class ({b['class']})", "-", f"{pct(b['test_acc'])} ({ci_text(b['test_acc_ci95'])})"] + ["-"] * 5)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default="insects4,hymenoptera", help="comma list of " + ", ".join(SETS))
    p.add_argument("--keep", help="keep the run folders and caches under this folder")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="-- then arguments for train/run_all.py")
    a = p.parse_args()
    extra = a.rest[1:] if a.rest[:1] == ["--"] else a.rest
    work = a.keep or tempfile.mkdtemp(prefix="bench-real-")
    for name in a.sets.split(","):
        if not os.path.isdir(SETS[name]):
            print(f"{name}: skipped, {SETS[name]} is absent")
            continue
        out, cache = os.path.join(work, name), os.path.join(work, f"{name}-cache")
        t = time.perf_counter()
        subprocess.run([sys.executable, os.path.join(ROOT, "train", "run_all.py"), "--data", SETS[name], "--out", out,
                        "--cache-dir", cache, *extra], check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - t
        run = rundir.read(out)
        s, data = run.settings, run.data
        feats = data.get("features") or {}
        print(f"\n{name}: {s['model']} ({s['finetune']}) {run.image_size}px, test-time views {s['tta']}, {s['epochs']} epochs; "
              f"{data['sizes']}; first run {seconds:.0f} s (decode {data.get('decode_seconds') or 0:.0f} s, features "
              f"{feats.get('seconds', 0):.0f} s for {feats.get('images', 0)} images)")
        print("\n".join(table(run)))
    if not a.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
