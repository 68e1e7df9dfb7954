"""What a sweep shows people: the winner, the leaderboard (md, png, terminal), per-class results,
confusion matrices, the winner's mistakes, the comparison plot and per-optimizer curves.

Choosing. Optimizers are ranked by best VALIDATION accuracy (the mean over seeds with --seeds); the test
split never chooses, it only reports. Ties: lower validation loss at the best epoch (mean over seeds),
then the earlier optimizer in the run's order. Diverged or failed optimizers (any seed) rank after the
others and never win (`ranked`, `eligible`, WINNER_RULE).

Per checkpoint (pure functions on labels, probabilities and class names, whatever computed them):
  prediction_record(labels, probabilities)     -> what <optimizer>/test_predictions.json holds
  class_report(labels, probabilities, classes) -> accuracy, Wilson 95% interval, confusion, per-class
  majority_baseline(test_labels, classes)  -> the best constant answer: always the test split's most frequent class
  select_mistakes(labels, probabilities, limit) -> the most confident wrong answers, for mistakes.png
  summarize(results, predictions, classes)  -> winner, baseline, McNemar vs the winner
"""
from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from util.fmt import pct  # noqa: E402
from util.io import savefig, write_text  # noqa: E402
from train import stats  # noqa: E402

WINNER_RULE = ("best validation accuracy (mean over seeds with --seeds; the test split never chooses); ties: lower "
               "validation loss at the best epoch, then the earlier optimizer in the run; diverged/failed never win")
SIGNIFICANCE = ("exact McNemar test on the test images that the winner and the other checkpoint answer differently "
                f"(one right, one wrong), Holm-corrected over the comparisons with the winner, alpha {stats.ALPHA}")
CI_NOTE = ("95% CI: Wilson score interval over the {n} test images: the uncertainty of this checkpoint's accuracy "
           "from the finite test set (not from training randomness: --seeds measures that)")
MISTAKES_SHOWN = 24


def ci_text(ci) -> str:
    """(0.601, 0.8) -> '60.1–80.0%'; None -> '-'."""
    return "-" if not ci else f"{100 * ci[0]:.1f}–{pct(ci[1])}"


def _fmt(v, pct_=True):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return pct(v) if pct_ else f"{v:.3f}"


# ---- per checkpoint, from its test predictions -----------------------------------------------------------

def prediction_record(labels, probabilities, temperature: float | None = None) -> dict:
    """<optimizer>/test_predictions.json: the test labels, the predicted class and the softmax probabilities
    (N x classes, 6 decimals) of the best checkpoint, in the test split's order; calibrated with `temperature`
    when it is given (train/calibration.py: what the exported model answers)."""
    probs = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"probabilities {probs.shape} do not match {len(labels)} labels")
    return {"labels": labels.tolist(), "predicted": probs.argmax(axis=1).tolist(),
            "probabilities": np.round(probs, 6).tolist(), **({"temperature": temperature} if temperature else {})}


