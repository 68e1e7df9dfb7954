"""Plan and run one sweep: every chosen optimizer trained once from the same initial weights on the same data.

    sw = plan(args)          # device and ranks, folders, dataset, run directory, settings, hyperparameters
    prepare(sw, pending)     # initial weights, decoded splits (+ cached features), config.json
    run_loop(sw, step)       # each optimizer through `step` (or --parallel workers); results, reports, exit status

`run(args)` is the plain sweep; train/compare.py drives the same pieces for --tune/--seeds/--target. A
problem that stops the sweep before anything trains is a SweepError: one line, exit status 2.
"""
from __future__ import annotations

import os
import platform
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from models import rundir
from models.dataset import Dataset, DatasetError
from train import calibration, features, ranks, report
from train.data import load_splits, resolve
from train.loop import FAILURES, failure, finished, history, initial_weights, test_predictions, train_one
from train.optimizers import hyperparams as registry_hyperparams
from train.setup import Setup
from util import runtime
from util.fmt import pct
from util.io import Busy, DamagedFile, FolderLock, read_json, remove_stale_temps, write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE_PARTS = ("images", "features", "pretrained", "synthetic")


class SweepError(Exception):
    """The sweep cannot start; the message is one line that says what to do (exit status 2)."""


@dataclass
class Sweep:
    """One sweep's plan and what it has loaded."""
    args: object  # the parsed arguments (train/cli.py)
    device: str
    ds: Dataset
    note: str  # a dataset note for the terminal ("SYNTHETIC ...") or ""
    setup: Setup
    run: str  # the run directory
    old: dict  # the run's earlier config.json ({} for a new run)
    hps: dict  # optimizer -> hyperparameters
    order: list  # every optimizer of the run, earlier invocations' first
    started: float = field(default_factory=time.perf_counter)
    todo: list = field(default_factory=list)  # optimizers with something left to train
    init_state: dict | None = None
    splits: dict | None = None
    config: dict = field(default_factory=dict)
    lock: FolderLock | None = None  # held while this process writes the run folder (rank 0)

    @property
    def config_path(self) -> str:
        return os.path.join(self.run, rundir.CONFIG)

    def settings(self) -> dict:
        a = self.args
        return {"model": a.model, "finetune": a.finetune, "pretrained": a.pretrained, "epochs": a.epochs,
                "batch_size": a.batch_size, "seed": a.seed, "tta": a.tta}


# ---- plan -------------------------------------------------------------------------------------------------

def plan(args) -> Sweep:
    """Everything decided before data is loaded; SweepError for anything that stops the sweep."""
    started = time.perf_counter()
    device = _devices(args)
    ds, note = _dataset(args)
    setup = Setup(args.model, len(ds.classes), args.image_size, args.finetune, args.pretrained, args.tta)
    regime = f"-{args.finetune}" if args.model == "efficientnet_lite0" else ""
    run = args.out or os.path.join(ROOT, "runs", f"{os.path.basename(ds.root.rstrip('/'))}-{args.model}{regime}-"
                                                 f"{args.image_size}px-{args.epochs}ep-seed{args.seed}{'-tuned' if args.tune else ''}")
    old, lock = _open_run(args, run, args.cache_dir)
    sw = Sweep(args, device, ds, note, setup, run, old, {}, [], started, lock=lock)
    _check_identity(sw)
    _check_tune_mode(sw)
    sw.hps = _hyperparams(sw)
    sw.order = list(dict.fromkeys(sw.old.get("optimizers", []) + args.optimizers))
    return sw


