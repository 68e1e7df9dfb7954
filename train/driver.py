"""The one driver of `train/run_all.py`, read top to bottom (`run`): the plain sweep, --tune, --seeds and --target
alike (the plain sweep is one seed without a search).

    plan -> devices -> dataset -> run folder (locked, checked) -> hyperparameters -> initial weights -> data (+ cached
    features) -> config.json -> every optimizer: [search] -> seed 1 .. N -> results.json, reports -> exit status

Every optimizer starts from the same initial weights and sees the same data order. Each training is resumable and
cached: what finished is read back, never trained again. A failure is that optimizer's status (the sweep goes on);
a problem that stops the sweep before anything trains is a SweepError: one line, exit status 2.
"""
from __future__ import annotations

import os
import platform
import signal
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np

from models import rundir
from models.dataset import Dataset, DatasetError
from models.ranking import best_val_loss
from train import budget, calibration, features, ranks, tables, tune
from train.data import load_splits, resolve
from train.loop import FAILURES, Job, failure, finished, has_probabilities, history, initial_weights, test_predictions, train_one
from train.plan import Plan
from train.answer import answer
from train.summary import summarize
from util import runtime
from util.fmt import pct
from util.io import Busy, DamagedFile, FolderLock, load_paddle, read_json, remove_stale_temps, write_json

CACHE_PARTS = ("images", "features", "pretrained", "synthetic")


class SweepError(Exception):
    """The sweep cannot start; the message is one line that says what to do (exit status 2)."""


@dataclass
class Sweep:
    """What this invocation opened and loaded for its plan (the plan itself never changes)."""
    plan: Plan
    device: str  # the Paddle device of this process ("cpu", "gpu:0")
    ds: Dataset
    note: str  # a dataset note for the terminal ("SYNTHETIC ...") or ""
    folder: str  # the run folder
    old: dict  # its earlier config.json ({} for a new run)
    lock: FolderLock | None  # held while this process writes the run folder (rank 0)
    setup: object = None  # train/setup.Setup
    hps: dict = field(default_factory=dict)  # optimizer -> hyperparameters (chosen by the search with --tune)
    order: list = field(default_factory=list)  # every optimizer of the run, earlier invocations' first
    todo: list = field(default_factory=list)  # optimizers with something left to train
    init_state: dict | None = None
    splits: dict | None = None
    config: dict = field(default_factory=dict)
    protocol: dict | None = None  # what the comparison does and why (config.json and results.json "protocol")
    started: float = field(default_factory=time.perf_counter)

    @property
    def config_path(self) -> str:
        return os.path.join(self.folder, rundir.CONFIG)

    def job(self, name: str, seed: int) -> Job:
        init = self.init_state if seed == self.plan.seed else load_paddle(
            initial_weights(self.folder, seed, self.plan.seed, self.setup, self.plan.pretrained))
        return Job(self.setup, init, self.hps[name], self.splits, self.plan.epochs, self.plan.batch_size, seed)