def class_report(labels, probabilities, classes) -> dict:
    """Test results of one checkpoint: {"n", "correct", "test_acc", "test_acc_ci95" (Wilson), "confusion"
    {"classes", "matrix" (rows: true class, columns: predicted class)}, "per_class" {class: {"recall",
    "precision" (None when never predicted), "support"}}}."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(probabilities).argmax(axis=1)
    m = stats.confusion(labels, predicted, len(classes))
    correct, n = int(np.trace(m)), int(m.sum())
    per_class = {}
    for i, c in enumerate(classes):
        support, said = int(m[i].sum()), int(m[:, i].sum())
        ci = stats.wilson(int(m[i, i]), support)
        per_class[c] = {"recall": m[i, i] / support if support else None, "correct": int(m[i, i]),
                        "recall_ci95": list(ci) if ci else None, "precision": m[i, i] / said if said else None,
                        "support": support}
        per_class[c] = {k: (float(v) if isinstance(v, np.floating) else v) for k, v in per_class[c].items()}
    ci = stats.wilson(correct, n)
    return {"n": n, "correct": correct, "test_acc": correct / n if n else None, "test_acc_ci95": list(ci) if ci else None,
            "confusion": {"classes": list(classes), "rows": "true class", "columns": "predicted class", "matrix": m.tolist()},
            "per_class": per_class}


def majority_baseline(test_labels, classes) -> dict:
    """Test accuracy of the best constant answer, always the test split's most frequent class (ties: the
    earlier class), with its Wilson 95% interval: the bar a model must clear to have learnt anything. (The
    training split's majority can score less when the splits' class mix differs; this is the stricter bar.)"""
    test_labels = np.asarray(test_labels)
    k = int(np.argmax(np.bincount(test_labels, minlength=len(classes)))) if len(test_labels) else 0
    correct, n = int(np.sum(test_labels == k)), len(test_labels)
    ci = stats.wilson(correct, n)
    return {"class": classes[k], "test_acc": correct / n if n else None, "test_acc_ci95": list(ci) if ci else None,
            "n": n, "rule": "always answer the test split's most frequent class (the best constant answer)"}


def select_mistakes(labels, probabilities, limit: int = MISTAKES_SHOWN) -> list[int]:
    """Indices of misclassified images, most confident mistakes first (confidence: the probability of the
    wrong answer; ties: image order), at most `limit`."""
    probs = np.asarray(probabilities)
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != np.asarray(labels))
    conf = probs[wrong, predicted[wrong]]
    return [int(i) for i in wrong[np.lexsort((wrong, -conf))][:limit]]


# ---- choosing the winner --------------------------------------------------------------------------------

def eligible(r: dict) -> bool:
    """Can win: trained to the end ('done') on every seed, with a best checkpoint."""
    statuses = r["seeds"]["status"] if "seeds" in r else [r.get("status")]
    return all(st == "done" for st in statuses) and r.get("best_val_acc") is not None


def _val(r: dict, key: str):
    v = r["seeds"][key]["mean"] if "seeds" in r and key in r["seeds"] else r.get(key)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def ranked(results: dict) -> list[tuple[str, dict]]:
    """Optimizers best first (WINNER_RULE): those that can win first, by best validation accuracy (mean
    over seeds), lower validation loss at the best epoch, then run order (the order of `results`)."""
    def key(item):
        i, (name, r) = item
        acc, loss = _val(r, "best_val_acc"), _val(r, "best_val_loss")
        return (not eligible(r), -(acc if acc is not None else -1.0), loss if loss is not None else math.inf, i)

    return [kv for _, kv in sorted(enumerate(results.items()), key=key)]


def best_val_loss(history: list[dict], best_epoch) -> float | None:
    """Validation loss at the best epoch (the tie-breaker of the ranking)."""
    row = next((h for h in history or [] if h.get("epoch") == best_epoch), None)
    return None if row is None or not math.isfinite(row["val_loss"]) else row["val_loss"]


def winner(results: dict) -> str | None:
    top = ranked(results)
    return top[0][0] if top and eligible(top[0][1]) else None


def summarize(results: dict, predictions: dict, classes) -> dict:
    """Add to each row of `results` (in place) what its test predictions say: "test_acc_ci95", "confusion",
    "per_class", and "vs_winner" (McNemar against the winner, Holm-corrected); return the run-level
    {"winner", "ranking", "baseline", "significance", "classes"} for results.json.

    predictions: {name: {"labels", "probabilities"}} (test_predictions.json; missing names are skipped)."""
    preds = {n: p for n, p in (predictions or {}).items() if p and p.get("probabilities") and n in results}
    for name, p in preds.items():
        rep = class_report(p["labels"], p["probabilities"], classes)
        results[name].update({k: rep[k] for k in ("test_acc_ci95", "confusion", "per_class")})
    best = winner(results)
    raw = {}
    if best in preds:
        right = {n: np.equal(p["labels"], np.argmax(p["probabilities"], axis=1)) for n, p in preds.items()}
        tests = {n: stats.mcnemar(right[best], right[n]) for n in preds if n != best and len(right[n]) == len(right[best])}
        raw = {n: t["p"] for n, t in tests.items()}
        adjusted = stats.holm(raw)
        for n, t in tests.items():
            results[n]["vs_winner"] = {"winner_only_right": t["a_only"], "only_this_right": t["b_only"], "p": t["p"],
                                       "p_holm": adjusted[n], "distinguishable": adjusted[n] < stats.ALPHA}
    labels = next(iter(preds.values()))["labels"] if preds else None
    baseline = majority_baseline(labels, classes) if labels is not None else None
    return {"winner": best, "ranking": WINNER_RULE, "baseline": baseline, "classes": list(classes),
            "n_test": len(labels) if labels is not None else None,
            "significance": {"method": SIGNIFICANCE, "comparisons": len(raw)}}


# ---- tables -------------------------------------------------------------------------------------------

HEADER = ["#", "optimizer", "best val acc @ epoch", "test acc", "95% CI", "vs winner", "test loss",
          "test ECE (uncalibrated)", "confident mistakes", "minutes", "status"]


def _vs_winner(name: str, r: dict, best: str | None) -> str:
    if name == best:
        return "winner"
    v = r.get("vs_winner")
    if not v:
        return "-"
    return f"{'≠' if v['distinguishable'] else '≈'} p={v['p_holm']:.2g}"


def leaderboard_rows(results: dict, summary: dict | None = None) -> list[list[str]]:
    best = (summary or {}).get("winner", winner(results))
    rows = []
    for i, (name, r) in enumerate(ranked(results), 1):
        val = f"{_fmt(r.get('best_val_acc'))} @ {r['best_epoch']}" if r.get("best_epoch") else "-"
        cal = (r.get("calibration") or {}).get("test") or {}
        ece = f"{_fmt(cal.get('ece_after'))} ({_fmt(cal.get('ece_before'))})" if cal else "-"
        rows.append([str(i), name, val, _fmt(r.get("test_acc")), ci_text(r.get("test_acc_ci95")), _vs_winner(name, r, best),
                     _loss(r.get("test_loss")), ece, _fmt(cal.get("confident_mistakes_after")),
                     f"{r.get('train_seconds', 0) / 60:.1f}", r["status"]])
    base = (summary or {}).get("baseline")
    if base:
        rows.append(["-", f"majority class ({base['class']})", "-", pct(base["test_acc"]), ci_text(base["test_acc_ci95"]),
                     "-", "-", "-", "-", "-", "baseline"])
    return rows


def _table(results: dict, summary: dict | None) -> tuple[list[str], list[list[str]]]:
    if _seeded(results):
        return SEEDED_HEADER, seeded_rows(results, summary)
    return HEADER, leaderboard_rows(results, summary)


def _loss(v) -> str:
    """A loss with 3 decimals; never "-0.000" (a loss is >= 0: a tiny negative is rounding)."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{max(0.0, v):.3f}"