def _devices(args) -> str:
    try:
        device = ranks.setup(args.device)  # under paddle.distributed.launch: joins the ranks; rank 0 alone writes files
    except RuntimeError as e:
        raise SweepError(str(e)) from None
    if args.parallel > 1 and ranks.WORLD > 1:
        raise SweepError("--parallel runs whole optimizers side by side; do not combine it with paddle.distributed.launch")
    if args.finetune == "auto":
        args.finetune = "all" if args.model != "efficientnet_lite0" or device.startswith("gpu") else "head"
    if args.epochs is None:
        from train.cli import default_epochs

        args.epochs = default_epochs(args.model, args.finetune)
    args.cache_dir = os.path.abspath(args.cache_dir)
    problem = folder_problem(args.cache_dir, "--cache-dir", make=True)
    if problem is None and args.out and ranks.is_main():
        problem = folder_problem(args.out, "--out")
    if problem:
        raise SweepError(problem)
    os.environ["WHICH_OPTIMIZER_CACHE"] = args.cache_dir  # converted weights too; --parallel workers inherit it
    return device


def _dataset(args) -> tuple[Dataset, str]:
    try:
        ds, note = resolve(args.data, args.cache_dir)
    except DatasetError as e:
        raise SweepError(str(e)) from None
    if note:
        print(f"*** {note} ***", file=sys.stderr)
    for n in ds.notes:
        print(f"note: {n}", file=sys.stderr)
    overlap = ds.problems.get("in_two_splits")
    if overlap and not args.allow_split_overlap:
        raise SweepError(f"{ds.root}: {len(overlap)} file(s) are listed in two splits (e.g. {overlap[0]}), so test or "
                         f"validation accuracy would be measured on training images; fix the label file, or pass "
                         f"--allow-split-overlap to train anyway")
    if ds.problem_line() and ranks.is_main():
        print(f"warning: {ds.problem_line()}", file=sys.stderr)
    return ds, note


def _open_run(args, run: str, cache_dir: str) -> tuple[dict, FolderLock | None]:
    """(the run's earlier config.json, {} when new; the run folder's lock: this process is now its one writer, else
    SweepError naming the pid of the one that is); stale temporary files of killed writes removed."""
    if not ranks.is_main():
        return {}, None
    problem = folder_problem(run, "--out" if args.out else "the run folder", make=True)
    if problem:
        raise SweepError(problem)
    try:
        lock = FolderLock(run, "wait for that training to end, or give another --out")
    except Busy as e:
        raise SweepError(str(e)) from None
    path = os.path.join(run, rundir.CONFIG)
    try:
        old = read_json(path, {})
        if not isinstance(old, dict):
            raise DamagedFile(f"{path} is unreadable (not a run's settings)")
    except DamagedFile as e:
        raise SweepError(f"{e}: this run's settings cannot be checked, so nothing is trained into it; use another "
                         f"--out, or delete {run} to start it over (or, if this is the very command that made it, delete "
                         f"just config.json: finished optimizers are kept)") from None
    stale = remove_stale_temps(run) + sum(remove_stale_temps(os.path.join(cache_dir, sub)) for sub in CACHE_PARTS)
    if stale:
        print(f"note: removed {stale} temporary file(s) left by an interrupted run", file=sys.stderr)
    return old, lock


def _check_identity(sw: Sweep) -> None:
    if not sw.old:
        return
    prev = rundir.RunDir(sw.run, sw.old).identity()
    now = rundir.identity(sw.settings(), sw.setup.spec, sw.ds.fingerprint())
    changed = [k for k in now if prev.get(k) != now[k]]
    if changed:
        was = ", ".join(f"{k}={prev.get(k)}" for k in changed)
        raise SweepError(f"{sw.run} was made with different settings ({was}); use another --out or the same settings")


def _check_tune_mode(sw: Sweep) -> None:
    """A run trained with --tune keeps tuned learning rates: it is not continued without --tune, nor the reverse."""
    tuned = bool(sw.old.get("tune"))
    trained = [n for n in sw.old.get("optimizers", []) if os.path.isdir(os.path.join(sw.run, n))]
    if trained and tuned != bool(sw.args.tune):
        raise SweepError(f"{sw.run} was made {'with' if tuned else 'without'} --tune; use another --out or "
                         f"{'add' if tuned else 'drop'} --tune")


