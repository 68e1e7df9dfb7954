"""The leaderboard people read: the terminal's table, leaderboard.md (the winner's per-class recall and calibration
first, then the ranked table, per-class and calibration tables, the seeded comparison's notes) and the sweep's
progress line. Ranked by the one winner rule (models/ranking.py). No plotting here (train/figures.py draws).
"""
from __future__ import annotations

import math

from models.ranking import WINNER_RULE, ranked, winner
from train.summary import SIGNIFICANCE
from util.fmt import pct

CI_NOTE = ("95% CI: Wilson score interval over the {n} test images: the uncertainty of this checkpoint's accuracy "
           "from the finite test set (not from training randomness: --seeds measures that)")

def ci_text(ci) -> str:
    """(0.601, 0.8) -> '60.1–80.0%'; None -> '-'."""
    return "-" if not ci else f"{100 * ci[0]:.1f}–{pct(ci[1])}"

def _fmt(v, pct_=True):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return pct(v) if pct_ else f"{v:.3f}"

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
    if has_seeds(results):
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
    lines = [f"# {title}", ""]
    said = (summary or {}).get("answer")
    if said:
        lines += ["## Which optimizer to train with", "", " ".join(said["sentences"]), ""]
    lines += [f"**{winner_line(results, summary)}**", ""]
    lines += [f"- {x}" for x in (recall_line(results, summary), confidence_line(results, summary)) if x]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    lines += ["", f"- Ranked by {WINNER_RULE}."]
    if summary and summary.get("n_test") and not has_seeds(results):
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

SEEDED_HEADER = ["#", "group", "optimizer", "lr", "best val acc (mean ± std)", "test acc (mean ± std)", "95% CI",
                 "epochs to target", "seconds to target", "seeds", "status"]

def has_seeds(results: dict) -> bool:
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