def run(plan: Plan) -> int:
    """Train every optimizer of the plan; the exit status (0 ok, 1 an optimizer failed, 130 interrupted)."""
    sw = open_sweep(plan)
    sw.plan, sw.protocol = kept_protocol(sw)  # a resumed run keeps the protocol it was given
    sw.setup = sw.plan.setup(len(sw.ds.classes))
    check_resumable(sw)
    sw.hps = hyperparams(sw)
    sw.order = list(dict.fromkeys(sw.old.get("optimizers", []) + list(plan.optimizers)))
    sw.todo = ranks.share([n for n in plan.optimizers if pending(sw, n)])
    sw.init_state = ranks.load_shared(first_weights(sw))
    info = load_data(sw) if sw.todo or "data" not in sw.old else None
    if sw.protocol is None:  # --budget: the richest protocol that fits, measured on these data
        sw.plan, sw.protocol = choose_protocol(sw)
        sw.todo = [n for n in plan.optimizers if pending(sw, n)]
    write_config(sw, info)

    results, progress = {}, Progress(sw)
    try:
        if plan.parallel > 1:
            from train import parallel

            results = parallel.run_parallel(sw.folder, list(plan.optimizers), plan.parallel, plan.device, plan.cache_dir,
                                            on_result=progress.say)
        for i, name in enumerate([] if plan.parallel > 1 else plan.optimizers, 1):
            results[name] = train_optimizer(sw, name, f"[{i}/{len(plan.optimizers)}] ")
            progress.say(name, results[name])
    except KeyboardInterrupt:
        for sig in (signal.SIGTERM, signal.SIGINT):  # the launcher repeats SIGTERM: let the reports below finish
            signal.signal(sig, signal.SIG_IGN)
        if ranks.is_main():
            print(f"\ninterrupted: finished epochs are saved in {sw.folder}; run the same command again to resume",
                  file=sys.stderr)
        return runtime.INTERRUPTED
    finally:
        done = report(sw, results) if ranks.is_main() else None
    if not ranks.is_main():
        return 0
    show(sw, *done)
    return outcome(done[0], write_failed=done[1] is None)


# ---- open: devices, dataset, run folder -----------------------------------------------------------------------

def open_sweep(plan: Plan) -> Sweep:
    """Join the ranks, open the dataset and the run folder (its lock and earlier config.json)."""
    try:
        device = ranks.join(plan.device)  # under paddle.distributed.launch: joins the ranks; rank 0 alone writes files
    except RuntimeError as e:
        raise SweepError(str(e)) from None
    os.environ["WHICH_OPTIMIZER_CACHE"] = plan.cache_dir  # converted weights too; --parallel workers inherit it
    ds, note = dataset(plan)
    folder = plan.folder(ds.root)
    old, lock = open_folder(plan, folder)
    return Sweep(plan, device, ds, note, folder, old, lock)


def dataset(plan: Plan) -> tuple[Dataset, str]:
    try:
        ds, note = resolve(plan.data, plan.cache_dir)
    except DatasetError as e:
        raise SweepError(str(e)) from None
    if note:
        print(f"*** {note} ***", file=sys.stderr)
    for n in ds.notes:
        print(f"note: {n}", file=sys.stderr)
    overlap = ds.problems.get("in_two_splits")
    if overlap and not plan.allow_split_overlap:
        raise SweepError(f"{ds.root}: {len(overlap)} file(s) are listed in two splits (e.g. {overlap[0]}), so test or "
                         f"validation accuracy would be measured on training images; fix the label file, or pass "
                         f"--allow-split-overlap to train anyway")
    if ds.problem_line() and ranks.is_main():
        print(f"warning: {ds.problem_line()}", file=sys.stderr)
    return ds, note


def open_folder(plan: Plan, folder: str) -> tuple[dict, FolderLock | None]:
    """(the run's earlier config.json, {} when new; the run folder's lock: this process is now its one writer, else
    SweepError naming the pid of the one that is); stale temporary files of killed writes removed."""
    from train.cli import folder_problem

    if not ranks.is_main():
        return {}, None
    problem = folder_problem(folder, "--out" if plan.out else "the run folder", make=True)
    if problem:
        raise SweepError(problem)
    try:
        lock = FolderLock(folder, "wait for that training to end, or give another --out")
    except Busy as e:
        raise SweepError(str(e)) from None
    path = os.path.join(folder, rundir.CONFIG)
    try:
        old = read_json(path, {})
        if not isinstance(old, dict):
            raise DamagedFile(f"{path} is unreadable (not a run's settings)")
    except DamagedFile as e:
        raise SweepError(f"{e}: this run's settings cannot be checked, so nothing is trained into it; use another "
                         f"--out, or delete {folder} to start it over (or, if this is the very command that made it, "
                         f"delete just config.json: finished optimizers are kept)") from None
    stale = remove_stale_temps(folder) + sum(remove_stale_temps(os.path.join(plan.cache_dir, sub)) for sub in CACHE_PARTS)
    if stale:
        print(f"note: removed {stale} temporary file(s) left by an interrupted run", file=sys.stderr)
    return old, lock