def hyperparams_for(sw: Sweep, name: str) -> dict:
    """The registry's hyperparameters for `name` in the setup's profile, with its --lr override if any."""
    lr = sw.args.lr_overrides.get(name)
    return registry_hyperparams(name, sw.setup.profile, **({"learning_rate": lr} if lr is not None else {}))


def _hyperparams(sw: Sweep) -> dict:
    hps = dict(sw.old.get("hyperparams", {}))
    for name in sw.args.optimizers:
        hp = hyperparams_for(sw, name)
        if not sw.args.tune and name in hps and hps[name] != hp and os.path.isdir(os.path.join(sw.run, name)):
            raise SweepError(f"{name} in {sw.run} was trained with {hps[name]}, not {hp}; use another --out")
        hps[name] = hp
    return hps


def folder_problem(path: str, flag: str, make: bool = False) -> str | None:
    """Why `path` cannot be used as a writable folder (one line), or None. Made when `make` (else only
    its nearest existing parent is checked, so that a later error leaves no empty folder behind)."""
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{flag} {path} is a file, not a folder; give a folder (it is made if absent)"
    there = os.path.abspath(path)
    while not os.path.exists(there) and os.path.dirname(there) != there:
        there = os.path.dirname(there)
    if not os.path.isdir(there):
        return f"{flag} {path} cannot be made: {there} is a file, not a folder"
    try:
        if make:
            os.makedirs(path, exist_ok=True)
            there = path
        with tempfile.TemporaryFile(dir=there):
            pass
    except OSError as e:
        return f"{flag} {path} cannot be written to ({e.strerror or type(e).__name__}); give a writable folder"
    return None


# ---- prepare ----------------------------------------------------------------------------------------------

def prepare(sw: Sweep, pending, extra_config=None) -> None:
    """Initial weights, the splits (only when `pending(name)` says an optimizer has work left, or the run is
    new) and config.json. extra_config(config) adds what a driver records (train/compare.py: the search plan)."""
    sw.todo = ranks.share([n for n in sw.args.optimizers if pending(n)])
    init_path = os.path.join(sw.run, "init.pdparams")
    if ranks.is_main():
        try:
            init_path = initial_weights(sw.run, sw.args.seed, sw.args.seed, sw.setup, sw.args.pretrained)
        except (ValueError, RuntimeError) as e:
            raise SweepError(str(e)) from None
    sw.init_state = ranks.load_shared(init_path)
    info = None
    if sw.todo or "data" not in sw.old:
        sw.splits, info = features.load(sw.ds, sw.setup, sw.init_state, sw.args.cache_dir, sw.args.workers, sw.device)
        _check_splits(sw)
    sw.config = rundir.config_document(
        sw.settings(), sw.setup.spec, classes=list(sw.ds.classes), optimizers=sw.order, hyperparams=sw.hps,
        device=sw.device, lr_schedule="cosine decay per epoch from each optimizer's learning_rate",
        augmentation="random horizontal flip", distributed=ranks.describe(sw.args.batch_size),
        calibration={"temperature": calibration.TEMPERATURE_RULE, "threshold": calibration.THRESHOLD_RULE},
        data=sw.old.get("data") if info is None else _data_info(sw, info), versions=versions())
    if extra_config:
        extra_config(sw.config)
    if ranks.is_main():
        write_json(sw.config_path, sw.config)
        if info is not None and (info["skipped"] or sw.ds.missing):
            print(f"note: skipped {len(info['skipped'])} unreadable and {len(sw.ds.missing)} missing image(s); "
                  f"listed in {sw.config_path}", file=sys.stderr)


