"""Sweep-parallel: `python train/run_all.py --parallel N` trains N optimizers at once, each in its own
worker process (this file run as a script) bound to one GPU, or to a share of the CPU threads. Workers
write only their own `<run>/<optimizer>/`; the parent alone writes results.json and the reports.
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

import models  # noqa: E402,F401  (first: quiets Paddle)
from util import runtime  # noqa: E402


def slot_envs(n: int, pref: str) -> list[dict]:
    """Extra environment of each of n worker slots: one visible GPU each (round robin when n exceeds
    the GPUs), else a share of the CPU threads.

    On CPU Paddle runs OMP_NUM_THREADS threads per process (1 unless set). Each worker keeps that
    number, capped at cores // n so n workers never oversubscribe the machine; with the default of 1
    a worker computes bit for bit what the sequential sweep computes."""
    if pref != "cpu" and runtime.gpus():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        gpus = [g for g in visible.split(",") if g.strip()] or [str(i) for i in range(runtime.gpus())]
        return [{"CUDA_VISIBLE_DEVICES": gpus[k % len(gpus)]} for k in range(n)]
    threads = max(1, min(int(os.environ.get("OMP_NUM_THREADS", "1")), (os.cpu_count() or 1) // n))
    return [{"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} for _ in range(n)]


def _failure(log, code: int) -> str:
    """A failed worker's status line, from the last line it printed."""
    log.seek(0)
    lines = [ln.strip() for ln in log.read().decode(errors="replace").splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    return last if last.startswith("failed: ") else f"failed: worker exited with code {code}: {last}"


def run_parallel(run: str, names: list[str], n: int, pref: str, cache_dir: str, on_result=None) -> dict:
    """Train `names` into the prepared run directory `run` (config.json and init.pdparams written),
    at most n at a time, each in a worker process; finished ones (result.json) are not started again.
    Returns {name: result row}, in `names` order; on_result(name, row) is called as each one ends."""
    from tqdm import tqdm

    from models import rundir
    from util.io import read_json

    envs = slot_envs(n, pref)
    results = {name: read_json(os.path.join(run, name, rundir.RESULT)) for name in names}  # finished before
    queue, running = [name for name in names if results[name] is None], {}  # running: slot -> (name, Popen, log)
    for name in names:
        if results[name] is not None and on_result:
            on_result(name, results[name])
    bar = tqdm(total=len(queue), unit="optimizer", desc=f"sweep, {n} at a time", leave=False, disable=None, file=sys.stderr)
    try:
        while queue or running:
            for slot in [s for s in range(n) if s not in running][:len(queue)]:
                name = queue.pop(0)
                log = tempfile.TemporaryFile()
                cmd = [sys.executable, os.path.abspath(__file__), "--run", os.path.abspath(run), "--optimizer", name,
                       "--device", pref, "--cache-dir", os.path.abspath(cache_dir)]
                running[slot] = (name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **envs[slot]}), log)
            time.sleep(0.2)
            for slot, (name, proc, log) in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                del running[slot]
                row = read_json(os.path.join(run, name, rundir.RESULT)) if code == 0 else None
                results[name] = row or {"status": _failure(log, code)}
                log.close()
                bar.update()
                if on_result:
                    on_result(name, results[name])
    finally:  # interrupted: stop the workers (they keep their finished epochs) before the parent reports
        for name, proc, log in running.values():
            proc.terminate()
        for name, proc, log in running.values():
            proc.wait()
            log.close()
        bar.close()
    return {name: results[name] for name in names}


def worker_main(argv=None) -> int:
    """One optimizer of a --parallel sweep, in its own process, from the run directory's config.json."""
    p = argparse.ArgumentParser(description="worker of `train/run_all.py --parallel` (not for direct use)")
    p.add_argument("--run", required=True)
    p.add_argument("--optimizer", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", required=True)
    args = p.parse_args(argv)
    from models import rundir
    from train import features
    from train.data import resolve
    from train.loop import FAILURES, Job, failure, train_one
    from train.setup import Setup
    from util.io import load_paddle

    run = rundir.read(args.run)
    device = runtime.pick_device(args.device)
    ds, _ = resolve(run.data["root"])  # --data synthetic too: the parent generated it there
    setup, init_state = Setup.of_run(run), load_paddle(rundir.init_weights(args.run, run.settings["seed"], run.settings["seed"]))
    splits, _ = features.load(ds, setup, init_state, args.cache_dir, device=device)  # the parent made both caches
    s = run.settings
    try:
        train_one(args.optimizer, os.path.join(args.run, args.optimizer), Job(
            setup, init_state, run.config["hyperparams"][args.optimizer], splits, s["epochs"], s["batch_size"], s["seed"]))
    except FAILURES as e:  # the same failures, and the same status line, as the sequential sweep
        print(failure(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    runtime.on_stop_signals()  # the parent stops a worker with SIGTERM: 130, quietly
    sys.exit(worker_main())