def class_order(classes) -> list:
    """Classes as the reports list them: wasps first (the class the task is named for), then the rest in label order."""
    return sorted(classes, key=lambda c: c != "wasp")


def recall_line(results: dict, summary: dict | None = None) -> str | None:
    """The winner's test recall per class with its Wilson 95% interval, wasps first; None without a winner."""
    best = (summary or {}).get("winner", winner(results))
    per = results.get(best, {}).get("per_class") if best else None
    if not per:
        return None
    parts = [f"{c} {pct(per[c]['recall'])} ({per[c].get('correct', '?')}/{per[c]['support']}, 95% CI "
             f"{ci_text(per[c].get('recall_ci95'))})" for c in class_order(per)]
    return f"{best}, test recall per class: " + "; ".join(parts)


def confidence_line(results: dict, summary: dict | None = None) -> str | None:
    """How sure the winner's answers are, in one line: its calibration and its "not sure" rule, measured on test."""
    best = (summary or {}).get("winner", winner(results))
    cal = results.get(best, {}).get("calibration") if best else None
    t = (cal or {}).get("test")
    if not t:
        return None
    given = t["answered"]
    unsure = (f"\"not sure\" below {pct(cal['threshold'])} (chosen on validation): answers {pct(given['coverage'])} of "
              f"the test photos, {pct(given['accuracy'])} of those right") if cal["threshold"] > 0 else \
        "never \"not sure\" (its answers were precise enough on validation at every confidence)"
    return (f"{best}, confidence: temperature {cal['temperature']:g} fitted on validation; test ECE {pct(t['ece_after'])} "
            f"(uncalibrated {pct(t['ece_before'])}), NLL {_loss(t['nll_after'])} ({_loss(t['nll_before'])}), wrong with "
            f"over 90% confidence {pct(t['confident_mistakes_after'])} of test photos "
            f"({pct(t['confident_mistakes_before'])} uncalibrated); {unsure}")


def winner_line(results: dict, summary: dict | None = None) -> str:
    best = (summary or {}).get("winner", winner(results))
    if best is None:
        return "winner: none (no optimizer finished without diverging or failing)"
    r = results[best]
    if "seeds" in r:
        s = r["seeds"]
        return (f"winner: {best} (chosen on validation: best val acc {pct(s['best_val_acc']['mean'])} mean over "
                f"{s['best_val_acc']['n']} seeds; test {pct(s['test_acc']['mean'])}, 95% CI {ci_text(s.get('test_acc_ci95'))})")
    return (f"winner: {best} (chosen on validation: best val acc {pct(r.get('best_val_acc'))} @ epoch {r.get('best_epoch')}; "
            f"test {pct(r.get('test_acc'))}, 95% CI {ci_text(r.get('test_acc_ci95'))})")


def leaderboard_text(results: dict, summary: dict | None = None) -> str:
    header, body = _table(results, summary)
    rows = [header] + body
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(winner_line(results, summary))
    lines += [x for x in (recall_line(results, summary), confidence_line(results, summary)) if x]
    return "\n".join(lines)


def leaderboard_markdown(results: dict, title: str, comparison: dict | None = None, summary: dict | None = None) -> str:
    header, body = _table(results, summary)
    lines = [f"# {title}", "", f"**{winner_line(results, summary)}**", ""]
    lines += [f"- {x}" for x in (recall_line(results, summary), confidence_line(results, summary)) if x]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    lines += ["", f"- Ranked by {WINNER_RULE}."]
    if summary and summary.get("n_test") and not _seeded(results):
        lines += ["- " + CI_NOTE.format(n=summary["n_test"]) + ".",
                  f"- vs winner: {SIGNIFICANCE}; ≈ not distinguishable from the winner on this test set, ≠ distinguishable "
                  "(p = Holm-adjusted p-value)."]
    if summary and summary.get("baseline"):
        b = summary["baseline"]
        lines.append(f"- Majority-class baseline: always answering {b['class']!r}, the test split's most frequent class (the best constant answer).")
    if any(r.get("calibration") for r in results.values()):
        lines.append("- Test ECE: expected calibration error over 10 confidence bins of the calibrated probabilities (in "
                     "brackets: before calibration); confident mistakes: share of test photos answered wrongly with more "
                     "than 90% confidence. Each model's temperature and \"not sure\" threshold are fitted on validation "
                     "(calibration.png).")
    if comparison:
        lines += comparison_notes(results, comparison)
    lines += per_class_markdown(results, summary)
    lines += calibration_markdown(results)
    return "\n".join(lines) + "\n"


