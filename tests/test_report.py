"""What a sweep reports: chosen on validation, per-class truth, uncertainty, readable plots, the winner's mistakes."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from models import ranking
from train import figures, stats, tables
from train.summary import class_report, majority_baseline, prediction_record, select_mistakes, summarize
from util.fmt import pct

from conftest import load_json

CLASSES = ["bee", "wasp", "other_insect"]


def probs_for(labels, predicted, confidence=0.9, k=len(CLASSES)):
    """One-row-per-image probabilities whose argmax is `predicted`, with the given confidence."""
    conf = np.broadcast_to(np.asarray(confidence, dtype=float), (len(labels),))
    p = np.tile(((1 - conf) / (k - 1))[:, None], (1, k))
    p[np.arange(len(labels)), predicted] = conf
    return p


def row(val, test, status="done", epoch=2):
    return {"status": status, "best_val_acc": val, "best_epoch": epoch, "test_acc": test, "test_loss": 0.5,
            "train_seconds": 30.0, "epochs_run": 3, "hyperparams": {"learning_rate": 0.01}}


def history(val_accs, val_losses=None, first_loss=1.0):
    losses = val_losses or [first_loss / (e + 1) for e in range(len(val_accs))]
    return [{"epoch": e + 1, "train_loss": lo, "train_acc": a, "val_loss": lo, "val_acc": a, "lr": 0.01, "seconds": 1.0}
            for e, (a, lo) in enumerate(zip(val_accs, losses))]


def crafted(n=60, seed=0):
    """Validation and test disagree: 'steady' is best on validation, 'lucky' on test; 'wild' has the best
    validation accuracy of all but diverged. Test predictions are made to match the rows' test accuracy."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1, 2], [n // 2, n // 3, n - n // 2 - n // 3])
    results, histories, predictions = {}, {}, {}
    for name, val, n_right, status in (("steady", 0.80, 45, "done"), ("lucky", 0.70, 51, "done"),
                                       ("slow", 0.60, 30, "done"), ("wild", 0.95, 20, "diverged at epoch 3")):
        right = np.zeros(n, bool)
        right[rng.permutation(n)[:n_right]] = True
        pred = np.where(right, labels, (labels + 1) % 3)
        predictions[name] = prediction_record(labels, probs_for(labels, pred, rng.uniform(0.4, 0.99, n)))
        results[name] = row(val, n_right / n, status)
        histories[name] = history([val - 0.1, val, val - 0.05][: 2 if status != "done" else 3])
        results[name]["best_val_loss"] = ranking.best_val_loss(histories[name], 2)
    return results, histories, predictions, labels


# ---- choosing on validation ------------------------------------------------------------------------------

def test_the_winner_is_chosen_on_validation_even_when_test_disagrees(tmp_path):
    results, histories, predictions, labels = crafted()
    summary = summarize(results, predictions, CLASSES)
    assert summary["winner"] == "steady"  # best val among those that finished; 'lucky' tests better, 'wild' diverged
    assert [n for n, _ in ranking.ranked(results)] == ["steady", "lucky", "slow", "wild"]
    images = np.zeros((len(labels), 8, 8, 3), np.uint8)
    figures.write_reports(str(tmp_path), results, histories, "crafted", None, summary, predictions, images)
    board = open(tmp_path / "leaderboard.md").read()
    table = [line for line in board.splitlines() if line.startswith("| ") and "optimizer" not in line]
    assert [line.split(" | ")[1] for line in table[:4]] == ["steady", "lucky", "slow", "wild"]
    assert "winner: steady" in board and "| winner |" in table[0]
    assert "majority class (bee)" in table[4]  # the baseline row
    assert "\n- 95% CI: Wilson score interval over the 60 test images" in board
    text = tables.leaderboard_text(results, summary)
    assert text.splitlines()[1].split()[:2] == ["1", "steady"] and "winner: steady" in text
    for f in ("leaderboard.png", "compare.png", "confusion.png", "mistakes.png"):
        with Image.open(tmp_path / f) as im:
            assert im.format == "PNG" and im.size[0] > 300