def _data_info(sw: Sweep, info: dict) -> dict:
    ds = sw.ds
    return {"root": ds.root, "layout": ds.layout, "fingerprint": ds.fingerprint(), "counts": ds.counts(),
            "sizes": {sp: len(s) for sp, s in sw.splits.items()}, "skipped": info["skipped"], "missing": ds.missing,
            "notes": ds.notes + ([sw.note] if sw.note else []), "decode_seconds": info.get("decode_seconds"),
            "synthetic": sw.args.data == "synthetic", **({"features": info["features"]} if "features" in info else {}),
            "label_problems": {k: {"count": len(v), "items": v} for k, v in ds.problems.items() if v}}


def _check_splits(sw: Sweep) -> None:
    errors, warnings = split_problems(sw.splits, sw.ds.classes, sw.ds.root)
    if ranks.is_main():
        for line in warnings if not errors else []:
            print(f"warning: {line}", file=sys.stderr)
    if errors:
        raise SweepError(errors[0])


def split_problems(splits: dict, classes, root: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) about the decoded splits, before anything trains: an empty split cannot train,
    choose or measure; a split that lacks a class is worth a line (its accuracy says nothing about that class)."""
    errors, warnings = [], []
    where = {"train": "rows with neither is_validation nor is_final_validation; folder layout: DIR/train/<class>/",
             "val": "rows with is_validation=1; folder layout: DIR/val/<class>/",
             "test": "rows with is_final_validation=1; folder layout: DIR/test/<class>/, or every other val image"}
    purpose = {"train": "nothing to train on", "val": "nothing to choose the best checkpoint on",
               "test": "nothing to measure the chosen model on"}
    for sp in ("train", "val", "test"):
        labels = splits[sp].labels
        if len(labels) == 0:
            errors.append(f"the {sp} split of {root} has no images (Kaggle layout: {where[sp]}): {purpose[sp]}")
            continue
        lacking = [c for c, n in zip(classes, np.bincount(labels, minlength=len(classes))) if n == 0]
        if lacking:
            warnings.append(f"the {sp} split has no {', '.join(lacking)} image(s) ({len(labels)} images in all): "
                            f"its accuracy says nothing about {'that class' if len(lacking) == 1 else 'those classes'}")
    return errors, warnings


def versions() -> dict:
    import paddle
    import PIL

    return {"python": platform.python_version(), "paddle": paddle.__version__, "numpy": np.__version__,
            "pillow": PIL.__version__, "platform": platform.platform()}


# ---- train ------------------------------------------------------------------------------------------------

def train(sw: Sweep, name: str, position: str = "") -> dict:
    """Train (or resume, or read back) optimizer `name` of the sweep; its result row."""
    row = train_one(name, os.path.join(sw.run, name), setup=sw.setup, init_state=sw.init_state, hyperparams=sw.hps[name],
                    splits=sw.splits, epochs=sw.args.epochs, batch_size=sw.args.batch_size, seed=sw.args.seed,
                    position=position)
    if ranks.is_main():  # runs trained before train_one kept test probabilities get them now
        test_predictions(os.path.join(sw.run, name), sw.setup, sw.splits)
    return row


def run(args) -> int:
    """The plain sweep: every optimizer once (sequentially, data-parallel under the launcher, or --parallel)."""
    sw = plan(args)
    prepare(sw, pending=lambda n: finished(os.path.join(sw.run, n), n) is None)
    if args.parallel > 1:
        return run_loop(sw, None, parallel=True)
    return run_loop(sw, lambda name, position: train(sw, name, position))


def run_loop(sw: Sweep, step, summarize=None, parallel: bool = False) -> int:
    """Each optimizer through step(name, position) -> result row (a failure is its status, the sweep goes on),
    then results.json, the reports and the terminal summary, also after an interrupt.
    summarize(results, config) -> the comparison block of results.json (train/compare.py), or None."""
    results, progress = {}, Progress(sw)
    try:
        if parallel:
            from train import parallel as par

            results = par.run_parallel(sw.run, sw.args.optimizers, sw.args.parallel, sw.args.device, sw.args.cache_dir,
                                       on_result=progress.say)
        for i, name in enumerate([] if parallel else sw.args.optimizers, 1):
            results[name] = _step(step, name, f"[{i}/{len(sw.args.optimizers)}] ")
            progress.say(name, results[name])
    except KeyboardInterrupt:
        for sig in (signal.SIGTERM, signal.SIGINT):  # the launcher repeats SIGTERM: let the reports below finish
            signal.signal(sig, signal.SIG_IGN)
        if ranks.is_main():
            print(f"\ninterrupted: finished epochs are saved in {sw.run}; run the same command again to resume", file=sys.stderr)
        return runtime.INTERRUPTED
    finally:
        done = finish(sw, results, summarize) if ranks.is_main() else None
    if not ranks.is_main():
        return 0
    show(sw, *done)
    return outcome(done[0], write_failed=done[1] is None)


def _step(step, name: str, position: str) -> dict:
    try:
        return step(name, position)
    except FAILURES as e:
        runtime.check_stop()  # an interrupt that Paddle's code re-raised as its own error
        if ranks.WORLD > 1 and not isinstance(e, ValueError):  # maybe on this rank alone: the others would wait
            print(f"error: {name}: {failure(e)}; stopping every rank (run the same command again to resume)", file=sys.stderr)
            raise SystemExit(1) from None
        return {"status": failure(e)}


class Progress:
    """The terminal's line per optimizer and the sweep-level line (done / left / time left)."""

    def __init__(self, sw: Sweep):
        self.sw, self.t0, self.finished = sw, time.perf_counter(), []

    def say(self, name: str, r: dict) -> None:
        if not ranks.is_main():
            return
        sw, self.finished = self.sw, self.finished + [name]
        if r["status"].startswith("failed"):
            print(f"{name}: {r['status']}", file=sys.stderr)
        if r.get("test_acc") is not None:
            print(f"{name}: {r['status']}, best val {pct(r['best_val_acc'])} @ epoch {r['best_epoch']}, "
                  f"test {pct(r['test_acc'])}, {r['train_seconds'] / 60:.1f} min", file=sys.stderr)
        if name in sw.todo:
            print(report.sweep_line(len(self.finished), len(sw.args.optimizers), sum(n in sw.todo for n in self.finished),
                                    len(sw.todo), time.perf_counter() - self.t0), file=sys.stderr)


