"""Train one optimizer: a short linear loop with per-epoch validation, best checkpoint and exact resume.

Files in runs/<run>/<optimizer>/:
  last.pdstate  model + optimizer state, finished epoch, best so far, history  (what resume needs)
  best.pdparams weights at the best validation accuracy
  history.json  one row per epoch;  curves.png;  result.json (written last: the optimizer is done)

Determinism: each epoch's data order, flips and Paddle seed derive from (seed, epoch) alone, and the
learning rate is a function of the epoch, so a run resumed after a kill equals an uninterrupted one.

Under `python -m paddle.distributed.launch` (train/ranks.py) the same loop runs data-parallel:
each rank trains on its shard of every batch, metrics are summed over the ranks, and rank 0 alone
reads and writes these files.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import paddle
import paddle.nn.functional as F
from tqdm import tqdm

from models import rundir
from models.inference import log_probabilities
from train import calibration, optimizers, ranks
from train.data import Split, batches, eval_batches, shard
from train.summary import prediction_record
from util.fmt import pct
from util.io import CheckpointError, DamagedFile, load_paddle, read_json, save_paddle, write_json

# Errors that mark one optimizer "failed: ..." while the sweep goes on.
FAILURES = (ValueError, RuntimeError, MemoryError, OSError)


class Diverged(Exception):
    pass


def failure(e: BaseException) -> str:
    """The one-line status of an optimizer whose training raised one of FAILURES."""
    return f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def finished(out: str, name: str) -> dict | None:
    """The optimizer's result.json (it is done), or None; a damaged one is set aside (the epochs resume)."""
    path = os.path.join(out, rundir.RESULT)
    try:
        return read_json(path)
    except DamagedFile as e:
        if ranks.is_main():  # the one rank that writes the run directory
            print(f"note: {name}: {e}; it is made again from {name}'s saved epochs", file=sys.stderr)
            os.remove(path)
        return None


STATE_KEYS = ("model", "optimizer", "epoch", "history", "best")


def resume_state(out: str, name: str) -> dict | None:
    """last.pdstate of `out` (every rank gets rank 0's), or None to start at epoch 1. A damaged one is said so
    and removed with the files of those epochs (best checkpoint, history, test predictions): no earlier
    epoch's state is kept, so the optimizer trains again from its first epoch."""
    path = os.path.join(out, rundir.LAST)
    try:
        state = ranks.load_shared(path)
        if state is None or (isinstance(state, dict) and all(k in state for k in STATE_KEYS)):
            return state
        why = "not a training state"
    except CheckpointError as e:  # damaged, or refused (it held more than tensors and plain data)
        why = e.why
    if ranks.is_main():
        print(f"note: {name}: {path} is unreadable ({why}); {name} trains again "
              f"from epoch 1 (no earlier state is kept)", file=sys.stderr)
        for f in (rundir.LAST, rundir.CHECKPOINT, rundir.HISTORY, rundir.PREDICTIONS):
            if os.path.exists(os.path.join(out, f)):
                os.remove(os.path.join(out, f))
    return None


def history(out: str, name: str) -> list[dict]:
    """The optimizer's history.json rows. A missing or damaged history.json is rebuilt from last.pdstate
    (which holds the same rows) when that is readable, else reported; [] then (nothing to draw)."""
    path = os.path.join(out, rundir.HISTORY)
    try:
        rows = read_json(path)
    except DamagedFile as e:
        why, rows = str(e), None
    else:
        why = f"{path} is missing"
    if rows is not None:
        return rows
    last = os.path.join(out, rundir.LAST)
    if not os.path.isfile(last):
        if os.path.isfile(os.path.join(out, rundir.RESULT)):  # finished once: its epochs are lost
            print(f"note: {name}: {why}, and no last.pdstate to rebuild it from: {name} is left out of compare.png "
                  f"(delete {out} to train it again)", file=sys.stderr)
        return []
    try:
        rows = load_paddle(last)["history"]
    except (CheckpointError, KeyError, TypeError) as e:
        print(f"note: {name}: {why}, and last.pdstate is unreadable too ({getattr(e, 'why', 'no history')}): {name} is left out "
              f"of compare.png (delete {out} to train it again)", file=sys.stderr)
        return []
    write_json(path, rows)
    print(f"note: {name}: {why}; rebuilt it from last.pdstate ({len(rows)} epochs)", file=sys.stderr)
    return rows


