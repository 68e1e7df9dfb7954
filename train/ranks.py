"""Data-parallel ranks with Paddle's own distributed stack: the collectives the training loop uses.

Data-parallel: one optimizer at a time, every rank trains the same model on its shard of each batch.

    python -m paddle.distributed.launch --nproc_per_node 2 train/run_all.py ...     # CPU: gloo collectives
    python -m paddle.distributed.launch --devices 0,1,2,3 train/run_all.py ...     # GPUs: NCCL
    python -m paddle.distributed.launch --nnodes 2 --master 10.0.0.1:8090 train/run_all.py ...

The launcher starts one process per rank with PADDLE_TRAINER_ID / PADDLE_TRAINERS_NUM set (and
PADDLE_DISTRI_BACKEND=gloo when it finds no GPU); `join` reads them and joins the process group.
`--batch-size` stays the global batch: each rank takes its contiguous shard of every batch of the same
epoch permutation (train/data.py `batches`), the loss is scaled so that DataParallel's averaged gradient
is the gradient of the whole batch, and BatchNorm running statistics are averaged over the ranks after
each epoch. Rank 0 alone reads and writes the run directory; the other ranks receive what they need
(initial weights, resume state, best checkpoint) by broadcast, so nodes share the dataset, not files.

(`python train/run_all.py --parallel N`, optimizers side by side, is train/parallel.py.)
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os

from util import runtime  # first: quiets Paddle
import numpy as np
import paddle
import paddle.distributed as dist

from train.data import shard
from util.io import load_paddle

RANK, WORLD = 0, 1  # this process's rank and the number of ranks; set by join()
LR_RULE = ("none: --batch-size is the global batch whatever the number of ranks (each rank computes "
           "its shard of every batch), so steps per epoch, learning rate and schedule equal a "
           "single-process run's. For a larger global batch raise --batch-size and scale the learning "
           "rate with --lr yourself (linear rule, Goyal et al. 2017: batch x k -> lr x k)")


def join(pref: str) -> str:
    """Take the device ('auto'|'cpu'|'gpu') and, under the launcher, join the process group.

    Returns the device string in use. With one rank this is runtime.pick_device alone; with
    several, a GPU rank takes the card the launcher gave it (FLAGS_selected_gpus, never touching gpu:0
    first) and NCCL, CPU ranks gloo. RuntimeError: no usable GPU for 'gpu', or the ranks cannot meet."""
    global RANK, WORLD
    env = dist.ParallelEnv()
    if env.world_size == 1:
        return runtime.pick_device(pref)
    if pref != "cpu" and runtime.gpus():
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
    """The checkpoint at `path` (util.io.load_paddle: tensors and plain data only) as rank 0 sees it, on every
    rank (rank 0 broadcasts the file's bytes); None when rank 0 has no such file."""
    if WORLD == 1:
        return load_paddle(path) if os.path.exists(path) else None
    raw = None
    if RANK == 0 and os.path.exists(path):
        with open(path, "rb") as f:
            raw = f.read()
    raw = share(raw)
    return None if raw is None else load_paddle(path, raw)


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
    Works on model.state_dict() and on what load_shared returns for best.pdparams / last.pdstate['model']."""
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
