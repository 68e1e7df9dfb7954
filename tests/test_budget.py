"""--budget (train/budget.py): the richest comparison that fits the time given, from what this machine measures; named
protocols win; a resumed run keeps its plan; and the answer in words (train/answer.py), every statement from
results.json."""
from __future__ import annotations

import os

import pytest

from conftest import load_json, run_cli
from train import answer, budget, tune
from util.fmt import pct

COSTS = {"per_optimizer": {n: {"train_epoch": 0.5, "eval": 0.1, "save": 0.05, "finish": 0.3} for n in ("a", "b")}}


def test_the_planner_takes_smaller_protocols_as_the_budget_shrinks_and_never_one_that_does_not_fit():
    schedule = tune.schedule(1.5, 10, 1000, 32)
    one = 10 * (0.5 + 0.1 + 0.05) + 0.3  # one training of one optimizer, counted by hand
    assert budget.estimate(COSTS, ["a"], 10, schedule, False, 1) == pytest.approx(one + budget.REPORT_SECONDS)
    names = [p[0] for p in budget.PROTOCOLS]
    picked = []
    for seconds in (1e6, 200, 120, 60, 30, 5):
        p = budget.choose(COSTS, ["a", "b"], 10, schedule, seconds)
        assert p["estimated_seconds"] <= seconds or (p["name"] == "defaults" and "no protocol fits" in p["why"])
        richer = [o for o in p["options"] if names.index(o["name"]) > names.index(p["name"])]
        assert all(o["estimated_seconds"] > seconds for o in richer)  # the richest that fits
        picked.append(names.index(p["name"]))
    assert picked == sorted(picked, reverse=True) and picked[0] == len(names) - 1 and picked[-1] == 0


def _crafted():
    """a wins on validation; b is tied with it and reaches the target first; c diverged; d trails by 20 points."""
    row = lambda val, test, status="done", epochs=None, far=False: {  # noqa: E731
        "status": status, "best_val_acc": val, "best_val_loss": 0.2, "test_acc": test, "hyperparams": {"learning_rate": 0.1},
        "time_to_target": {"epochs": epochs, "seconds": None if epochs is None else 1.5 * epochs},
        "vs_winner": {"distinguishable": far}, "test_acc_ci95": [test - 0.05, test + 0.03]}
    results = {"a": row(0.90, 0.85, epochs=5), "b": row(0.88, 0.86, epochs=2), "c": row(0.5, 0.4, "diverged at epoch 3"),
               "d": row(0.70, 0.68, epochs=None, far=True)}
    return results, {"winner": "a"}


def test_every_sentence_of_the_answer_comes_from_the_numbers():
    results, summary = _crafted()
    said = answer.answer(results, summary, {"val_acc": 0.85}, {"name": "defaults", "seeds": 1}, "head")
    f, s = said["facts"], said["sentences"]
    assert f["winner"] == "a" and f["fastest"] == {"name": "b", "epochs": 2, "seconds": 3.0}  # fastest is not the winner
    assert f["tied"] == ["b"] and f["distinguishable"] == ["d"] and set(f["fails_at_defaults"]) == {"c", "d"}
    assert s[0].startswith("Train with a at learning rate 0.1") and pct(0.90) in s[0] and pct(0.85) in s[0]
    assert "Statistically tied with it on the test set: 1 (b); clearly behind: 1 (d)." == s[1]
    assert "Fastest to the target (85.0% validation accuracy): b, after 2 epochs (3.0 s of training)." == s[2]
    assert s[3].startswith("Fails at its default settings: ") and "c (diverged at epoch 3)" in s[3] and "d (best validation accuracy 70.0%" in s[3]
    assert s[-1].startswith("What the regime means: a linear classifier") and "convex" in s[-1]
    # with a search: the learning-rate sensitivity, and "fails at its default" read at the default rate's trial
    grid = [{"lr": lr, "status": st, "final_val_acc": acc} for lr, st, acc in
            ((0.01, "done", 0.80), (0.1, "done", 0.895), (1.0, "diverged at epoch 1", None))]
    from train import compare

    results["a"]["tune"] = {"centre_lr": 0.1, "grid": grid, "sensitivity": compare.sensitivity(grid)}
    results["b"]["tune"] = {"centre_lr": 1.0, "grid": grid, "sensitivity": {"decades": 2.0}}
    f = answer.facts(results, summary, None, None, "all")
    assert f["most_sensitive"] == {"name": "a", "decades": 0.0} and f["least_sensitive"] == {"name": "b", "decades": 2.0}
    assert "b" in f["fails_at_defaults"] and "diverged" in f["fails_at_defaults"]["b"]


@pytest.mark.slow
def test_a_budgeted_run_chooses_what_fits_says_so_and_resumes_with_the_same_plan(kaggle_fixture, tmp_path):
    out = tmp_path / "run"
    args = ["train/run_all.py", "--data", kaggle_fixture, "--optimizers", "sgd,adam", "--epochs", "2", "--model", "smallcnn",
            "--image-size", "32", "--batch-size", "16", "--out", out]
    p = run_cli(*args, "--budget", "0.5")
    res, cfg = load_json(out / "results.json"), load_json(out / "config.json")
    protocol = res["protocol"]
    assert protocol["budget_minutes"] == 0.5 and protocol["name"] in [n for n, _, _ in budget.PROTOCOLS]
    assert f"plan: {budget.line(protocol, 2)}" in p.stderr  # the plan in one line, before training
    assert "estimated ÷ actual" in p.stdout and protocol["actual_seconds"] > 0
    # what the planner chose is what `choose` makes of the costs it measured: the richest protocol that fits
    costs, left = cfg["protocol"]["costs"], 30 - protocol["data_seconds"]
    schedule = tune.schedule(1.5, 2, cfg["data"]["sizes"]["train"], 16)
    assert budget.choose(costs, ["sgd", "adam"], 2, schedule, left)["name"] == protocol["name"]
    seeds = protocol["seeds"]
    assert len(res["optimizers"]["sgd"].get("seeds", {}).get("seeds", [0])) == seeds
    # every sentence of the answer comes from results.json's own numbers
    again = answer.answer(res["optimizers"], {"winner": res["winner"]}, (res.get("comparison") or {}).get("target") or
                          {"val_acc": res["answer"]["facts"]["target_val_acc"]}, protocol, "all")
    assert again["sentences"] == res["answer"]["sentences"]
    assert load_json(out / "results.json")["answer"]["sentences"][0] in open(out / "leaderboard.md").read()
    # the same command with another budget resumes: the plan is kept, nothing is trained again
    before = {n: os.path.getmtime(out / n / "result.json") for n in ("sgd", "adam")}
    q = run_cli(*args, "--budget", "30")
    assert "plan:" not in q.stderr and load_json(out / "results.json")["protocol"]["name"] == protocol["name"]
    assert {n: os.path.getmtime(out / n / "result.json") for n in before} == before


def test_named_protocol_flags_win_over_the_budget(kaggle_fixture, tmp_path):
    out = tmp_path / "run"
    p = run_cli("train/run_all.py", "--data", kaggle_fixture, "--optimizers", "sgd", "--epochs", "1", "--model", "smallcnn",
                "--image-size", "32", "--batch-size", "16", "--seeds", "2", "--budget", "60", "--out", out)
    assert "--budget is not used" in p.stderr and "plan:" not in p.stderr
    protocol = load_json(out / "results.json")["protocol"]
    assert protocol["name"] == "named on the command line" and protocol["seeds"] == 2 and protocol["budget_minutes"] is None
    assert os.path.isdir(out / "sgd" / "seed1")