def cosine_lr(base: float, epoch: int, epochs: int) -> float:
    """Cosine decay from `base` at epoch 0 towards 0 at the end (set once per epoch)."""
    return base * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def initial_weights(run: str, seed: int, base_seed: int, setup, pretrained: bool = False) -> str:
    """Path of the initial weights every optimizer of seed `seed` starts from (made once:
    init.pdparams for the base seed, init_seed<s>.pdparams for the others): the whole network, with the
    pretrained weights where there are some and a classifier drawn from `seed`. Raises ValueError/RuntimeError
    from build_model (e.g. pretrained weights that cannot be found)."""
    path = rundir.init_weights(run, seed, base_seed)
    if not os.path.exists(path):
        paddle.seed(seed)
        save_paddle(setup.network(pretrained=pretrained).state_dict(), path)
    return path


def train_step(model, opt, x, y) -> tuple[float, int]:
    """One optimizer step on a batch (numpy or tensors): returns (mean loss, correct predictions)."""
    xt = x if isinstance(x, paddle.Tensor) else paddle.to_tensor(x)
    yt = y if isinstance(y, paddle.Tensor) else paddle.to_tensor(y)
    logits = model(xt)
    loss = F.cross_entropy(logits, yt)
    lv = float(loss)
    if not math.isfinite(lv):
        raise Diverged
    loss.backward()
    opt.step()
    opt.clear_grad()
    return lv, int((logits.argmax(axis=1) == yt).sum())


def train_step_dp(net, opt, x, y) -> tuple[float, float, float]:
    """One data-parallel step on this rank's shard of a batch (`net` is the paddle.DataParallel model):
    returns the (loss sum, correct, images) of the whole batch, summed over the ranks.

    The rank's loss is its cross-entropy sum x ranks / batch images, so the gradient DataParallel
    averages over the ranks is the mean gradient of the whole batch, however unevenly the last batch
    splits. A rank whose shard is empty still joins the gradient all-reduce, with a zero-weighted
    stand-in image run in eval mode (its BatchNorm statistics stay untouched)."""
    empty = len(y) == 0
    if empty:
        x, y = np.zeros((1, *x.shape[1:]), np.float32), np.zeros(1, np.int64)
        net.eval()
    yt = paddle.to_tensor(y)
    logits = net(paddle.to_tensor(x))
    loss = F.cross_entropy(logits, yt, reduction="sum")
    mine = [0.0, 0, 0] if empty else [float(loss), int((logits.argmax(axis=1) == yt).sum()), len(y)]
    loss_sum, correct, n = ranks.all_sum(mine)
    if not math.isfinite(loss_sum):  # every rank sees the same sum, so all of them stop together
        raise Diverged
    (loss * (0.0 if empty else ranks.WORLD / n)).backward()
    opt.step()
    opt.clear_grad()
    if empty:
        net.train()
    return loss_sum, correct, n