def test_ties_on_validation_go_to_lower_validation_loss_then_run_order():
    rows = {"a": row(0.8, 0.5), "b": row(0.8, 0.9), "c": row(0.8, 0.7)}
    assert ranking.winner(rows) == "a"  # no losses known: the run's order
    rows["a"]["best_val_loss"], rows["b"]["best_val_loss"], rows["c"]["best_val_loss"] = 0.40, 0.30, 0.30
    assert [n for n, _ in ranking.ranked(rows)] == ["b", "c", "a"]
    assert ranking.winner({"x": row(0.9, 0.9, "failed: RuntimeError: boom"), "y": row(0.9, 0.9, "diverged at epoch 1")}) is None
    assert "winner: none" in tables.winner_line({"x": row(0.9, 0.9, "diverged at epoch 1")})


def test_with_seeds_the_ranking_uses_mean_best_validation_accuracy():
    def seeded(val_mean, test_mean, statuses=("done", "done")):
        r = row(0.5, 0.5)
        r["seeds"] = {"status": list(statuses), "best_val_acc": {"mean": val_mean, "n": 2, "std": 0.01},
                      "test_acc": {"mean": test_mean, "n": 2, "std": 0.01}, "test_acc_ci95": [test_mean - 0.1, test_mean + 0.1]}
        return r

    rows = {"hi_test": seeded(0.70, 0.95), "hi_val": seeded(0.90, 0.60), "bad_seed": seeded(0.99, 0.99, ("done", "diverged at epoch 2"))}
    assert [n for n, _ in ranking.ranked(rows)] == ["hi_val", "hi_test", "bad_seed"]
    assert ranking.winner(rows) == "hi_val"
    table = tables.seeded_rows(rows)
    assert table[0][2] == "hi_val" and "winner: hi_val" in tables.winner_line(rows)


# ---- per class ------------------------------------------------------------------------------------------

def test_confusion_and_per_class_results_match_the_split():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 0, 1, 2, 1, 1, 2, 2, 2, 0])
    rep = class_report(labels, probs_for(labels, pred), CLASSES)
    m = np.array(rep["confusion"]["matrix"])
    assert m.tolist() == [[2, 1, 1], [0, 2, 0], [1, 0, 3]]  # rows true, columns predicted
    assert m.sum(axis=1).tolist() == np.bincount(labels).tolist() and m.sum() == len(labels)
    bee = rep["per_class"]["bee"]
    assert {k: bee[k] for k in ("recall", "precision", "support", "correct")} == \
        {"recall": 0.5, "precision": pytest.approx(2 / 3), "support": 4, "correct": 2}
    assert bee["recall_ci95"] == pytest.approx(list(stats.wilson(2, 4)))  # 2 of 4 bees: a wide interval
    assert rep["per_class"]["wasp"]["precision"] == pytest.approx(2 / 3) and rep["per_class"]["wasp"]["recall"] == 1.0
    assert rep["test_acc"] == 0.7 and rep["correct"] == 7
    never = class_report(labels, probs_for(labels, np.zeros(10, int)), CLASSES)
    assert never["per_class"]["wasp"]["precision"] is None and never["per_class"]["wasp"]["recall"] == 0.0


def test_majority_baseline_is_the_best_constant_answer():
    test = np.array([0, 0, 1, 2, 2, 2, 2, 1])
    b = majority_baseline(test, CLASSES)
    assert b["class"] == "other_insect" and b["test_acc"] == 4 / 8  # no constant answer scores more
    lo, hi = b["test_acc_ci95"]
    assert lo < 0.5 < hi
    assert majority_baseline(np.array([0, 1, 1, 0]), CLASSES)["class"] == "bee"  # ties: the earlier class


# ---- uncertainty -----------------------------------------------------------------------------------------

def test_wilson_intervals_contain_the_estimate_and_shrink_with_more_images():
    assert stats.wilson(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))  # the textbook value
    assert stats.wilson(10, 10) == (pytest.approx(0.7225, abs=1e-4), 1.0)
    widths = []
    for n in (20, 80, 320, 1280):
        lo, hi = stats.wilson(round(0.7 * n), n)
        assert 0 <= lo < 0.7 < hi <= 1
        widths.append(hi - lo)
    assert widths == sorted(widths, reverse=True) and widths[-1] < widths[0] / 6
    assert stats.wilson(0, 0) is None
    with pytest.raises(ValueError):
        stats.wilson(11, 10)