# ---- finish -----------------------------------------------------------------------------------------------

def finish(sw: Sweep, results: dict, summarize=None):
    """results.json and the reports from every optimizer's own files: (results, summary, comparison); summary is
    None when they could not be written (disk full: the trained optimizers are safe)."""
    try:
        results = _collect(sw, results)
        histories = {n: history(os.path.join(sw.run, n), n) for n in results}
        for n, r in results.items():  # the ranking's tie-breaker
            r["best_val_loss"] = report.best_val_loss(histories[n], r.get("best_epoch"))
        comparison = summarize(results, sw.config) if summarize else None
        predictions = {n: read_json(os.path.join(sw.run, n, "test_predictions.json")) for n in results}
        summary = report.summarize(results, predictions, sw.config["classes"])
        old_winner = _write_results(sw, results, summary, comparison)
        report.write_reports(sw.run, results, histories, _title(sw), comparison, summary, predictions,
                             _test_images(sw, summary, old_winner))
        return results, summary, comparison
    except OSError as e:
        print(f"error: cannot write the run's reports ({e.strerror or e}: {e.filename}); free some space and "
              f"run the same command again (finished optimizers are not trained again)", file=sys.stderr)
        return results, None, None


def _collect(sw: Sweep, results: dict) -> dict:
    """This invocation's rows plus those of earlier invocations of the same run, in the run's order."""
    for name in sw.order:
        if name not in results:
            r = read_json(os.path.join(sw.run, name, "result.json"))
            if r:
                results[name] = r
    return {n: results[n] for n in sw.order if n in results}


