"""Learning-rate search, seeds and the statistics of the comparison, through `train/run_all.py --tune`."""
from __future__ import annotations

import csv
import glob
import math
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import interrupt_mid_run, load_json, run_cli, saved_epochs
from train import stats, tune
from train.optimizers import DEFAULTS

OPTS = ("sgd", "adam")


def tune_args(data, out, *extra):
    return ["train/run_all.py", "--data", data, "--optimizers", ",".join(OPTS), "--epochs", "4", "--model", "smallcnn",
            "--image-size", "32", "--batch-size", "16", "--tune", "--out", out, *extra]


@pytest.fixture(scope="module")
def tuned(kaggle_fixture, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("tune") / "run")
    p = run_cli(*tune_args(kaggle_fixture, out, "--seeds", "2"))
    return out, p


def trial_folders(run):
    return sorted(glob.glob(os.path.join(run, "tune", "*", "lr_*")))


def test_search_picks_each_learning_rate_from_a_three_decade_grid_on_validation_only(tuned):
    run, p = tuned
    cfg, res = load_json(os.path.join(run, "config.json")), load_json(os.path.join(run, "results.json"))
    plan = cfg["tune"]
    assert plan["trial_epochs"] < 4 or plan["subset_size"] < plan["train_size"]  # a short budget
    for name in OPTS:
        t = res["optimizers"][name]["tune"]
        lrs = [g["lr"] for g in t["grid"]]
        assert len(lrs) == 7 and lrs == sorted(lrs) and lrs[-1] / lrs[0] >= 999
        assert lrs[3] == t["centre_lr"] == DEFAULTS[name]["learning_rate"]
        done = [g for g in t["grid"] if g["status"] == "done"]
        assert t["chosen_lr"] in lrs and any(g["lr"] == t["chosen_lr"] for g in done)
        assert next(g for g in done if g["lr"] == t["chosen_lr"])["final_val_acc"] == max(g["final_val_acc"] for g in done)
        # the primary run (what export reads) is the chosen setting, full length
        assert cfg["hyperparams"][name]["learning_rate"] == t["chosen_lr"]
        primary = load_json(os.path.join(run, name, "result.json"))
        assert primary["hyperparams"]["learning_rate"] == t["chosen_lr"] and primary["epochs_run"] == 4
        assert os.path.getsize(os.path.join(run, name, "best.pdparams")) > 0
        for g in t["grid"]:
            assert g["epochs_run"] <= plan["trial_epochs"]
            assert g["status"] == "done" or g["status"].startswith(("stopped early", "diverged"))
    assert len(trial_folders(run)) == 14
    for folder in trial_folders(run):  # the test split was never evaluated while choosing
        r = load_json(os.path.join(folder, "result.json"))
        assert r["test_acc"] is None and r["test_loss"] is None
        assert not os.path.exists(os.path.join(folder, "test_predictions.json"))
    assert "learning-rate search: 14 trials" in p.stdout
    with Image.open(os.path.join(run, "lr_sensitivity.png")) as im:
        assert im.format == "PNG" and im.size[0] > 300


def test_a_misleading_test_split_changes_nothing_in_the_search(tuned, kaggle_fixture, tmp_path):
    """Same images, but every test label is wrong: the trials and the chosen rates must not move."""
    data = str(tmp_path / "lying")
    shutil.copytree(kaggle_fixture, data)
    rows = list(csv.reader(open(os.path.join(data, "labels.csv"))))
    for r in rows[1:]:
        if r[-1] == "1":  # is_final_validation: a test row -> shift its one-hot class by one
            r[2:6] = r[3:6] + r[2:3]
    with open(os.path.join(data, "labels.csv"), "w", newline="") as f:
        csv.writer(f).writerows(rows)
    out = str(tmp_path / "run")
    run_cli(*tune_args(data, out))
    a = load_json(os.path.join(tuned[0], "results.json"))["optimizers"]
    b = load_json(os.path.join(out, "results.json"))["optimizers"]
    for name in OPTS:
        keep = ("lr", "status", "final_val_acc", "final_val_loss", "epochs_run")
        assert [{k: g[k] for k in keep} for g in a[name]["tune"]["grid"]] == [{k: g[k] for k in keep} for g in b[name]["tune"]["grid"]]
        assert a[name]["tune"]["chosen_lr"] == b[name]["tune"]["chosen_lr"]
        assert b[name]["test_acc"] < 0.5 < a[name]["test_acc"]  # the lie is real: it shows only in the final test