def per_class_markdown(results: dict, summary: dict | None = None) -> list[str]:
    """The per-class table: test recall / precision of every optimizer's best checkpoint."""
    rows = [(n, r["per_class"]) for n, r in ranked(results) if r.get("per_class")]
    if not rows:
        return []
    classes = class_order(rows[0][1])
    lines = ["", "## Per class, on the test split (best checkpoint): recall / precision", "",
             "| optimizer | " + " | ".join(f"{c} (n={rows[0][1][c]['support']})" for c in classes) + " |",
             "|" + "---|" * (len(classes) + 1)]
    for n, per in rows:
        lines.append(f"| {n} | " + " | ".join(f"{pct(per[c]['recall'])} / {pct(per[c]['precision'])}" for c in classes) + " |")
    lines += ["", "Recall: share of the class's test images answered correctly (per-class accuracy); precision: share "
                  "of the answers naming the class that are right (- : never answered). Confusion matrices: results.json, "
                  "confusion.png."]
    return lines


def calibration_markdown(results: dict) -> list[str]:
    """Per optimizer: temperature and "not sure" threshold (fitted on validation) and what they do on both splits."""
    rows = [(n, r["calibration"]) for n, r in ranked(results) if (r.get("calibration") or {}).get("test")]
    if not rows:
        return []
    lines = ["", "## Calibration (fitted on validation; test only measures): before → after", "",
             "| optimizer | temperature | val ECE | test ECE | val NLL | test NLL | test: wrong with > 90% confidence "
             "| \"not sure\" below | test answered | right when answered |", "|" + "---|" * 10]
    for n, c in rows:
        v, t = c["val"], c["test"]
        lines.append(f"| {n} | {c['temperature']:g} | {pct(v['ece_before'])} → {pct(v['ece_after'])} | "
                     f"{pct(t['ece_before'])} → {pct(t['ece_after'])} | {_loss(v['nll_before'])} → {_loss(v['nll_after'])} | "
                     f"{_loss(t['nll_before'])} → {_loss(t['nll_after'])} | {pct(t['confident_mistakes_before'])} → "
                     f"{pct(t['confident_mistakes_after'])} | {pct(c['threshold'])} | {pct(t['answered']['coverage'])} | "
                     f"{pct(t['answered']['accuracy'])} |")
    rules = rows[0][1]["rules"]
    lines += ["", f"Temperature: {rules['temperature']}. \"Not sure\": {rules['threshold']}. ECE: {rules['ece']}."]
    return lines


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def sweep_line(done: int, total: int, trained: int, to_train: int, elapsed: float) -> str:
    """The sweep's progress after an optimizer ends: done/left and the time left, estimated from the
    measured wall time per optimizer trained so far in this invocation (finished ones are not retrained)."""
    line = f"sweep: {done}/{total} optimizers done, {total - done} left"
    if total > done and trained:
        each = elapsed / trained
        line += f", about {_duration(each * max(0, to_train - trained))} left ({_duration(each)} per optimizer)"
    return line


# ---- figures ------------------------------------------------------------------------------------------

def plot_curves(name: str, history: list[dict], path: str) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    ep = [h["epoch"] for h in history]
    for key, ls in (("train", "--"), ("val", "-")):
        a.plot(ep, [h[f"{key}_loss"] for h in history], ls, marker="o", label=key)
        b.plot(ep, [100 * h[f"{key}_acc"] for h in history], ls, marker="o", label=key)
    a.set(title=f"{name}: loss", xlabel="epoch")
    b.set(title=f"{name}: accuracy (%)", xlabel="epoch")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    savefig(fig, path, dpi=100)
    plt.close(fig)