def check_resumable(sw: Sweep) -> None:
    """An existing run folder is continued only with the settings, data and search that made it."""
    old, plan, folder = sw.old, sw.plan, sw.folder
    if not old:
        return
    prev = rundir.RunDir(folder, old).identity()
    now = plan.identity(sw.ds.fingerprint())
    changed = [k for k in now if prev.get(k) != now[k]]
    if changed:
        was = ", ".join(f"{k}={prev.get(k)}" for k in changed)
        raise SweepError(f"{folder} was made with different settings ({was}); use another --out or the same settings")
    tuned = bool(old.get("tune"))
    trained = [n for n in old.get("optimizers", []) if os.path.isdir(os.path.join(folder, n))]
    if trained and tuned != plan.tune:
        raise SweepError(f"{folder} was made {'with' if tuned else 'without'} --tune; use another --out or "
                         f"{'add' if tuned else 'drop'} --tune")
    search = old.get("tune")
    if search and plan.tune:
        if search["budget"] != plan.tune_budget:
            raise SweepError(f"{folder} was tuned with --tune-budget {search['budget']:g}; use another --out or the same budget")
        if (search["grid_points"], search["stop_rule"]) != (tune.GRID_POINTS, tune.STOP_RULE):
            raise SweepError(f"{folder} was tuned by an older version of train/tune.py (another grid or stop rule); "
                             f"use another --out")
        for n in plan.optimizers:
            if n in search["grids"] and search["grids"][n] != tune.grid(plan.hyperparams(n)["learning_rate"]):
                raise SweepError(f"{n} in {folder} was tuned around learning rate "
                                 f"{search['grids'][n][tune.GRID_POINTS // 2]:g}; use another --out or the same --lr")


def kept_protocol(sw: Sweep) -> tuple[Plan, dict | None]:
    """(the plan to run, its protocol or None while one is still to be chosen for the budget). A named protocol
    (--tune/--seeds/--target) is recorded as such; a run folder that has one keeps it when resumed with a budget."""
    plan, old = sw.plan, sw.old.get("protocol")
    if plan.forced:
        named = plan.compare
        return plan, {"name": "named on the command line" if named else "defaults", "tune": plan.tune, "seeds": plan.seeds,
                      "budget_minutes": None, "why": "--tune/--seeds/--target chose it" if named else
                      "--parallel or the distributed launcher: the plain sweep (one seed, no search)"}
    if old:
        return replace(plan, tune=bool(old["tune"]), seeds=int(old["seeds"])), {**old, "resumed": True}
    if sw.old:  # a run folder from before protocols were recorded: it goes on as it was made
        return plan, {"name": "defaults", "tune": False, "seeds": 1, "budget_minutes": plan.budget,
                      "why": "a run made before the budget existed: it goes on as it was made"}
    if plan.budget == 0:
        return plan, {"name": "defaults", "tune": False, "seeds": 1, "budget_minutes": plan.budget,
                      "why": "--budget 0: the plain sweep"}
    return plan, None


def choose_protocol(sw: Sweep) -> tuple[Plan, dict]:
    """Measure what an epoch of each optimizer costs here, estimate every protocol, take the richest that fits the
    budget left after the data are ready; say so in one line."""
    plan = sw.plan
    costs = budget.measure(sw, plan.optimizers)
    schedule = tune.schedule(plan.tune_budget, plan.epochs, len(sw.splits["train"]), plan.batch_size)
    spent = time.perf_counter() - sw.started
    protocol = budget.choose(costs, plan.optimizers, plan.epochs, schedule, 60 * plan.budget - spent)
    protocol.update(budget_minutes=plan.budget, data_seconds=round(spent, 1), costs=costs,
                    estimated_total_seconds=round(spent + protocol["estimated_seconds"], 1),
                    fits=protocol["estimated_seconds"] <= 60 * plan.budget - spent)
    print(f"plan: {budget.line(protocol, len(plan.optimizers))} (budget {plan.budget:g} min; {protocol['why']})",
          file=sys.stderr)
    return replace(plan, tune=protocol["tune"], seeds=protocol["seeds"]), protocol