def evaluate(model, split: Split, spec, batch_size: int = 256, tta: str = "none") -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` on a split, its logits averaged over the test-time views `tta`
    (models.inference.TTA: what the exported model does). Data-parallel, each rank evaluates its contiguous shard
    (no padding) and the sums are reduced: the numbers equal a single-process evaluation."""
    return _evaluate(model, split, spec, batch_size, tta)[:2]


def _evaluate(model, split: Split, spec, batch_size: int = 256, tta: str = "none") -> tuple[float, float, np.ndarray | None]:
    """evaluate's numbers and this rank's log-probabilities (the whole split's in one process)."""
    if len(split) == 0:
        return float("nan"), float("nan"), None
    part = split.subset(slice(*shard(len(split), ranks.RANK, ranks.WORLD)))
    logp = log_probabilities(model, eval_batches(part, batch_size, spec, tta))
    loss_sum = -float(logp[np.arange(len(part)), part.labels].sum(dtype=np.float64)) if len(part) else 0.0
    correct = int((logp.argmax(axis=1) == part.labels).sum()) if len(part) else 0
    loss_sum, correct = ranks.all_sum([loss_sum, correct])
    return loss_sum / len(split), correct / len(split), logp


@dataclass(frozen=True)
class Job:
    """What one training of one optimizer needs (a trial, a seed or the primary run): everything but its folder."""
    setup: object  # train/setup.Setup: the network, its preprocessing, the regime and the test-time views
    init_state: dict  # the whole network's initial weights (the same for every optimizer of a seed)
    hyperparams: dict
    splits: dict  # "train", "val" and (not for learning-rate trials) "test": train/data.Split
    epochs: int
    batch_size: int
    seed: int


def train_one(name: str, folder: str, job: Job, position: str = "", stop=None) -> dict:
    """Train (or resume, or skip if done) optimizer `name` into `folder`; its result row.

    stop(history) -> reason or None is asked before each epoch after the first: a reason ends training
    with that status (learning-rate trials stop clearly worse runs early). Without a "test" split the
    test metrics stay None (trials are chosen on validation accuracy only)."""
    done = ranks.share(finished(folder, name) if ranks.is_main() else None)
    if done is not None:
        return done
    if ranks.is_main():
        os.makedirs(folder, exist_ok=True)
    whole, model = job.setup.build(job.init_state)  # the whole network; the part that trains
    opt = optimizers.create(name, model.parameters(), **job.hyperparams)
    base_lr, net = opt.get_lr(), ranks.wrap(model)
    start, history, best = 0, [], {"val_acc": -1.0, "epoch": 0}
    state = resume_state(folder, name)
    if state is not None:
        whole.set_state_dict(state["model"])
        opt.set_state_dict(state["optimizer"])  # Schedule-Free: puts its y back into the parameters itself
        start, history, best = state["epoch"], state["history"], state["best"]
    status = "done"
    for epoch in range(start, job.epochs):
        if stop is not None and history and (reason := stop(history)):
            status = reason
            break
        opt.set_lr(cosine_lr(base_lr, epoch, job.epochs))
        row = train_epoch(model, net, opt, job, epoch, f"{position}{name} {epoch + 1}/{job.epochs}")
        if row is None:
            status = f"diverged at epoch {epoch + 1}"
            break
        history.append(row)
        with evaluation_point(opt, model, job):  # the weights an epoch is judged and saved at
            best = save_epoch(folder, whole, opt, history, best)
        if ranks.is_main() and stop is None:  # one line per epoch; learning-rate trials (stop given) stay quiet
            tqdm.write(f"{position}{name} epoch {epoch + 1}/{job.epochs}: val acc {pct(row['val_acc'])}"
                       f"{' (best)' if best['epoch'] == epoch + 1 else ''}, val loss {row['val_loss']:.3f}, "
                       f"train loss {row['train_loss']:.3f}", file=sys.stderr)
    return finish(name, folder, job, (whole, model), Record(status, history, best))


@contextlib.contextmanager
def evaluation_point(opt, model, job: Job):
    """Inside: the parameters hold the point an optimizer is evaluated and checkpointed at. For most that is the
    current weights; Schedule-Free optimizers (and wrappers around them) keep the gradient point y in the
    parameters while training and the averaged x for evaluation: `opt.eval()` swaps x in, `opt.train()` back
    (Defazio et al. 2024, as their reference code does). Where BatchNorm layers train, their running statistics
    belong to y, so they are recomputed at x first (`recompute_batchnorm`)."""
    swap = callable(getattr(opt, "eval", None)) and callable(getattr(opt, "train", None))
    if swap:
        opt.eval()
        recompute_batchnorm(model, job)
    try:
        yield
    finally:
        if swap:
            opt.train()


def recompute_batchnorm(model, job: Job, batches_used: int = 32) -> None:
    """Running mean/variance of the trainable BatchNorm layers as the plain average over up to `batches_used`
    training batches at the current weights (momentum set so that batch k weighs 1/(k+1)); nothing to do where
    no BatchNorm trains (the head regime). Deterministic: its own seeded order."""
    norms = [m for m in model.sublayers(include_self=True) if isinstance(m, paddle.nn.layer.norm._BatchNormBase)]
    if not norms:
        return
    saved = [m._momentum for m in norms]
    for m in norms:
        m._mean.set_value(paddle.zeros_like(m._mean))
        m._variance.set_value(paddle.ones_like(m._variance))
    model.train()
    rng = np.random.default_rng([job.seed, 7])
    with paddle.no_grad():
        for k, (x, _) in enumerate(batches(job.splits["train"], job.batch_size, job.setup.spec, rng,
                                           rank=ranks.RANK, world=ranks.WORLD)):
            if k == batches_used:
                break
            for m in norms:
                m._momentum = k / (k + 1)
            if len(x):
                model(paddle.to_tensor(x))
    for m, mom in zip(norms, saved):
        m._momentum = mom
    ranks.sync_buffers(model)
    model.eval()


def train_epoch(model, net, opt, job: Job, epoch: int, label: str) -> dict | None:
    """One epoch over the training split and the validation after it (at the evaluation point): the epoch's history
    row, or None when the loss diverged. Data order, flips and Paddle's seed derive from (seed, epoch) alone: resume
    is exact."""
    paddle.seed(job.seed * 1000 + epoch)
    rng = np.random.default_rng([job.seed, epoch])
    t0, train = time.perf_counter(), job.splits["train"]
    model.train()
    loss_sum, correct = 0.0, 0
    bar = tqdm(total=len(train), unit="img", desc=label, leave=False, disable=None if ranks.is_main() else True,
               file=sys.stderr, dynamic_ncols=True)
    try:
        for x, y in batches(train, job.batch_size, job.setup.spec, rng, augment=True, rank=ranks.RANK, world=ranks.WORLD):
            if ranks.WORLD == 1:
                lv, ok = train_step(model, opt, x, y)
                loss_sum, correct, n = loss_sum + lv * len(y), correct + ok, len(y)
            else:
                ls, ok, n = train_step_dp(net, opt, x, y)
                loss_sum, correct, lv = loss_sum + ls, correct + ok, ls / n
            bar.update(n)
            bar.set_postfix(loss=f"{lv:.3f}", refresh=False)
    except Diverged:
        return None
    finally:
        bar.close()
    ranks.sync_buffers(model)
    with evaluation_point(opt, model, job):
        val_loss, val_acc = evaluate(model, job.splits["val"], job.setup.spec, tta=job.setup.tta)
        weights = ranks.rank_hashes(model) if ranks.WORLD > 1 else None
    if not math.isfinite(val_loss):
        return None
    row = {"epoch": epoch + 1, "train_loss": loss_sum / len(train), "train_acc": correct / len(train),
           "val_loss": val_loss, "val_acc": val_acc, "lr": opt.get_lr(), "seconds": round(time.perf_counter() - t0, 3)}
    if weights is not None:  # proof that the ranks stayed in step: every rank's weights hash, all equal
        row["rank_weights_sha256"] = weights
    return row


def save_epoch(folder: str, whole, opt, history: list, best: dict) -> dict:
    """After an epoch: the best checkpoint when validation improved, history.json and last.pdstate (rank 0
    writes); the best so far."""
    row = history[-1]
    if row["val_acc"] > best["val_acc"]:
        best = {"val_acc": row["val_acc"], "epoch": row["epoch"]}
        if ranks.is_main():
            save_paddle(whole.state_dict(), os.path.join(folder, rundir.CHECKPOINT))
    if ranks.is_main():
        write_json(os.path.join(folder, rundir.HISTORY), history)
        save_paddle({"model": whole.state_dict(), "optimizer": opt.state_dict(), "epoch": row["epoch"],
                     "history": history, "best": best}, os.path.join(folder, rundir.LAST))
    return best


@dataclass
class Record:
    """How an optimizer's training ended: its status, the epochs' history rows and the best epoch so far."""
    status: str
    history: list
    best: dict


def finish(name: str, folder: str, job: Job, nets: tuple, record: Record) -> dict:
    """The result row: the best checkpoint calibrated on the validation split (temperature and "not sure" threshold,
    train/calibration.py) and measured on the test split (with its per-image calibrated probabilities), and
    result.json (written last: the optimizer is done). nets: (the whole network, the part that trains)."""
    whole, model = nets
    history, best, splits, setup = record.history, record.best, job.splits, job.setup
    result = {"status": record.status, "best_val_acc": None, "best_epoch": None, "test_acc": None, "test_loss": None,
              "train_seconds": round(sum(h["seconds"] for h in history), 2), "epochs_run": len(history),
              "hyperparams": job.hyperparams}
    try:
        best_state = ranks.load_shared(os.path.join(folder, rundir.CHECKPOINT))  # collective: every rank calls it
    except CheckpointError as e:  # reported as this optimizer's failure
        raise ValueError(f"{name}/{rundir.CHECKPOINT} is unreadable ({e.why}); delete {folder} to train {name} "
                         f"again") from None
    if best_state is not None:
        result["best_val_acc"], result["best_epoch"] = best["val_acc"], best["epoch"]
        if "test" in splits:
            whole.set_state_dict(best_state)
            test = splits["test"]
            result["test_loss"], result["test_acc"], logp = _evaluate(model, test, setup.spec, tta=setup.tta)
            if ranks.is_main():  # calibration on validation; per-image test probabilities: per-class results, mistakes
                test_logp = logp if ranks.WORLD == 1 and logp is not None else log_probs(model, test, setup)
                cal = calibration.summary(log_probs(model, splits["val"], setup), splits["val"].labels, test_logp, test.labels)
                result["calibration"] = cal
                write_json(os.path.join(folder, rundir.PREDICTIONS), prediction_record(
                    test.labels, np.exp(calibration.scaled(test_logp, cal["temperature"])), cal["temperature"]))
    if ranks.is_main():
        write_json(os.path.join(folder, rundir.RESULT), result)
    return result


def log_probs(model, split: Split, setup, batch_size: int = 256) -> np.ndarray:
    """Log-probabilities (N x classes, uncalibrated: T = 1) of `model` on every item of `split`, in order, averaged
    over the setup's test-time views (one process)."""
    return log_probabilities(model, eval_batches(split, batch_size, setup.spec, setup.tta))


def has_probabilities(folder: str) -> bool:
    p = read_json(os.path.join(folder, rundir.PREDICTIONS))
    return bool(p) and "probabilities" in p


def test_predictions(folder: str, setup, splits) -> dict | None:
    """{"labels", "predicted", "probabilities"} of the folder's best checkpoint on the test split
    (train_one writes it; made here, uncalibrated, for runs trained before it did, then read)."""
    path = os.path.join(folder, rundir.PREDICTIONS)
    if has_probabilities(folder) or not os.path.exists(os.path.join(folder, rundir.CHECKPOINT)) or splits is None:
        return read_json(path)
    _, model = setup.build(load_paddle(os.path.join(folder, rundir.CHECKPOINT)))
    out = prediction_record(splits["test"].labels, np.exp(log_probs(model, splits["test"], setup)))
    write_json(path, out)
    return out