def _style(i: int) -> dict:
    """Line style of the i-th optimizer in a plot: 20 distinct colours (tab20's dark shades, then its
    light ones, drawn dashed), then the same colours dotted; markers vary too."""
    k = i % 20
    return dict(marker="os^Dv"[i % 5], ls=("-", "--", ":")[min(i // 10, 2)], color=plt.get_cmap("tab20")(2 * (k % 10) + k // 10))


def plot_compare(histories: dict[str, list[dict]], path: str, status: dict | None = None) -> dict:
    """Validation loss (log scale: a curve far above the others does not flatten them) and accuracy of
    every optimizer; legend outside the plots, naming diverged/failed ones. Returns {name: colour}."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8))
    handles, colours = [], {}
    for i, (name, hist) in enumerate(sorted(histories.items())):
        if not hist:  # no epoch on record (failed at once, or its history.json is lost): nothing to draw or name
            continue
        ep = [h["epoch"] for h in hist]
        loss = [h["val_loss"] if h["val_loss"] is not None and math.isfinite(h["val_loss"]) and h["val_loss"] > 0 else np.nan for h in hist]
        st = (status or {}).get(name, "done")
        label = name if st == "done" else f"{name} ({st})"
        handles += a.plot(ep, loss, **_style(i), ms=4, lw=1.4, label=label)
        colours[name] = matplotlib.colors.to_hex(handles[-1].get_color())
        b.plot(ep, [100 * h["val_acc"] for h in hist], **_style(i), ms=4, lw=1.4)
    a.set_yscale("log")
    a.set(title="validation loss (log scale)", xlabel="epoch")
    b.set(title="validation accuracy (%)", xlabel="epoch")
    for ax in (a, b):
        ax.grid(alpha=0.3, which="both")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    if handles:
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.84, 0.5), fontsize=8, frameon=False,
                   ncol=1 if len(handles) <= 22 else 2, title="optimizer")
    savefig(fig, path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return colours


def plot_leaderboard(results: dict, path: str, summary: dict | None = None) -> None:
    """Best validation accuracy (what ranks) and test accuracy with its 95% interval (what it is worth) per
    optimizer, the winner on top, the majority-class baseline as a line."""
    best = (summary or {}).get("winner", winner(results))
    items = ranked(results)[::-1]
    seeded = _seeded(results)
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(items) + 1.8))
    y = np.arange(len(items))
    val = [100 * (_val(r, "best_val_acc") or 0) for _, r in items]
    test = [100 * ((r["seeds"]["test_acc"]["mean"] if seeded and "seeds" in r else r.get("test_acc")) or 0) for _, r in items]
    cis = [(r.get("seeds", {}).get("test_acc_ci95") if seeded else r.get("test_acc_ci95")) for _, r in items]
    err = np.array([[max(0.0, t - 100 * c[0]), max(0.0, 100 * c[1] - t)] if c else [0, 0] for t, c in zip(test, cis)]).T.reshape(2, len(items))
    h = 0.38
    ax.barh(y + h / 2, val, h, color="#9ecae1")
    colors = ["tab:green" if eligible(r) else "tab:red" for _, r in items]
    ax.barh(y - h / 2, test, h, color=colors, xerr=err, error_kw=dict(ecolor="k", capsize=2, lw=1))
    for yi, v, t, c in zip(y, val, test, cis):
        ax.text(v + 0.6, yi + h / 2, pct(v / 100), va="center", fontsize=7, color="#3182bd")
        ax.text((100 * c[1] if c else t) + 0.6, yi - h / 2, pct(t / 100), va="center", fontsize=7)

    def tied(r):  # not distinguishable from the winner on the test set
        if seeded:
            return best is not None and r.get("group") is not None and r.get("group") == results[best].get("group")
        return bool(r.get("vs_winner")) and not r["vs_winner"]["distinguishable"]

    ax.set_yticks(y, [f"{n}  ★ winner" if n == best else n + ("  ≈" if tied(r) else "") for n, r in items])
    handles = [Patch(color="#9ecae1", label=("mean " if seeded else "") + "best validation accuracy (ranks)"),
               Patch(color="tab:green", label="test accuracy, mean over seeds, 95% CI (bootstrap)" if seeded
                     else "test accuracy of the best checkpoint, 95% CI (Wilson)"),
               Patch(color="tab:red", label="diverged/failed: never wins")]
    base = (summary or {}).get("baseline")
    if base and base["test_acc"] is not None:
        handles.append(ax.axvline(100 * base["test_acc"], color="k", ls="--", lw=1,
                                  label=f"majority-class baseline ({base['class']}): {pct(base['test_acc'])}"))
    ax.set(xlabel="accuracy (%)", xlim=(0, 112), ylim=(-0.7, len(items) - 0.3))
    tied = "same group as" if seeded else "not distinguishable from"
    ax.set_title(f"optimizer leaderboard: ranked by validation accuracy; winner: {best or 'none'}\n"
                 f"≈ {tied} the winner on the test set", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.6 / (0.5 * len(items) + 1.8)),
              ncol=2, frameon=False)
    fig.tight_layout()
    savefig(fig, path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_confusions(matrices: dict[str, list[list[int]]], classes, path: str, titles: dict | None = None) -> None:
    """Confusion matrices side by side (small multiples, up to 5 per row): rows the true class, columns the
    predicted one; colour = share of the true class (recall on the diagonal), numbers = images."""
    names = list(matrices)
    n, k = max(1, len(names)), len(classes)
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    side = max(2.4, 0.45 * k + 1.2)
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols + 1.2, side * rows + 1.0), squeeze=False)
    img = None
    for ax, name in zip(axes.flat, names):
        m = np.asarray(matrices[name], dtype=float)
        share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        img = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        if k <= 10:
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=7 if k <= 6 else 6,
                            color="white" if share[i, j] > 0.6 else "black")
        ax.set_title((titles or {}).get(name, name), fontsize=8)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for i, ax in enumerate(axes.flat[:len(names)]):
        r, c = divmod(i, cols)
        bottom = i + cols >= len(names)  # nothing below it
        ax.set_xticks(range(k), classes if bottom else [""] * k, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(k), classes if c == 0 else [""] * k, fontsize=7)
        if c == 0:
            ax.set_ylabel("true", fontsize=8)
        if bottom:
            ax.set_xlabel("predicted", fontsize=8)
    fig.suptitle("confusion on the test split\nrows: true class, columns: predicted; colour: share of the true class", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.93, 0.97))
    if img is not None:
        fig.colorbar(img, ax=axes.ravel().tolist(), shrink=0.6, label="share of the true class")
    savefig(fig, path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_mistakes(images, labels, probabilities, classes, path: str, title: str, limit: int = MISTAKES_SHOWN) -> list[int]:
    """A gallery of the most confident mistakes (select_mistakes) with true class, predicted class and the
    model's confidence under each image; returns the indices shown."""
    shown = select_mistakes(labels, probabilities, limit)
    probs = np.asarray(probabilities)
    wrong = int(np.sum(probs.argmax(axis=1) != np.asarray(labels)))
    cols = min(6, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols + 0.4, 2.3 * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, shown):
        p = int(probs[i].argmax())
        ax.imshow(np.asarray(images[i]), interpolation="nearest")
        ax.set_title(f"true: {classes[int(labels[i])]}\npred: {classes[p]} ({pct(float(probs[i, p]))})", fontsize=7, y=-0.32)
    if not shown:
        axes.flat[0].text(0.5, 0.5, "no mistakes on the test split", ha="center", va="center")
    fig.suptitle(f"{title}: {len(shown)} of {wrong} misclassified test images (of {len(labels)}), most confident first", fontsize=9)
    fig.tight_layout()
    savefig(fig, path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return shown


def plot_calibration(results: dict, path: str, summary: dict | None = None) -> None:
    """calibration.png: the winner's reliability diagram on the test split (before and after its temperature), every
    optimizer's test ECE before and after (ranked order, one row each: readable with 25+), and the winner's accuracy
    of the answers given against the share answered, with its "not sure" threshold marked."""
    best = (summary or {}).get("winner", winner(results))
    items = [(n, r["calibration"]) for n, r in ranked(results) if "coverage_curve" in ((r.get("calibration") or {}).get("test") or {})]
    if not items:
        return
    cal = dict(items).get(best) or items[0][1]
    name = best if best in dict(items) else items[0][0]
    fig = plt.figure(figsize=(15, max(4.6, 0.26 * len(items) + 1.6)))
    a, b, c = fig.add_subplot(1, 3, 1), fig.add_subplot(1, 3, 2), fig.add_subplot(1, 3, 3)
    t = cal["test"]
    for key, colour, label in (("reliability_before", "tab:gray", f"uncalibrated (ECE {pct(t['ece_before'])})"),
                               ("reliability_after", "tab:blue", f"T = {cal['temperature']:g} (ECE {pct(t['ece_after'])})")):
        rel = t[key]
        pts = [(x, y, k) for x, y, k in zip(rel["confidence"], rel["accuracy"], rel["count"]) if x is not None]
        a.plot([p[0] for p in pts], [p[1] for p in pts], "-o", color=colour, label=label, ms=3)
        a.scatter([p[0] for p in pts], [p[1] for p in pts], s=[8 + 2 * p[2] for p in pts], color=colour, alpha=0.35)
    a.plot([0, 1], [0, 1], "k:", lw=1, label="perfect calibration")
    a.set(title=f"{name}: reliability on the test split\n(marker area: photos in the bin)", xlabel="confidence (top probability)",
          ylabel="accuracy in the bin", xlim=(0, 1.02), ylim=(0, 1.02))
    a.legend(fontsize=7, loc="upper left")
    y = np.arange(len(items))[::-1]
    h = 0.38
    b.barh(y + h / 2, [100 * it[1]["test"]["ece_before"] for it in items], h, color="tab:gray", label="uncalibrated")
    b.barh(y - h / 2, [100 * it[1]["test"]["ece_after"] for it in items], h, color="tab:blue", label="calibrated on validation")
    b.set_yticks(y, [n + ("  ★" if n == best else "") for n, _ in items], fontsize=7)
    b.set(title="test ECE per optimizer (10 bins)", xlabel="expected calibration error (%)", ylim=(-0.7, len(items) - 0.3))
    b.legend(fontsize=7, loc="lower right")
    b.grid(axis="x", alpha=0.3)
    curve = t["coverage_curve"]
    c.plot([100 * v for v in curve["coverage"]], [100 * v for v in curve["accuracy"]], "-", color="tab:blue")
    given = t["answered"]
    if given["coverage"] is not None and given["accuracy"] is not None:
        c.scatter([100 * given["coverage"]], [100 * given["accuracy"]], color="tab:red", zorder=3,
                  label=f"\"not sure\" below {pct(cal['threshold'])}: answers {pct(given['coverage'])}, {pct(given['accuracy'])} right")
    c.set(title=f"{name}: answering only when sure (test split)", xlabel="photos answered (%), most confident first",
          ylabel="accuracy of the answers given (%)", xlim=(0, 101))
    c.legend(fontsize=7, loc="lower left")
    for ax in (a, c):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    savefig(fig, path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def write_reports(run_dir: str, results: dict, histories: dict, title: str, comparison: dict | None = None,
                  summary: dict | None = None, predictions: dict | None = None, test_images=None) -> dict:
    """Every report file of a run: leaderboard.md/png, compare.png, calibration.png, confusion.png (all optimizers) and
    <optimizer>/confusion.png, mistakes.png (the winner's; needs `test_images`, the decoded test split in
    the predictions' order), and with seeds/tuning val_curves.png, lr_sensitivity.png. Returns the summary."""
    if summary is None:
        summary = summarize(results, predictions or {}, [], None)
    write_text(os.path.join(run_dir, "leaderboard.md"), leaderboard_markdown(results, title, comparison, summary))
    plot_compare(histories, os.path.join(run_dir, "compare.png"), {n: r.get("status", "done") for n, r in results.items()})
    plot_leaderboard(results, os.path.join(run_dir, "leaderboard.png"), summary)
    plot_calibration(results, os.path.join(run_dir, "calibration.png"), summary)
    classes = summary.get("classes") or []
    order = [n for n, r in ranked(results) if r.get("confusion")]
    best = summary.get("winner")
    for n in order:
        mine = os.path.join(run_dir, n, "confusion.png")
        src = os.path.join(run_dir, n, "test_predictions.json")
        if os.path.isdir(os.path.dirname(mine)) and (not os.path.exists(mine) or not os.path.exists(src)
                                                     or os.path.getmtime(mine) < os.path.getmtime(src)):
            plot_confusions({n: results[n]["confusion"]["matrix"]}, classes, mine,
                            {n: f"{n}: test {pct(results[n].get('test_acc'))}"})
    if order:
        plot_confusions({n: results[n]["confusion"]["matrix"] for n in order}, classes, os.path.join(run_dir, "confusion.png"),
                        {n: f"{i}. {n}{' (winner)' if n == best else '' if results[n]['status'] == 'done' else ' (' + results[n]['status'].split(':')[0] + ')'}"
                            f": test {pct(results[n].get('test_acc'))}"
                         for i, n in enumerate(order, 1)})
    p = (predictions or {}).get(best)
    if test_images is not None and p and p.get("probabilities") and len(test_images) == len(p["labels"]):
        plot_mistakes(test_images, p["labels"], p["probabilities"], classes, os.path.join(run_dir, "mistakes.png"),
                      f"winner {best}")
    if _seeded(results):
        plot_val_curves(results, os.path.join(run_dir, "val_curves.png"), (comparison or {}).get("target", {}).get("val_acc"))
    if any("tune" in r for r in results.values()):
        plot_lr_sensitivity(results, os.path.join(run_dir, "lr_sensitivity.png"))
    return summary


# ---- the comparison over seeds (train/tune.py) ---------------------------------------------------------

SEEDED_HEADER = ["#", "group", "optimizer", "lr", "best val acc (mean ± std)", "test acc (mean ± std)", "95% CI",
                 "epochs to target", "seconds to target", "seeds", "status"]


def _seeded(results: dict) -> bool:
    return any("seeds" in r for r in results.values())


def _mean_std(d: dict | None) -> str:
    if not d or d["mean"] is None:
        return "-"
    return pct(d["mean"]) + ("" if d["std"] is None else f" ± {100 * d['std']:.1f}")


def _to_target(v, fmt) -> str:
    return "∞" if v is None else fmt(v)


def seeded_rows(results: dict, summary: dict | None = None) -> list[list[str]]:
    rows = []
    for i, (name, r) in enumerate(ranked(results), 1):
        s = r.get("seeds", {})
        ok = sum(st == "done" for st in s.get("status", []))
        lr = r.get("hyperparams", {}).get("learning_rate")
        ttt = r.get("time_to_target", {})
        bad = [st for st in s.get("status", [r["status"]]) if st != "done"]
        rows.append([str(i), str(r.get("group") or "-"), name,
                     "-" if lr is None else f"{lr:g}", _mean_std(s.get("best_val_acc")), _mean_std(s.get("test_acc")),
                     ci_text(s.get("test_acc_ci95")), _to_target(ttt.get("epochs"), str),
                     _to_target(ttt.get("seconds"), lambda v: f"{v:.1f}"), f"{ok}/{len(s.get('status', []))}", bad[0] if bad else "done"])
    base = (summary or {}).get("baseline")
    if base:
        rows.append(["-", "-", f"majority class ({base['class']})", "-", "-", pct(base["test_acc"]),
                     ci_text(base["test_acc_ci95"]) + " (Wilson)", "-", "-", "-", "baseline"])
    return rows


def comparison_notes(results: dict, comparison: dict) -> list[str]:
    """Lines under the leaderboard: how to read the groups and the target, and the learning-rate grids."""
    t = comparison["target"]
    lines = ["", f"Seeds {', '.join(map(str, comparison['seeds']))}: each seed gives every optimizer the same initial weights and data order.",
             f"Group: optimizers in one group are not significantly different ({comparison['significance']['method']}); "
             "group 1 holds the winner (chosen on validation) and every one tied with it on the test set.",
             "95% CI: of the mean test accuracy, bootstrap over seeds and test images.",
             "Target: " + ("none" if t["val_acc"] is None else f"validation accuracy ≥ {pct(t['val_acc'])} ({t['rule']})")
             + "; epochs and seconds to the first epoch where the mean over seeds reaches it (∞: never)."]
    grids = [(n, r["tune"]) for n, r in ranked(results) if "tune" in r]
    if grids:
        s = comparison.get("search", {})
        lines += ["", f"## Learning-rate search (validation accuracy only; {s.get('trial_epochs')} epoch(s) on "
                      f"{s.get('subset_size')}/{s.get('train_size')} training images per trial)", "",
                  "| optimizer | chosen lr | final val acc per trial (lr: acc; s = stopped early, d = diverged) |", "|---|---|---|"]
        for n, tu in grids:
            cells = [f"{t['lr']:g}: " + pct(t["final_val_acc"])
                     + ("" if t["status"] == "done" else " s" if t["status"].startswith("stopped") else " d" if t["status"].startswith("diverged") else " ?")
                     for t in tu["grid"]]
            chosen = tu["chosen_lr"]
            lines.append(f"| {n} | {'-' if chosen is None else f'{chosen:g}'} | {', '.join(cells)} |")
        if s.get("cost_ratio") is not None:
            lines += ["", f"Search cost: {s['search_seconds']:.1f} s of training = {s['cost_ratio']:.2f} × one plain sweep "
                          f"({s['plain_sweep_seconds']:.1f} s); {s['stopped_early']} of {s['trials']} trials stopped early, {s['diverged']} diverged."]
    return lines


def plot_val_curves(results: dict, path: str, target: float | None = None) -> None:
    """Mean ± std (over seeds) validation accuracy per epoch, one line per optimizer."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (name, r) in enumerate(sorted(results.items())):
        c = r.get("val_curve")
        if not c or not c["epochs"]:
            continue
        m, s = [100 * v for v in c["mean"]], [100 * v for v in c["std"]]
        ax.plot(c["epochs"], m, **_style(i), label=name)
        ax.fill_between(c["epochs"], [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], color=_style(i)["color"], alpha=0.15)
    if target is not None:
        ax.axhline(100 * target, color="k", ls=":", lw=1, label="target")
    ax.set(title="validation accuracy over seeds (mean ± std)", xlabel="epoch", ylabel="%")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    fig.tight_layout()
    savefig(fig, path, dpi=100)
    plt.close(fig)


def plot_lr_sensitivity(results: dict, path: str) -> None:
    """Final validation accuracy of every search trial against its learning rate (log x), one line per
    optimizer; hollow markers: stopped early; crosses at 0: diverged before finishing an epoch."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (name, r) in enumerate(sorted(results.items())):
        if "tune" not in r:
            continue
        g, col, ls = r["tune"]["grid"], _style(i)["color"], _style(i)["ls"]
        lrs = [t["lr"] for t in g]
        acc = [100 * (t["final_val_acc"] if t["final_val_acc"] is not None else 0) for t in g]
        ax.plot(lrs, acc, color=col, ls=ls, label=name, lw=1.2)
        for lr, a, t in zip(lrs, acc, g):
            marker = "x" if t["final_val_acc"] is None else "o"
            face = col if t["status"] == "done" else "none"
            ax.scatter([lr], [a], marker=marker, s=28, facecolors=face if marker == "o" else col, edgecolors=col)
        if r["tune"]["chosen_lr"] is not None:
            ax.scatter([r["tune"]["chosen_lr"]], [acc[lrs.index(r["tune"]["chosen_lr"])]] if r["tune"]["chosen_lr"] in lrs else [0],
                       marker="*", s=160, color=col, edgecolors="k", zorder=3)
    ax.set_xscale("log")
    ax.set(title="learning-rate sensitivity (star: chosen; hollow: stopped early; x: diverged)",
           xlabel="learning rate", ylabel="final validation accuracy of the trial (%)", ylim=(0, 102))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, ncol=2, loc="lower left")
    fig.tight_layout()
    savefig(fig, path, dpi=100)
    plt.close(fig)
