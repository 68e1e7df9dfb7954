"""A comparison you can believe: per-optimizer learning-rate search, repeated seeds, time to accuracy.

    python train/run_all.py --tune --seeds 3          # search, then repeat the chosen setting over 3 seeds
    python train/run_all.py --tune --tune-budget 0.5  # a cheaper search

Search. For each optimizer a grid of 7 learning rates half a decade apart, centred on its registry
default (or its --lr): centre × 10^-1.5 ... centre × 10^1.5, three decades. Each trial is an ordinary
resumable `train_one` into runs/<run>/tune/<optimizer>/lr_<value>/ on a short budget: epochs and a
fixed class-stratified training subset both shrink by √(budget / 7), so the 7 trials together cost
`budget` full trainings of that optimizer before early stopping. Trials get the train subset and the
validation split only: the test split is not even handed to them. They run centre first, then outwards;
a trial stops early when it is clearly worse than the best earlier trial at the same epoch (STOP_RULE:
less than half of its gain over the no-skill rate, and more than two standard errors of the
validation-accuracy difference behind it, from half-way through the trial on); diverging trials stop by
themselves. The chosen rate is the finished trial with the best final validation accuracy
(ties: lower validation loss, then closer to the centre).

Seeds. The chosen setting is trained for the full epochs with seeds SEED .. SEED+N-1: seed SEED is the
primary run in runs/<run>/<optimizer>/ (what export reads), the others in <optimizer>/seed<s>/. One
seed means the same initial weights (runs/<run>/init*.pdparams) and data order for every optimizer, so
results pair up by seed. Each run's test predictions are kept (test_predictions.json) for the statistics
in train/stats.py: mean ± std, bootstrap 95% CI, paired tests, groups of tied optimizers (group 1: the
winner, chosen on mean best validation accuracy, and every optimizer tied with it on the test set).

Time to accuracy. The first epoch at which the mean (over seeds) validation accuracy reaches the target
(default 95% of the best optimizer's final mean validation accuracy), and the mean seconds to get there;
never reached = null in JSON, ∞ on the leaderboard.

Everything is cached like the plain sweep: a trial or seed whose result.json exists is never rerun.
"""
from __future__ import annotations

import math
import os

import numpy as np

from util.io import read_json, write_json
from train import stats

GRID_POINTS = 7  # half a decade apart: 10^-1.5 .. 10^1.5 around the centre, three decades
DEFAULT_BUDGET = 1.5  # bench/bench_tune.py: search ÷ plain sweep stays well under 3 with this
TARGET_SHARE = 0.95
STOP_RULE = ("from epoch e >= trial_epochs // 2 on, stop when val acc v < no_skill + 0.5 × (b − no_skill) and "
             "b − v > 2 × sqrt((b(1−b) + v(1−v)) / n_val), b = best earlier trial's val acc at epoch e, "
             "no_skill = majority-class share of the validation split")


def add_arguments(p) -> None:
    g = p.add_argument_group("honest comparison (learning-rate search, seeds, time to accuracy)")
    g.add_argument("--tune", action="store_true", help="choose each optimizer's learning rate on the validation split from "
                   f"a {GRID_POINTS}-point log grid (3 decades) around its default, then train the chosen one")
    g.add_argument("--tune-budget", type=float, default=DEFAULT_BUDGET, help="search cost per optimizer in full trainings of it "
                   f"(before early stopping); trials shrink epochs and training subset by sqrt(budget/{GRID_POINTS}) each")
    g.add_argument("--seeds", type=int, default=1, help="train every optimizer with N seeds (different initial weights and "
                   "data order): mean ± std, 95%% CI and groups of statistically tied optimizers")
    g.add_argument("--target", type=float, default=None, help="time-to-accuracy target, a validation accuracy in (0, 1]; "
                   f"default {round(100 * TARGET_SHARE)}%% of the best optimizer's final mean validation accuracy")