def test_seeds_differ_and_the_leaderboard_reports_spread_ties_and_time_to_target(tuned):
    import paddle

    run, p = tuned
    res = load_json(os.path.join(run, "results.json"))
    comp = res["comparison"]
    assert comp["seeds"] == [0, 1]
    a, b = paddle.load(os.path.join(run, "init.pdparams")), paddle.load(os.path.join(run, "init_seed1.pdparams"))
    assert any(not np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)  # different initial weights
    spread = []
    target = comp["target"]["val_acc"]
    finals = {n: r["val_curve"]["mean"][-1] for n, r in res["optimizers"].items()}
    assert target == pytest.approx(0.95 * max(finals.values()))
    for name in OPTS:
        r = res["optimizers"][name]
        h0 = load_json(os.path.join(run, name, "history.json"))
        h1 = load_json(os.path.join(run, name, "seed1", "history.json"))
        assert [h["train_loss"] for h in h0] != [h["train_loss"] for h in h1]  # different init and data order
        assert load_json(os.path.join(run, name, "seed1", "result.json"))["hyperparams"] == r["hyperparams"]
        s = r["seeds"]
        assert s["status"] == ["done", "done"] and s["test_acc"]["n"] == 2
        accs = [r["test_acc"], load_json(os.path.join(run, name, "seed1", "result.json"))["test_acc"]]
        assert s["test_acc"]["values"] == accs and s["test_acc"]["mean"] == pytest.approx(np.mean(accs))
        assert s["test_acc"]["std"] == pytest.approx(np.std(accs, ddof=1))
        lo, hi = s["test_acc_ci95"]
        assert lo <= s["test_acc"]["mean"] <= hi
        curve = r["val_curve"]
        assert curve["mean"][0] == pytest.approx((h0[0]["val_acc"] + h1[0]["val_acc"]) / 2)
        spread.append(max(curve["std"]))
        ttt, reached = r["time_to_target"], [i for i, v in enumerate(curve["mean"]) if v >= target]
        assert ttt["epochs"] == (reached[0] + 1 if reached else None)
        pred = load_json(os.path.join(run, name, "seed1", "test_predictions.json"))
        assert np.mean(np.equal(pred["labels"], pred["predicted"])) == pytest.approx(accs[1])
    assert max(spread) > 0  # seeds give spread
    assert sorted(sum(comp["groups"], [])) == sorted(OPTS)
    # chosen on mean best validation accuracy (never on test); group 1 holds the winner
    rows = res["optimizers"]
    assert res["winner"] == max(OPTS, key=lambda n: (rows[n]["seeds"]["best_val_acc"]["mean"], -rows[n]["seeds"]["best_val_loss"]["mean"]))
    assert comp["groups"][0][0] == res["winner"]
    assert all(0 < q["p"] <= q["p_holm"] <= 1 for q in comp["significance"]["pairs"])
    board = open(os.path.join(run, "leaderboard.md")).read()
    assert "| group |" in board and " ± " in board and "seeds 0-1" in board and "Learning-rate search" in board
    for name in OPTS:
        r = res["optimizers"][name]
        cell = "∞" if r["time_to_target"]["epochs"] is None else f"| {r['time_to_target']['epochs']} |"
        assert cell in next(line for line in board.splitlines() if f"| {name} |" in line)
    with Image.open(os.path.join(run, "val_curves.png")) as im:
        assert im.format == "PNG" and im.size[0] > 300


def test_rerun_runs_no_trial_and_no_seed_again(tuned, kaggle_fixture):
    run, first = tuned
    marks = sorted(glob.glob(os.path.join(run, "**", "result.json"), recursive=True))
    assert len(marks) == 14 + 2 * 2
    before = {m: os.path.getmtime(m) for m in marks}
    p = run_cli(*tune_args(kaggle_fixture, run, "--seeds", "2"))
    assert {m: os.path.getmtime(m) for m in marks} == before
    assert sorted(glob.glob(os.path.join(run, "**", "result.json"), recursive=True)) == marks
    assert p.stdout.split("learning-rate search")[1].split("x one")[0] == first.stdout.split("learning-rate search")[1].split("x one")[0]