def hyperparams(sw: Sweep) -> dict:
    """Every optimizer's hyperparameters: the registry's for the plan, with --lr (earlier invocations' kept)."""
    hps = dict(sw.old.get("hyperparams", {}))
    for name in sw.plan.optimizers:
        hp = sw.plan.hyperparams(name)
        if not sw.plan.tune and name in hps and hps[name] != hp and os.path.isdir(os.path.join(sw.folder, name)):
            raise SweepError(f"{name} in {sw.folder} was trained with {hps[name]}, not {hp}; use another --out")
        hps[name] = hp  # with --tune: the centre of its search, which chooses again (from its cached trials)
    return hps


def pending(sw: Sweep, name: str) -> bool:
    """Whether `name` still has a trial, a seed or a test-prediction file to make."""
    plan = sw.plan
    trials = [rundir.trial_dir(sw.folder, name, lr) for lr in tune.grid(plan.hyperparams(name)["learning_rate"])] \
        if plan.tune else []
    if any(not os.path.exists(os.path.join(t, rundir.RESULT)) for t in trials):
        return True
    for s in plan.seed_list:
        folder = rundir.optimizer_dir(sw.folder, name, s, plan.seed)
        if finished(folder, name) is None:  # not done (a damaged result.json is set aside: not done either)
            return True
        if os.path.exists(os.path.join(folder, rundir.CHECKPOINT)) and not has_probabilities(folder):
            return True
    return False


def first_weights(sw: Sweep) -> str:
    """The base seed's initial weights (made by rank 0; the others receive them)."""
    if not ranks.is_main():
        return rundir.init_weights(sw.folder, sw.plan.seed, sw.plan.seed)
    try:
        return initial_weights(sw.folder, sw.plan.seed, sw.plan.seed, sw.setup, sw.plan.pretrained)
    except (ValueError, RuntimeError) as e:
        raise SweepError(str(e)) from None


# ---- data and config.json ----------------------------------------------------------------------------------------

def load_data(sw: Sweep) -> dict:
    """The decoded splits (and the frozen part's cached features); stops on a split that cannot work."""
    sw.splits, info = features.load(sw.ds, sw.setup, sw.init_state, sw.plan.cache_dir, sw.plan.workers, sw.device)
    errors, warnings = split_problems(sw.splits, sw.ds.classes, sw.ds.root)
    if ranks.is_main():
        for line in warnings if not errors else []:
            print(f"warning: {line}", file=sys.stderr)
    if errors:
        raise SweepError(errors[0])
    return info


def write_config(sw: Sweep, info: dict | None) -> None:
    plan = sw.plan
    sw.config = rundir.config_document(
        plan.settings(), plan.spec, classes=list(sw.ds.classes), optimizers=sw.order, hyperparams=sw.hps,
        device=sw.device, lr_schedule="cosine decay per epoch from each optimizer's learning_rate",
        augmentation="random horizontal flip", distributed=ranks.describe(plan.batch_size),
        calibration={"temperature": calibration.TEMPERATURE_RULE, "threshold": calibration.THRESHOLD_RULE},
        data=sw.old.get("data") if info is None else data_info(sw, info), versions=versions(),
        protocol={k: v for k, v in sw.protocol.items() if k != "resumed"})
    if plan.tune:
        sizes = sw.config["data"]["sizes"]
        sw.config["tune"] = tune.search_config(sw.old.get("tune"), plan.optimizers, sw.hps, plan.tune_budget,
                                               plan.epochs, sizes["train"], plan.batch_size)
    if ranks.is_main():
        write_json(sw.config_path, sw.config)
        if info is not None and (info["skipped"] or sw.ds.missing):
            print(f"note: skipped {len(info['skipped'])} unreadable and {len(sw.ds.missing)} missing image(s); "
                  f"listed in {sw.config_path}", file=sys.stderr)


