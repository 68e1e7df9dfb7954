"""Scale the sweep out with Paddle's own distributed stack: data-parallel ranks, and optimizers in parallel.

Data-parallel: one optimizer at a time, every rank trains the same model on its shard of each batch.

    python -m paddle.distributed.launch --nproc_per_node 2 train/run_all.py ...     # CPU: gloo collectives
    python -m paddle.distributed.launch --devices 0,1,2,3 train/run_all.py ...     # GPUs: NCCL
    python -m paddle.distributed.launch --nnodes 2 --master 10.0.0.1:8090 train/run_all.py ...

The launcher starts one process per rank with PADDLE_TRAINER_ID / PADDLE_TRAINERS_NUM set (and
PADDLE_DISTRI_BACKEND=gloo when it finds no GPU); `setup` reads them and joins the process group.
`--batch-size` stays the global batch: each rank takes its contiguous shard of every batch of the same
epoch permutation (train/data.py `batches`), the loss is scaled so that DataParallel's averaged gradient
is the gradient of the whole batch, and BatchNorm running statistics are averaged over the ranks after
each epoch. Rank 0 alone reads and writes the run directory; the other ranks receive what they need
(initial weights, resume state, best checkpoint) by broadcast, so nodes share the dataset, not files.

Sweep-parallel: `python train/run_all.py --parallel N` trains N optimizers at once, each in its own
worker process (this file run as a script) bound to one GPU, or to a share of the CPU threads. Workers
write only their own `<run>/<optimizer>/`; the parent alone writes results.json and the reports.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import models  # noqa: E402  (first: quiets Paddle)
from util import runtime  # noqa: E402
import numpy as np  # noqa: E402
import paddle  # noqa: E402
import paddle.distributed as dist  # noqa: E402

from train.data import shard  # noqa: E402

RANK, WORLD = 0, 1  # this process's rank and the number of ranks; set by setup()
LR_RULE = ("none: --batch-size is the global batch whatever the number of ranks (each rank computes "
           "its shard of every batch), so steps per epoch, learning rate and schedule equal a "
           "single-process run's. For a larger global batch raise --batch-size and scale the learning "
           "rate with --lr yourself (linear rule, Goyal et al. 2017: batch x k -> lr x k)")


def setup(pref: str) -> str:
    """Choose the device ('auto'|'cpu'|'gpu') and, under the launcher, join the process group.

    Returns the device string in use. With one rank this is runtime.pick_device alone; with
    several, a GPU rank takes the card the launcher gave it (FLAGS_selected_gpus, never touching gpu:0
    first) and NCCL, CPU ranks gloo. RuntimeError: no usable GPU for 'gpu', or the ranks cannot meet."""
    global RANK, WORLD
    env = dist.ParallelEnv()
    if env.world_size == 1:
        return runtime.pick_device(pref)
    if pref != "cpu" and paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        device = f"gpu:{env.device_id}"
        paddle.set_device(device)
    else:  # CPU ranks, also on a GPU machine with --device cpu
        device = runtime.pick_device("cpu" if pref == "auto" else pref)  # 'gpu' here: its one-line error
        os.environ["PADDLE_DISTRI_BACKEND"] = "gloo"
    with contextlib.redirect_stderr(io.StringIO()):  # Paddle prints a banner of its modified FLAGS here
        dist.init_parallel_env()
    RANK, WORLD = dist.get_rank(), dist.get_world_size()
    return device


def is_main() -> bool:
    """True on the rank that reads and writes the run directory (the only one without the launcher)."""
    return RANK == 0


def describe(batch_size: int) -> dict:
    """What config.json records about the ranks, the batch split and the learning-rate rule."""
    return {"world_size": WORLD, "backend": dist.get_backend().lower() if WORLD > 1 else None,
            "effective_batch_size": batch_size,
            "per_rank_batch_size": [hi - lo for lo, hi in (shard(batch_size, r, WORLD) for r in range(WORLD))],
            "lr_scaling": LR_RULE}


def wrap(model):
    """paddle.DataParallel(model) with several ranks (gradients all-reduced in backward), else the model."""
    return paddle.DataParallel(model) if WORLD > 1 else model


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sum of `values` over the ranks (float64 all-reduce); `values` itself with one rank."""
    if WORLD == 1:
        return values
    t = paddle.to_tensor(np.asarray(values, np.float64))
    dist.all_reduce(t)
    return t.numpy().tolist()


