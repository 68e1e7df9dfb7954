"""Scale-out figures on this machine: data-parallel throughput and the --parallel sweep's wall time.

    python bench/bench_distributed.py [--data DIR] [--per-class 400] [--size 64] [--epochs 2]

Prints (1) training throughput of 2 data-parallel CPU processes (`python -m paddle.distributed.launch
--nproc_per_node 2 train/run_all.py`) ÷ 1 process (`python train/run_all.py`), from the last epoch's
time in history.json (training plus the validation pass), and (2) the wall time of a 4-optimizer sweep
with `--parallel 2` ÷ the sequential sweep, whole commands timed (start-up included: each --parallel
worker pays its own Python + Paddle start, about 2-3 CPU seconds, once per optimizer). Both baselines run
in the same invocation, on the same cached data. The CPU may be shared: it also prints how many cores
other processes kept busy meanwhile (from /proc/stat), and the CPU seconds each command used.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import models  # noqa: E402,F401  (quiets Paddle)
from models import rundir  # noqa: E402
from train.synthetic import make_dataset  # noqa: E402
from util.io import read_json  # noqa: E402

BENCH_DATA = os.path.join(ROOT, "data", "bench_distributed")


def busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (Linux /proc/stat), None elsewhere."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def sh(*args) -> tuple[float, float]:
    """Run `python args...` from the repo root; return (wall seconds, CPU seconds of it and its children)."""
    t, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"error: {' '.join(map(str, args[:4]))} ... exited {p.returncode}\n{p.stderr[-2000:]}")
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - t, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def epoch_ips(run: str, name: str) -> float:
    """Training images per second of the last epoch of `name` in a run directory (read through models/rundir.py)."""
    return rundir.read(run).data["sizes"]["train"] / read_json(os.path.join(run, name, rundir.HISTORY))[-1]["seconds"]


def mean_epoch_seconds(run: str) -> float:
    """Mean epoch time over every optimizer and epoch of a run directory (training + validation)."""
    secs = [h["seconds"] for name in rundir.read(run).optimizers for h in read_json(os.path.join(run, name, rundir.HISTORY))]
    return sum(secs) / len(secs)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help=f"dataset (default: generated under {os.path.relpath(BENCH_DATA, ROOT)})")
    p.add_argument("--per-class", type=int, default=400, help="images per class of the generated dataset")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2, help="epochs of the throughput runs (the last one is timed)")
    p.add_argument("--optimizers", default="sgd,momentum,adam,adamw", help="the sweep timed sequentially and with --parallel 2")
    p.add_argument("--sweep-epochs", type=int, default=2, help="epochs per optimizer in the timed sweeps")
    a = p.parse_args()
    data = a.data or BENCH_DATA
    if a.data is None and not os.path.exists(os.path.join(data, "labels.csv")):
        make_dataset(data, n_per_class=a.per_class, seed=0)
    common = ["--data", data, "--image-size", a.size, "--batch-size", a.batch_size]
    busy0, mine, t0 = busy_seconds(), 0.0, time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        sh("train/run_all.py", *common, "--optimizers", "sgd", "--epochs", 1, "--out", f"{tmp}/warm")  # decode cache
        run = ["train/run_all.py", *common, "--optimizers", "sgd", "--epochs", a.epochs]
        w1, c1 = sh(*run, "--out", f"{tmp}/one")
        w2, c2 = sh("-m", "paddle.distributed.launch", "--nproc_per_node", 2, "--log_dir", f"{tmp}/log", *run, "--out", f"{tmp}/two")
        one, two = epoch_ips(f"{tmp}/one", "sgd"), epoch_ips(f"{tmp}/two", "sgd")
        sweep = ["train/run_all.py", *common, "--optimizers", a.optimizers, "--epochs", a.sweep_epochs]
        seq, cs = sh(*sweep, "--out", f"{tmp}/seq")
        par, cp = sh(*sweep, "--out", f"{tmp}/par", "--parallel", 2)
        e_seq, e_par = mean_epoch_seconds(f"{tmp}/seq"), mean_epoch_seconds(f"{tmp}/par")
        mine = resource.getrusage(resource.RUSAGE_CHILDREN)
        mine = mine.ru_utime + mine.ru_stime
    wall = time.perf_counter() - t0
    others = "unknown" if busy0 is None else f"{max(0.0, (busy_seconds() - busy0 - mine) / wall):.2f}"
    n_opt = len(a.optimizers.split(","))
    print(f"machine: {os.cpu_count()} CPU cores; other users' processes kept {others} cores busy on average during the "
          f"{wall:.0f} s of this benchmark; smallcnn {a.size}px, batch {a.batch_size}, {data}")
    print(f"1 process          : {one:7.1f} img/s  (last epoch; whole command {w1:.1f} s wall, {c1:.1f} CPU s)")
    print(f"2 processes (gloo) : {two:7.1f} img/s  (last epoch; whole command {w2:.1f} s wall, {c2:.1f} CPU s)")
    print(f"data-parallel throughput 2 processes / 1: {two / one:.2f}")
    print(f"sweep of {n_opt} optimizers x {a.sweep_epochs} epochs: sequential {seq:.1f} s wall ({cs:.1f} CPU s), "
          f"--parallel 2 {par:.1f} s wall ({cp:.1f} CPU s)")
    print(f"mean epoch time of one optimizer: {e_seq:.2f} s alone, {e_par:.2f} s beside another "
          f"(1.00 would mean each worker had a core to itself; 2.00 that they shared one): {e_par / e_seq:.2f}")
    print(f"sweep wall time --parallel 2 / sequential: {par / seq:.2f}")

if __name__ == "__main__":
    main()