def data_info(sw: Sweep, info: dict) -> dict:
    ds = sw.ds
    return {"root": ds.root, "layout": ds.layout, "fingerprint": ds.fingerprint(), "counts": ds.counts(),
            "sizes": {sp: len(s) for sp, s in sw.splits.items()}, "skipped": info["skipped"], "missing": ds.missing,
            "notes": ds.notes + ([sw.note] if sw.note else []), "decode_seconds": info.get("decode_seconds"),
            "synthetic": sw.plan.data == "synthetic", **({"features": info["features"]} if "features" in info else {}),
            "label_problems": {k: {"count": len(v), "items": v} for k, v in ds.problems.items() if v}}


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


# ---- train ------------------------------------------------------------------------------------------------------

def train_optimizer(sw: Sweep, name: str, position: str) -> dict:
    """One optimizer: its learning-rate search (--tune), then every seed; the base seed's result row. A failure
    is its status and the sweep goes on."""
    plan = sw.plan
    try:
        if plan.tune:
            sw.hps[name] = tune.search(name, sw.folder, sw.job(name, plan.seed), sw.config["tune"], position)
            sw.config["hyperparams"] = sw.hps
            write_json(sw.config_path, sw.config)  # the chosen rate: config.json["hyperparams"]
        rows = []
        for s in plan.seed_list:
            folder = rundir.optimizer_dir(sw.folder, name, s, plan.seed)
            rows.append(train_one(name, folder, sw.job(name, s), position + ("" if s == plan.seed else f"seed {s} ")))
            if ranks.is_main():  # runs trained before train_one kept test probabilities get them now
                test_predictions(folder, sw.setup, sw.splits)
        return rows[0]
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
            n = len(sw.plan.optimizers)
            print(tables.sweep_line(len(self.finished), n, sum(x in sw.todo for x in self.finished), len(sw.todo),
                                    time.perf_counter() - self.t0), file=sys.stderr)


# ---- report -------------------------------------------------------------------------------------------------------

def report(sw: Sweep, results: dict):
    """results.json and the reports from every optimizer's own files: (results, summary, comparison); summary is
    None when they could not be written (disk full: the trained optimizers are safe)."""
    from train import compare, figures  # the comparison's statistics and the plots: only at the end

    try:
        results = collect(sw, results)
        histories = {n: history(os.path.join(sw.folder, n), n) for n in results}
        for n, r in results.items():  # the ranking's tie-breaker
            r["best_val_loss"] = best_val_loss(histories[n], r.get("best_epoch"))
        comparison = compare.summarize(sw.folder, results, sw.config, sw.plan) if sw.plan.compare else None
        target = comparison["target"] if comparison else compare.time_to_target(results, histories, sw.plan.target)
        predictions = {n: read_json(os.path.join(sw.folder, n, rundir.PREDICTIONS)) for n in results}
        summary = summarize(results, predictions, sw.config["classes"])
        sw.protocol["actual_seconds"] = round(time.perf_counter() - sw.started, 1)
        summary["answer"] = answer(results, summary, target, sw.protocol, sw.plan.finetune)
        old_winner = write_results(sw, results, summary, comparison)
        figures.write_reports(sw.folder, results, histories, title(sw), comparison, summary, predictions,
                              test_images(sw, summary, old_winner))
        sw.protocol["actual_seconds"] = round(time.perf_counter() - sw.started, 1)  # the whole run, reports included
        write_results(sw, results, summary, comparison)
        return results, summary, comparison
    except OSError as e:
        print(f"error: cannot write the run's reports ({e.strerror or e}: {e.filename}); free some space and "
              f"run the same command again (finished optimizers are not trained again)", file=sys.stderr)
        return results, None, None