def test_mcnemar_with_holm_marks_who_is_not_distinguishable_from_the_winner():
    n = 100
    labels = np.zeros(n, int)
    base = np.ones(n, bool)
    base[:20] = False  # the winner gets 80 right
    twin = base.copy()  # the same answers: p = 1
    worse = base.copy()
    worse[20:30] = False  # 10 images only the winner gets right, none the other way: p = 2 / 2^10
    close = base.copy()
    close[20:26] = False
    close[:2] = True  # 6 vs 2 discordant: p = 2 * 37/256
    assert stats.mcnemar(base, worse) == {"a_only": 10, "b_only": 0, "p": pytest.approx(2 / 1024)}
    assert stats.mcnemar(base, close)["p"] == pytest.approx(2 * 37 / 256)
    assert stats.mcnemar(base, twin)["p"] == 1.0
    preds = {name: prediction_record(labels, probs_for(labels, np.where(right, 0, 1)))
             for name, right in (("best", base), ("twin", twin), ("worse", worse), ("close", close))}
    results = {"best": row(0.9, 0.8), "twin": row(0.85, 0.8), "worse": row(0.8, 0.7), "close": row(0.7, 0.76)}
    summary = summarize(results, preds, ["a", "b"])
    assert summary["winner"] == "best" and summary["significance"]["comparisons"] == 3
    v = {n: results[n]["vs_winner"] for n in ("twin", "worse", "close")}
    assert v["worse"]["p_holm"] == pytest.approx(3 * 2 / 1024) and v["worse"]["distinguishable"]
    assert v["close"]["p_holm"] == pytest.approx(2 * 2 * 37 / 256) and not v["close"]["distinguishable"]
    assert v["twin"]["p_holm"] == 1.0 and not v["twin"]["distinguishable"]
    assert (v["worse"]["winner_only_right"], v["worse"]["only_this_right"]) == (10, 0)
    cells = {r[1]: r[5] for r in tables.leaderboard_rows(results, summary)}
    assert cells["best"] == "winner" and cells["worse"].startswith("≠") and cells["close"].startswith("≈")
    assert cells["worse"] == "≠ p=0.0059"


# ---- the winner's mistakes ------------------------------------------------------------------------------

def test_mistakes_are_only_misclassified_images_most_confident_first(tmp_path):
    labels = np.array([0, 1, 2, 0, 1, 2, 0])
    pred = np.array([0, 2, 2, 1, 1, 0, 2])  # wrong: 1, 3, 5, 6
    conf = np.array([0.99, 0.6, 0.9, 0.95, 0.5, 0.6, 0.7])
    probs = probs_for(labels, pred, conf)
    assert select_mistakes(labels, probs) == [3, 6, 1, 5]  # by confidence; ties keep image order
    assert select_mistakes(labels, probs, limit=2) == [3, 6]
    assert select_mistakes(labels, probs_for(labels, labels)) == []
    images = np.random.default_rng(0).integers(0, 255, (7, 12, 12, 3), dtype=np.uint8)
    shown = figures.plot_mistakes(images, labels, probs, CLASSES, str(tmp_path / "m.png"), "test")
    assert shown == [3, 6, 1, 5] and all(pred[i] != labels[i] for i in shown)
    figures.plot_mistakes(images, labels, probs_for(labels, labels), CLASSES, str(tmp_path / "none.png"), "test")
    for f in ("m.png", "none.png"):
        with Image.open(tmp_path / f) as im:
            assert im.format == "PNG"


# ---- readable plots for many optimizers -------------------------------------------------------------------