def share(obj):
    """Rank 0's `obj`, on every rank (pickled broadcast)."""
    if WORLD == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def load_shared(path: str):
    """paddle.load(path) as rank 0 sees it, on every rank (rank 0 broadcasts the file's bytes);
    None when rank 0 has no such file."""
    if WORLD == 1:
        return paddle.load(path) if os.path.exists(path) else None
    raw = None
    if RANK == 0 and os.path.exists(path):
        with open(path, "rb") as f:
            raw = f.read()
    raw = share(raw)
    return None if raw is None else paddle.load(io.BytesIO(raw))


def sync_buffers(model) -> None:
    """Average what no gradient reaches (BatchNorm running mean/variance) over the ranks: each rank
    updated it from its own shards, and DataParallel averages gradients only."""
    if WORLD == 1:
        return
    for t in [p for p in model.parameters() if p.stop_gradient] + list(model.buffers()):
        if t.dtype in (paddle.float32, paddle.float64, paddle.float16, paddle.bfloat16):
            dist.all_reduce(t)
            t.set_value(t / WORLD)


def weights_sha256(state: dict) -> str:
    """sha256 of a state dict (names, dtypes, shapes and bytes, in name order): equal hash, equal weights.
    Works on model.state_dict() and on what paddle.load returns for best.pdparams / last.pdstate['model']."""
    h = hashlib.sha256()
    for k in sorted(state):
        a = np.ascontiguousarray(state[k].numpy() if hasattr(state[k], "numpy") else state[k])
        h.update(f"{k}|{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def rank_hashes(model) -> list[str]:
    """Every rank's weights_sha256 of `model`, in rank order; RuntimeError if the ranks disagree."""
    mine = weights_sha256(model.state_dict())
    if WORLD == 1:
        return [mine]
    hashes: list[str] = []
    dist.all_gather_object(hashes, mine)
    if len(set(hashes)) != 1:
        raise RuntimeError(f"data-parallel ranks hold different weights: {[h[:12] for h in hashes]}")
    return hashes


# ---- sweep-parallel: independent optimizers at once, one worker process each ----

def slot_envs(n: int, pref: str) -> list[dict]:
    """Extra environment of each of n worker slots: one visible GPU each (round robin when n exceeds
    the GPUs), else a share of the CPU threads.

    On CPU Paddle runs OMP_NUM_THREADS threads per process (1 unless set). Each worker keeps that
    number, capped at cores // n so n workers never oversubscribe the machine; with the default of 1
    a worker computes bit for bit what the sequential sweep computes."""
    if pref != "cpu" and paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        gpus = [g for g in visible.split(",") if g.strip()] or [str(i) for i in range(paddle.device.cuda.device_count())]
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

    from util.io import read_json

    envs = slot_envs(n, pref)
    results = {name: read_json(os.path.join(run, name, "result.json")) for name in names}  # finished before
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
                row = read_json(os.path.join(run, name, "result.json")) if code == 0 else None
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
    from util.io import read_json
    from train import features
    from train.data import resolve
    from train.loop import train_one
    from train.setup import Setup

    cfg = read_json(os.path.join(args.run, "config.json"))
    device = runtime.pick_device(args.device)
    ds, _ = resolve(cfg["data"]["root"])  # --data synthetic too: the parent generated it there
    setup, init_state = Setup.from_config(cfg), paddle.load(os.path.join(args.run, "init.pdparams"))
    splits, _ = features.load(ds, setup, init_state, args.cache_dir, device=device)  # the parent made both caches
    try:
        train_one(args.optimizer, os.path.join(args.run, args.optimizer), setup=setup, init_state=init_state,
                  hyperparams=cfg["hyperparams"][args.optimizer], splits=splits, epochs=cfg["epochs"],
                  batch_size=cfg["batch_size"], seed=cfg["seed"])
    except (ValueError, RuntimeError, MemoryError, OSError) as e:  # the same failures run_all.py reports
        print(f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    runtime.on_stop_signals()  # the parent stops a worker with SIGTERM: 130, quietly
    sys.exit(worker_main())