def check_arguments(p, args) -> None:
    if not args.tune_budget > 0 or not math.isfinite(args.tune_budget):
        p.error("--tune-budget must be a number above 0, e.g. 0.5")
    if args.seeds < 1:
        p.error("--seeds must be at least 1")
    if args.target is not None and not 0 < args.target <= 1:
        p.error("--target must be a validation accuracy in (0, 1], e.g. 0.9")
    args.compare = args.tune or args.seeds > 1 or args.target is not None


# ---- the search -------------------------------------------------------------------------------------

def grid(centre: float) -> list[float]:
    """GRID_POINTS learning rates half a decade apart around `centre` (3 significant digits; centre exact)."""
    half = GRID_POINTS // 2
    return [centre if k == 0 else float(f"{centre * 10 ** (k / 2):.3g}") for k in range(-half, half + 1)]


def plan(budget: float, epochs: int, n_train: int, batch_size: int) -> dict:
    """Trial epochs and training-subset size for a search costing `budget` full trainings per optimizer."""
    share = budget / GRID_POINTS
    trial_epochs = max(1, min(epochs, round(epochs * math.sqrt(share))))
    size = min(n_train, max(min(batch_size, n_train), math.ceil(n_train * min(1.0, share * epochs / trial_epochs))))
    return {"budget": budget, "grid_points": GRID_POINTS, "trial_epochs": trial_epochs, "subset_size": size,
            "train_size": n_train, "nominal_cost": round(GRID_POINTS * trial_epochs * size / (epochs * n_train), 3),
            "order": "centre first, then outwards", "stop_rule": STOP_RULE}


def subset(split, size: int, seed: int):
    """A fixed class-stratified subset of about `size` images (the same for every trial and optimizer)."""
    if size >= len(split):
        return split
    order = np.random.default_rng([seed, 6]).permutation(len(split))
    labels = split.labels[order]
    keep = []
    for c in np.unique(labels):
        members = order[labels == c]
        keep.append(members[:max(1, round(size * len(members) / len(split)))])
    idx = np.sort(np.concatenate(keep))
    return split.subset(idx)


def trial_dir(run: str, name: str, lr: float) -> str:
    return os.path.join(run, "tune", name, f"lr_{lr:.3g}")


def _search_order(lrs: list[float]) -> list[float]:
    mid = len(lrs) // 2
    return [lrs[i] for i in sorted(range(len(lrs)), key=lambda i: (abs(i - mid), i))]


def clearly_worse(references: list[list[float]], no_skill: float, n_val: int, grace: int = 1):
    """stop(history) for train_one: see STOP_RULE. references: val-accuracy curves of earlier trials;
    grace: the fewest epochs a trial runs."""
    def stop(history):
        e, v = len(history), history[-1]["val_acc"]
        best = max((r[e - 1] for r in references if len(r) >= e), default=None)
        if e < grace or best is None or best <= no_skill:
            return None
        bar = min(no_skill + 0.5 * (best - no_skill), best - 2 * math.sqrt((best * (1 - best) + v * (1 - v)) / max(1, n_val)))
        return f"stopped early after epoch {e}: val {100 * v:.1f}% < {100 * bar:.1f}%" if v < bar else None
    return stop