def test_kill_during_the_search_resumes_to_the_same_trials(tuned, kaggle_fixture, tmp_path):
    out = str(tmp_path / "killed")
    args = tune_args(kaggle_fixture, out)
    args[args.index("--optimizers") + 1] = "sgd"
    from models import rundir
    from train.optimizers import hyperparams

    order = tune._search_order(tune.grid(hyperparams("sgd", "scratch")["learning_rate"]))  # centre first
    third = os.path.join(rundir.trial_dir(out, "sgd", order[2]), "last.pdstate")  # a saved epoch of the third trial
    interrupt_mid_run(args, third, os.path.join(out, "results.json"))
    finished = {f: os.path.getmtime(f) for f in glob.glob(os.path.join(out, "tune", "sgd", "*", "result.json"))}
    assert len(finished) < 7
    saved = {t: saved_epochs(t) for t in glob.glob(os.path.join(out, "tune", "sgd", "*"))}
    run_cli(*args)
    assert {f: os.path.getmtime(f) for f in finished} == finished  # finished trials are not run again
    assert all(saved_epochs(t)[:len(s)] == s for t, s in saved.items())  # nor the epochs a trial had saved
    a = load_json(os.path.join(tuned[0], "results.json"))["optimizers"]["sgd"]
    b = load_json(os.path.join(out, "results.json"))["optimizers"]["sgd"]
    assert [(g["lr"], g["status"], g["final_val_loss"]) for g in a["tune"]["grid"]] == \
        [(g["lr"], g["status"], g["final_val_loss"]) for g in b["tune"]["grid"]]
    assert a["tune"]["chosen_lr"] == b["tune"]["chosen_lr"] and a["best_val_acc"] == b["best_val_acc"]


@pytest.mark.parametrize("args, message", [
    (["--tune-budget", "0"], "--tune-budget must be"),
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--target", "95"], "--target must be a validation accuracy"),
])
def test_bad_comparison_arguments_get_one_line_errors(args, message, tmp_path):
    p = run_cli("train/run_all.py", *args, "--out", tmp_path / "x", check=False)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr


def test_a_tuned_run_keeps_its_protocol_and_refuses_another_search_budget(tuned, kaggle_fixture):
    run, _ = tuned
    plain = tune_args(kaggle_fixture, run)
    plain.remove("--tune")  # the same command without naming the protocol: the run folder keeps the one it has
    before = {f: os.path.getmtime(f) for f in glob.glob(os.path.join(run, "**", "result.json"), recursive=True)}
    p = run_cli(*plain)
    assert "plan:" not in p.stderr and load_json(os.path.join(run, "results.json"))["protocol"]["tune"] is True
    assert {f: os.path.getmtime(f) for f in before} == before  # nothing trained again
    p = run_cli(*tune_args(kaggle_fixture, run, "--tune-budget", "0.5"), check=False)
    assert p.returncode == 2 and "--tune-budget 1.5" in p.stderr


# ---- pieces, on known inputs ---------------------------------------------------------------------------

def test_grid_and_schedule():
    assert tune.grid(0.001) == [3.16e-05, 0.0001, 0.000316, 0.001, 0.00316, 0.01, 0.0316]
    p = tune.schedule(1.5, epochs=4, n_train=7939, batch_size=64)
    assert (p["trial_epochs"], p["subset_size"]) == (2, 3403)
    assert p["nominal_cost"] == pytest.approx(1.5, rel=0.01)
    half = tune.schedule(0.5, epochs=4, n_train=7939, batch_size=64)
    assert half["nominal_cost"] == pytest.approx(0.5, rel=0.01) and half["trial_epochs"] == 1


def test_subset_is_stratified_and_fixed():
    from train.data import Split

    labels = np.repeat([0, 1, 2, 3], [50, 30, 15, 5])
    split = Split(np.arange(100)[:, None, None, None].astype(np.uint8) * np.ones((1, 2, 2, 3), np.uint8), labels)
    a, b = tune.subset(split, 40, seed=0), tune.subset(split, 40, seed=0)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.images, b.images)
    assert np.bincount(a.labels).tolist() == [20, 12, 6, 2]
    assert np.array_equal(split.labels[a.images[:, 0, 0, 0]], a.labels)  # images stay with their labels