def _write_results(sw: Sweep, results: dict, summary: dict, comparison) -> str | None:
    """Write results.json (whole, from the optimizers' own files); return the winner it named before."""
    path = os.path.join(sw.run, rundir.RESULTS)
    try:
        old_winner = (read_json(path, {}) or {}).get("winner")
    except DamagedFile:  # replaced below
        old_winner = None
    write_json(path, {"run": os.path.abspath(sw.run), "data": sw.ds.root, "device": sw.device, "winner": summary["winner"],
                      "ranking": summary["ranking"], "baseline": summary["baseline"], "significance": summary["significance"],
                      "classes": summary["classes"], "optimizers": results, **({"comparison": comparison} if comparison else {})})
    return old_winner


def _title(sw: Sweep) -> str:
    a = sw.args
    seeds = f"seed {a.seed}" if a.seeds == 1 else f"seeds {a.seed}-{a.seed + a.seeds - 1}"
    seeds += ", tuned learning rates" if a.tune else ""
    regime = {"head": ", new head on frozen ImageNet features", "top": ", last block + head fine-tuned",
              "all": ", every layer fine-tuned" if a.pretrained else ", from scratch"}[a.finetune]
    return f"Optimizer leaderboard: {a.model}{regime}, {a.image_size}px, {a.epochs} epochs, {seeds}, {os.path.basename(sw.ds.root)}"


def _test_images(sw: Sweep, summary: dict, old_winner):
    """The decoded test images for the winner's mistakes gallery: loaded from the cache only when it is to be drawn."""
    stale = old_winner != summary["winner"] or not os.path.exists(os.path.join(sw.run, "mistakes.png"))
    if sw.splits is None and summary["winner"] and stale:
        sw.splits, _ = load_splits(sw.ds, sw.setup.spec, sw.args.cache_dir, sw.args.workers)  # the cache: no decoding
    return sw.splits["test"].images if sw.splits and "test" in sw.splits else None


def show(sw: Sweep, results: dict, summary, comparison) -> None:
    if summary is not None:
        print(report.leaderboard_text(results, summary))
    if comparison and "search" in comparison:
        c = comparison["search"]
        ratio = "-" if c["cost_ratio"] is None else f"{c['cost_ratio']:.2f}"
        print(f"\nlearning-rate search: {c['trials']} trials ({c['stopped_early']} stopped early, {c['diverged']} diverged), "
              f"{c['search_seconds']:.1f} s = {ratio} x one plain sweep ({c['plain_sweep_seconds']:.1f} s)")
    shown = os.path.relpath(sw.run) if os.path.abspath(sw.run).startswith(os.getcwd() + os.sep) else os.path.abspath(sw.run)
    print(f"\nrun directory: {shown}   ({time.perf_counter() - sw.started:.1f} s)", flush=True)


def outcome(results: dict, write_failed: bool = False) -> int:
    """The sweep's exit status, with its last lines: 1 when an optimizer failed (or the reports could not be
    written), else 0. A divergence is a result of the comparison, not a failure: it is named, status 0."""
    diverged = {n: r["status"] for n, r in results.items() if r.get("status", "").startswith("diverged")}
    failed = {n: r["status"] for n, r in results.items() if r.get("status", "").startswith("failed")}
    if diverged:
        print(f"note: {'; '.join(f'{n} {s}' for n, s in diverged.items())}: a result of the comparison (the best "
              f"checkpoint before it counts), not an error", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(results)} optimizer(s) failed:", file=sys.stderr)
        for n, s in failed.items():
            print(f"  {n}: {s}", file=sys.stderr)
        print("fix the cause and run the same command again: finished optimizers are kept, failed ones resume "
              "from their last finished epoch", file=sys.stderr)
    return 1 if failed or write_failed else 0