def search(name: str, run: str, centre_hp: dict, *, splits, init_state, tune_plan: dict, seed: int, position: str,
           train_kw: dict) -> dict:
    """Run (or reuse) every trial of `name`'s grid and return the chosen hyperparameters."""
    from train.loop import train_one

    lrs = grid(centre_hp["learning_rate"])
    trial_splits, no_skill, n_val = None, 0.0, 0
    if splits is not None:  # None: everything is done already (run_all loads no data then)
        if len(splits["val"]) == 0:
            raise ValueError("--tune chooses on the validation split, and this dataset has no validation images")
        trial_splits = {"train": subset(splits["train"], tune_plan["subset_size"], seed), "val": splits["val"]}  # no test split
        n_val = len(splits["val"])
        no_skill = float(np.bincount(splits["val"].labels).max() / max(1, n_val))
    references = []
    for j, lr in enumerate(_search_order(lrs), 1):
        folder = trial_dir(run, name, lr)
        train_one(name, folder, init_state=init_state, hyperparams={**centre_hp, "learning_rate": lr}, splits=trial_splits,
                  epochs=tune_plan["trial_epochs"], seed=seed, position=f"{position}tune {j}/{len(lrs)} lr={lr:g} ",
                  stop=clearly_worse(list(references), no_skill, n_val, max(1, tune_plan["trial_epochs"] // 2)), **train_kw)
        references.append([h["val_acc"] for h in read_json(os.path.join(folder, "history.json"), [])])
    return {**centre_hp, "learning_rate": choose(trials(run, name, lrs), centre_hp["learning_rate"])}


def trials(run: str, name: str, lrs: list[float]) -> list[dict]:
    """One row per grid point (ascending learning rate), read from the trial folders."""
    rows = []
    for lr in lrs:
        folder = trial_dir(run, name, lr)
        r = read_json(os.path.join(folder, "result.json"))
        h = read_json(os.path.join(folder, "history.json"), [])
        rows.append({"lr": lr, "status": r["status"] if r else "not run", "epochs_run": len(h),
                     "final_val_acc": h[-1]["val_acc"] if h else None, "final_val_loss": h[-1]["val_loss"] if h else None,
                     "best_val_acc": r.get("best_val_acc") if r else None,
                     "train_seconds": r.get("train_seconds", 0.0) if r else 0.0, "test_acc": r.get("test_acc") if r else None})
    return rows


def choose(rows: list[dict], centre: float) -> float:
    """The learning rate of the best trial: finished ('done') first, then final val acc, lower final val
    loss, closeness to the centre, smaller rate."""
    missing = [r["lr"] for r in rows if r["status"] == "not run"]
    if missing:
        raise RuntimeError(f"learning-rate trial(s) {', '.join(f'{v:g}' for v in missing)} did not finish")

    def key(r):
        acc = r["final_val_acc"] if r["final_val_acc"] is not None else -1.0
        loss = r["final_val_loss"] if r["final_val_loss"] is not None and math.isfinite(r["final_val_loss"]) else math.inf
        return (r["status"] == "done", acc, -loss, -abs(math.log(r["lr"] / centre)), -r["lr"])

    return max(rows, key=key)["lr"]


# ---- seeds ------------------------------------------------------------------------------------------

def seed_dir(run: str, name: str, seed: int, base_seed: int) -> str:
    return os.path.join(run, name) if seed == base_seed else os.path.join(run, name, f"seed{seed}")


def pending(run: str, name: str, args, centre_lr: float) -> bool:
    """Whether `name` still has a trial, a seed or a test-prediction file to make."""
    if args.tune and any(not os.path.exists(os.path.join(trial_dir(run, name, lr), "result.json")) for lr in grid(centre_lr)):
        return True
    from train.loop import finished

    for s in range(args.seed, args.seed + args.seeds):
        folder = seed_dir(run, name, s, args.seed)
        if finished(folder, name) is None:  # not done (a damaged result.json is set aside: not done either)
            return True
        if os.path.exists(os.path.join(folder, "best.pdparams")) and not _has_probabilities(folder):
            return True
    return False


def train_seeds(name: str, run: str, hp: dict, *, args, splits, position: str, train_kw: dict) -> None:
    """Train the seeds after the primary one (cached like everything else); keep every seed's test predictions."""
    import paddle

    from train.loop import initial_weights, train_one

    for s in range(args.seed, args.seed + args.seeds):
        folder = seed_dir(run, name, s, args.seed)
        if s != args.seed and not os.path.exists(os.path.join(folder, "result.json")):
            init = paddle.load(initial_weights(run, s, args.seed, train_kw["setup"], args.pretrained))
            train_one(name, folder, init_state=init, hyperparams=hp, splits=splits, epochs=args.epochs, seed=s,
                      position=f"{position}seed {s} ", **train_kw)
        test_predictions(folder, train_kw["setup"], splits)


def _has_probabilities(folder: str) -> bool:
    p = read_json(os.path.join(folder, "test_predictions.json"))
    return bool(p) and "probabilities" in p


def test_predictions(folder: str, setup, splits) -> dict | None:
    """{"labels", "predicted", "probabilities"} of the folder's best checkpoint on the test split
    (train_one writes it; made here for runs trained before it did, then read)."""
    path = os.path.join(folder, "test_predictions.json")
    if _has_probabilities(folder) or not os.path.exists(os.path.join(folder, "best.pdparams")) or splits is None:
        return read_json(path)
    import paddle

    from train.loop import probabilities
    from train.report import prediction_record

    _, model = setup.build(paddle.load(os.path.join(folder, "best.pdparams")))
    out = prediction_record(splits["test"].labels, probabilities(model, splits["test"], setup.spec))
    write_json(path, out)
    return out


# ---- run-directory settings ---------------------------------------------------------------------------

def settings(old: dict, args, hps: dict, n_train: int) -> dict:
    """config.json["tune"]: the search plan and every optimizer's grid (earlier invocations' kept)."""
    grids = dict((old or {}).get("grids", {}))
    grids.update({n: grid(hps[n]["learning_rate"]) for n in args.optimizers})
    return {**plan(args.tune_budget, args.epochs, n_train, args.batch_size), "grids": grids}


def check_run(old_config: dict, args, hps: dict, run: str) -> str | None:
    """Why this invocation cannot continue the run directory (one line), or None."""
    old = old_config.get("tune")
    trained = [n for n in old_config.get("optimizers", []) if os.path.isdir(os.path.join(run, n))]
    if trained and bool(old) != bool(args.tune):
        return (f"{run} was made {'with' if old else 'without'} --tune; use another --out or "
                f"{'add' if old else 'drop'} --tune")
    if not old or not args.tune:
        return None
    if old["budget"] != args.tune_budget:
        return f"{run} was tuned with --tune-budget {old['budget']:g}; use another --out or the same budget"
    if (old["grid_points"], old["stop_rule"]) != (GRID_POINTS, STOP_RULE):
        return f"{run} was tuned by an older version of train/tune.py (another grid or stop rule); use another --out"
    for n in args.optimizers:
        if n in old["grids"] and old["grids"][n] != grid(hps[n]["learning_rate"]):
            return f"{n} in {run} was tuned around learning rate {old['grids'][n][GRID_POINTS // 2]:g}; use another --out or the same --lr"
    return None


# ---- the comparison -------------------------------------------------------------------------------------

def _mean_curve(histories: list[list[dict]]) -> dict:
    """Mean ± std over seeds of the validation accuracy per epoch (epochs every seed reached)."""
    n = min((len(h) for h in histories), default=0)
    acc = np.array([[h[e]["val_acc"] for e in range(n)] for h in histories]).reshape(len(histories), n)
    secs = np.array([np.cumsum([h[e]["seconds"] for e in range(n)]) for h in histories]).reshape(len(histories), n)
    return {"epochs": list(range(1, n + 1)), "mean": acc.mean(axis=0).tolist(),
            "std": (acc.std(axis=0, ddof=1) if len(histories) > 1 else np.zeros(n)).tolist(),
            "seconds": secs.mean(axis=0).tolist()}


def summarize(run: str, results: dict, config: dict, args) -> dict:
    """Add "seeds", "val_curve", "time_to_target", "group" (and "tune") to each row of `results` (in place);
    return the run-level comparison for results.json."""
    from train.report import best_val_loss
    from train.report import ranked as report_ranked

    seeds = list(range(args.seed, args.seed + args.seeds))
    correct, cache = {}, {}

    def resampled(name, on_seeds):  # bootstrap means of one optimizer on some seeds, made once
        if (name, on_seeds) not in cache:
            cache[name, on_seeds] = stats.resampled_means(np.stack([correct[name][s] for s in on_seeds]))
        return cache[name, on_seeds]

    for name, row in results.items():
        folders = [seed_dir(run, name, s, args.seed) for s in seeds]
        rs = [read_json(os.path.join(f, "result.json")) or {"status": "not run"} for f in folders]
        hs = [read_json(os.path.join(f, "history.json"), []) for f in folders]
        preds = {s: read_json(os.path.join(f, "test_predictions.json")) for s, f in zip(seeds, folders)}
        correct[name] = {s: np.equal(p["labels"], p["predicted"]).astype(np.int8) for s, p in preds.items() if p}
        row["seeds"] = {"seeds": seeds, "status": [r["status"] for r in rs],
                        "test_acc": stats.describe(r.get("test_acc") for r in rs),
                        "best_val_acc": stats.describe(r.get("best_val_acc") for r in rs),
                        "best_val_loss": stats.describe(best_val_loss(h, r.get("best_epoch")) for r, h in zip(rs, hs)),
                        "train_seconds": stats.describe(r.get("train_seconds") for r in rs),
                        "test_acc_ci95": list(stats.interval(resampled(name, tuple(sorted(correct[name]))))) if correct[name] else None}
        row["val_curve"] = _mean_curve([h for h in hs if h])
        if args.tune and name in config.get("tune", {}).get("grids", {}):
            lrs = config["tune"]["grids"][name]
            row["tune"] = {"centre_lr": lrs[len(lrs) // 2], "chosen_lr": row.get("hyperparams", {}).get("learning_rate"),
                           "grid": trials(run, name, lrs)}

    finals = {n: r["val_curve"]["mean"][-1] for n, r in results.items() if r["val_curve"]["mean"]}
    if args.target is not None:
        target = {"val_acc": args.target, "rule": "--target"}
    elif finals:
        best = max(finals, key=finals.get)
        target = {"val_acc": TARGET_SHARE * finals[best], "rule": f"{TARGET_SHARE:.0%} of the best final mean val acc ({best})"}
    else:
        target = {"val_acc": None, "rule": "no optimizer finished an epoch"}
    for name, row in results.items():
        curve = row["val_curve"]
        i = stats.first_reach(curve["mean"], target["val_acc"]) if target["val_acc"] is not None else None
        row["time_to_target"] = {"epochs": None if i is None else i + 1, "seconds": None if i is None else round(curve["seconds"][i], 2)}

    ranked = [n for n, _ in report_ranked(results) if correct[n]]  # the leaderboard's order: validation chooses
    raw = {}
    for i, a in enumerate(ranked):
        for b in ranked[i + 1:]:
            common = tuple(sorted(set(correct[a]) & set(correct[b])))
            if common:
                raw[(a, b)] = stats.pvalue(resampled(a, common) - resampled(b, common))  # paired: same draws
    adjusted = stats.holm(raw)
    groups = stats.tie_groups(ranked, adjusted)
    for name, row in results.items():
        row["group"] = next((k for k, g in enumerate(groups, 1) if name in g), None)
    out = {"seeds": seeds, "target": target, "groups": groups,
           "significance": {"method": "paired bootstrap over seeds and test images of the test accuracy "
                                      f"({stats.RESAMPLES} resamples), Holm-corrected, alpha {stats.ALPHA}",
                            "pairs": [{"a": a, "b": b, "p": p, "p_holm": adjusted[(a, b)]} for (a, b), p in raw.items()]}}
    if args.tune:
        search_s = sum(t["train_seconds"] for r in results.values() for t in r.get("tune", {}).get("grid", []))
        sweep_s = sum(r.get("train_seconds") or 0.0 for n, r in results.items() if "tune" in r)
        grids = [t for r in results.values() for t in r.get("tune", {}).get("grid", [])]
        out["search"] = {"trials": len(grids), "stopped_early": sum(t["status"].startswith("stopped") for t in grids),
                         "diverged": sum(t["status"].startswith("diverged") for t in grids),
                         "search_seconds": round(search_s, 2), "plain_sweep_seconds": round(sweep_s, 2),
                         "cost_ratio": round(search_s / sweep_s, 3) if sweep_s else None,
                         **{k: v for k, v in config["tune"].items() if k != "grids"}}
    return out