def collect(sw: Sweep, results: dict) -> dict:
    """This invocation's rows plus those of earlier invocations of the same run, in the run's order."""
    for name in sw.order:
        if name not in results:
            r = read_json(os.path.join(sw.folder, name, rundir.RESULT))
            if r:
                results[name] = r
    return {n: results[n] for n in sw.order if n in results}


def write_results(sw: Sweep, results: dict, summary: dict, comparison) -> str | None:
    """Write results.json (whole, from the optimizers' own files); return the winner it named before."""
    path = os.path.join(sw.folder, rundir.RESULTS)
    try:
        old_winner = (read_json(path, {}) or {}).get("winner")
    except DamagedFile:  # replaced below
        old_winner = None
    protocol = {k: v for k, v in sw.protocol.items() if k not in ("resumed", "options", "costs")}
    write_json(path, {"run": os.path.abspath(sw.folder), "data": sw.ds.root, "device": sw.device, "winner": summary["winner"],
                      "answer": summary["answer"], "protocol": {**protocol, "estimates": sw.protocol.get("options")},
                      "ranking": summary["ranking"], "baseline": summary["baseline"], "significance": summary["significance"],
                      "classes": summary["classes"], "optimizers": results, **({"comparison": comparison} if comparison else {})})
    return old_winner


def title(sw: Sweep) -> str:
    p = sw.plan
    seeds = f"seed {p.seed}" if p.seeds == 1 else f"seeds {p.seed}-{p.seed + p.seeds - 1}"
    seeds += ", tuned learning rates" if p.tune else ""
    regime = {"head": ", new head on frozen ImageNet features", "top": ", last block + head fine-tuned",
              "all": ", every layer fine-tuned" if p.pretrained else ", from scratch"}[p.finetune]
    views = ", flip test-time view" if p.tta == "hflip" else ""
    return (f"Optimizer leaderboard: {p.model}{regime}, {p.image_size}px, {p.epochs} epochs{views}, {seeds}, "
            f"{os.path.basename(sw.ds.root)}")


def test_images(sw: Sweep, summary: dict, old_winner):
    """The decoded test images for the winner's mistakes gallery: loaded from the cache only when it is to be drawn."""
    stale = old_winner != summary["winner"] or not os.path.exists(os.path.join(sw.folder, rundir.MISTAKES))
    if sw.splits is None and summary["winner"] and stale:
        sw.splits, _ = load_splits(sw.ds, sw.plan.spec, sw.plan.cache_dir, sw.plan.workers)  # the cache: no decoding
    return sw.splits["test"].images if sw.splits and "test" in sw.splits else None


def show(sw: Sweep, results: dict, summary, comparison) -> None:
    if summary is not None:
        print(tables.leaderboard_text(results, summary))
        print("\nanswer: " + " ".join(summary["answer"]["sentences"]))
    p = sw.protocol
    if p.get("estimated_total_seconds") and not p.get("resumed"):
        print(f"\nprotocol: {p['name']} (budget {p['budget_minutes']:g} min): estimated {p['estimated_total_seconds'] / 60:.1f} "
              f"min, took {p['actual_seconds'] / 60:.1f} min (estimated ÷ actual "
              f"{p['estimated_total_seconds'] / max(p['actual_seconds'], 1e-9):.2f})")
    if comparison and "search" in comparison:
        c = comparison["search"]
        ratio = "-" if c["cost_ratio"] is None else f"{c['cost_ratio']:.2f}"
        print(f"\nlearning-rate search: {c['trials']} trials ({c['stopped_early']} stopped early, {c['diverged']} diverged), "
              f"{c['search_seconds']:.1f} s = {ratio} x one plain sweep ({c['plain_sweep_seconds']:.1f} s)")
    shown = os.path.relpath(sw.folder) if os.path.abspath(sw.folder).startswith(os.getcwd() + os.sep) else os.path.abspath(sw.folder)
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