def test_stop_rule():
    stop = tune.clearly_worse([[0.9, 0.95], [0.6]], no_skill=0.25, n_val=1000)
    assert stop([{"val_acc": 0.5}]).startswith("stopped early after epoch 1")  # 0.5 < 0.25 + 0.5 * 0.65
    assert stop([{"val_acc": 0.6}]) is None
    assert stop([{"val_acc": 0.9}, {"val_acc": 0.5}]) is not None
    assert tune.clearly_worse([[0.9, 0.95]], 0.25, 1000, grace=2)([{"val_acc": 0.3}]) is None  # too early to judge
    assert tune.clearly_worse([[0.9]], 0.25, n_val=10)([{"val_acc": 0.55}]) is None  # 10 images: within the noise
    assert tune.clearly_worse([], 0.25, 1000)([{"val_acc": 0.0}]) is None  # nothing to compare with
    assert tune.clearly_worse([[0.2]], 0.25, 1000)([{"val_acc": 0.0}]) is None  # the reference learned nothing


@pytest.mark.filterwarnings("ignore:When training")
def test_train_one_stops_when_asked_and_without_a_test_split_never_tests(tmp_path):
    import paddle

    import models
    from train.data import Split
    from train.loop import Job, train_one
    from train.setup import Setup

    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 255, (32, 16, 16, 3), dtype=np.uint8), rng.integers(0, 4, 32))
    paddle.seed(0)
    init = models.build_model("smallcnn", 4).state_dict()
    job = Job(Setup("smallcnn", 4, 16), init, dict(DEFAULTS["adam"]), {"train": split, "val": split}, epochs=5,
              batch_size=16, seed=0)
    r = train_one("adam", str(tmp_path / "t"), job, stop=lambda h: "stopped early after epoch 2: test" if len(h) == 2 else None)
    assert r["status"] == "stopped early after epoch 2: test" and r["epochs_run"] == 2
    assert r["test_acc"] is None and r["best_val_acc"] is not None


def test_paired_test_and_intervals_on_known_samples():
    rng = np.random.default_rng(1)
    good = (rng.random((3, 200)) < 0.9).astype(np.int8)
    bad = (rng.random((3, 200)) < 0.6).astype(np.int8)
    assert stats.paired_pvalue(good, bad) < 0.01  # clearly different
    assert stats.paired_pvalue(good, good.copy()) == 1.0  # identical
    # pairing matters: `better` answers 12 more of the 200 images right, in every seed. Resampled with the same draws
    # (paired) that consistent gain is clear; resampled independently it drowns in the images' spread
    better = good.copy()
    better[:, np.flatnonzero(good.min(axis=0) == 0)[:12]] = 1
    assert stats.paired_pvalue(better, good) < 0.01
    assert stats.pvalue(stats.resampled_means(better, seed=1) - stats.resampled_means(good, seed=2)) > 0.05
    one_off = good.copy()
    one_off[:, 0] = 1 - one_off[:, 0]  # one image flips in every seed: not evidence of a difference
    assert stats.paired_pvalue(good, one_off) > 0.3
    assert stats.bootstrap_ci(np.ones((3, 50))) == (1.0, 1.0)
    lo, hi = stats.bootstrap_ci(bad)
    assert lo < bad.mean() < hi and hi - lo < 0.2
    d = stats.describe([0.8, 0.9, None, 1.0])
    assert d["n"] == 3 and d["mean"] == pytest.approx(0.9) and d["std"] == pytest.approx(0.1)
    assert stats.describe([0.7])["std"] is None and stats.describe([None])["mean"] is None


def test_holm_groups_and_first_reach():
    adj = stats.holm({("a", "b"): 0.01, ("a", "c"): 0.04, ("b", "c"): 0.03})
    assert adj == pytest.approx({("a", "b"): 0.03, ("b", "c"): 0.06, ("a", "c"): 0.06})
    p = {("a", "b"): 0.5, ("a", "c"): 0.001, ("b", "c"): 0.01, ("a", "d"): 0.001, ("b", "d"): 0.001, ("c", "d"): 0.2}
    assert stats.tie_groups(["a", "b", "c", "d"], p) == [["a", "b"], ["c", "d"]]
    assert stats.tie_groups(["a", "b"], {}) == [["a", "b"]]  # untested pairs count as tied
    assert stats.first_reach([0.2, 0.5, 0.9, 0.95], 0.9) == 2
    assert stats.first_reach([0.2, 0.5], 0.9) is None
    assert math.isclose(tune.TARGET_SHARE, 0.95)