def test_compare_plot_is_readable_with_every_registry_optimizer(tmp_path):
    """25+ optimizers: one pair of panels per family, every optimizer drawn once, distinct colours within a family."""
    from train.optimizers import NAMES, REGISTRY

    names = list(NAMES) + ["extra1", "extra2"]  # two the registry does not know: the "other" family
    assert len(names) >= 27
    histories = {n: history([0.5, 0.6, 0.7], first_loss=12.6 if n == "adam" else 1.0) for n in names}
    colours = figures.plot_compare(histories, str(tmp_path / "compare.png"), {"sgd": "diverged at epoch 2"})
    assert sorted(colours) == sorted(names)
    groups = figures.families(names)
    assert sum(len(m) for m in groups.values()) == len(names) and groups["other"] == ["extra1", "extra2"]
    for family, members in groups.items():
        assert all(family == "other" or REGISTRY[n].family == family for n in members)
        assert len({colours[n] for n in members}) == len(members), family  # every curve of a panel its own colour
    styles = {(figures._style(i)["color"], figures._style(i)["ls"]) for i in range(40)}
    assert len({figures._style(i)["color"] for i in range(20)}) == 20 and len(styles) == 40
    with Image.open(tmp_path / "compare.png") as im:
        assert im.format == "PNG" and im.size[0] > 900 and im.size[1] > 900


def test_confusion_small_multiples_for_many_optimizers(tmp_path):
    m = [[5, 1, 0], [2, 3, 1], [0, 0, 6]]
    figures.plot_confusions({f"opt{i}": m for i in range(15)}, CLASSES, str(tmp_path / "c.png"))
    with Image.open(tmp_path / "c.png") as im:
        assert im.format == "PNG" and im.size[0] > 900 and im.size[1] > 600


# ---- the terminal ---------------------------------------------------------------------------------------

def test_one_percentage_format_and_the_sweep_line():
    assert pct(0.7368) == "73.7%" and pct(None) == "-" and pct(float("nan")) == "-"
    assert tables.ci_text((0.601, 0.8)) == "60.1–80.0%"
    line = tables.sweep_line(done=3, total=14, trained=2, to_train=13, elapsed=240.0)
    assert line == "sweep: 3/14 optimizers done, 11 left, about 22.0 min left (2.0 min per optimizer)"
    assert tables.sweep_line(14, 14, 14, 14, 100.0) == "sweep: 14/14 optimizers done, 0 left"


# ---- through the CLI ------------------------------------------------------------------------------------

def test_a_real_sweep_names_its_winner_and_writes_per_class_truth(tiny_run):
    res = load_json(os.path.join(tiny_run, "results.json"))
    cfg = load_json(os.path.join(tiny_run, "config.json"))
    rows = res["optimizers"]
    best = max(rows, key=lambda n: (rows[n]["best_val_acc"], -rows[n]["best_val_loss"], -list(rows).index(n)))
    assert res["winner"] == best and rows[best]["status"] == "done"
    for name in ("sgd", "adam"):
        hist = load_json(os.path.join(tiny_run, name, "history.json"))
        assert rows[name]["best_val_loss"] == next(h["val_loss"] for h in hist if h["epoch"] == rows[name]["best_epoch"])
    counts = cfg["data"]["counts"]["test"]
    for name, r in rows.items():
        m = np.array(r["confusion"]["matrix"])
        assert r["confusion"]["classes"] == cfg["classes"]
        assert m.sum(axis=1).tolist() == [counts[c] for c in cfg["classes"]]  # rows: the test split's classes
        assert np.trace(m) / m.sum() == pytest.approx(r["test_acc"])
        lo, hi = r["test_acc_ci95"]
        assert lo <= r["test_acc"] <= hi
        assert set(r["per_class"]) == set(cfg["classes"])
        pred = load_json(os.path.join(tiny_run, name, "test_predictions.json"))
        assert np.allclose(np.sum(pred["probabilities"], axis=1), 1, atol=1e-4)
        assert os.path.getsize(os.path.join(tiny_run, name, "confusion.png")) > 0
    train = [cfg["data"]["counts"]["train"][c] for c in cfg["classes"]]
    assert res["baseline"]["class"] == cfg["classes"][int(np.argmax(train))]
    assert res["baseline"]["test_acc"] == pytest.approx(counts[res["baseline"]["class"]] / sum(counts.values()))
    board = open(os.path.join(tiny_run, "leaderboard.md")).read()
    assert f"winner: {best}" in board and "majority class" in board and "Per class" in board
    for f in ("confusion.png", "mistakes.png", "leaderboard.png", "compare.png"):
        with Image.open(os.path.join(tiny_run, f)) as im:
            assert im.format == "PNG"
