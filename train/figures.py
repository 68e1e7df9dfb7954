"""The pictures of a run, and the report writer (`write_reports`): per-optimizer curves.png and confusion.png,
compare.png, leaderboard.png, calibration.png, confusion.png, mistakes.png, and with seeds / a search val_curves.png
and lr_sensitivity.png. Every plot stays readable with 25+ optimizers. Only the report stage imports this module
(matplotlib): training does not.
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

from models.ranking import eligible, ranked, value, winner  # noqa: E402
from models import rundir  # noqa: E402
from train.summary import MISTAKES_SHOWN, select_mistakes  # noqa: E402
from train.tables import has_seeds, leaderboard_markdown  # noqa: E402
from util.fmt import pct  # noqa: E402
from util.io import savefig, write_text  # noqa: E402

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
    """Line style of the i-th line of a panel: 20 distinct colours (tab20's dark shades, then its light ones, drawn
    dashed), then the same colours dotted; markers vary too."""
    k = i % 20
    return dict(marker="os^Dv"[i % 5], ls=("-", "--", ":")[min(i // 10, 2)], color=plt.get_cmap("tab20")(2 * (k % 10) + k // 10))

def families(names) -> dict[str, list[str]]:
    """family -> its optimizers (the registry's families, in its order; names it does not know: "other")."""
    from train.optimizers import FAMILIES, REGISTRY

    out = {f: [] for f in (*FAMILIES, "other")}
    for n in names:
        out[REGISTRY[n].family if n in REGISTRY else "other"].append(n)
    return {f: members for f, members in out.items() if members}


def family_panels(names, per_family: int, width: float = 3.4, height: float = 3.1):
    """A figure with `per_family` panels per optimizer family (two families a row): (fig, {family: [axes]}, groups).
    Small multiples keep 25+ optimizers readable: at most a dozen lines, each its own colour, per panel."""
    groups = families(names) or {"": []}
    cols = 2 if len(groups) > 1 else 1
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, per_family * cols, figsize=(2 * width * cols + 0.6, height * rows + 0.7), squeeze=False)
    panels = {}
    for k, family in enumerate(groups):
        r, c = divmod(k, cols)
        panels[family] = [axes[r][per_family * c + j] for j in range(per_family)]
    for k in range(len(groups), rows * cols):  # an odd number of families: the last panels stay empty
        r, c = divmod(k, cols)
        for j in range(per_family):
            axes[r][per_family * c + j].set_visible(False)
    return fig, panels, groups


def plot_compare(histories: dict[str, list[dict]], path: str, status: dict | None = None) -> dict:
    """Validation loss (log scale: a curve far above the others does not flatten them) and accuracy of every
    optimizer, one pair of panels per optimizer family (small multiples: readable with 25+ optimizers, at most a
    dozen distinct colours per panel), the same y range in every panel; diverged/failed ones named in the legend.
    Returns {name: colour}."""
    drawn = {n: h for n, h in histories.items() if h}  # no epoch on record (failed at once, history lost): nothing to draw
    fig, panels, groups = family_panels(drawn, 2)
    losses = [h["val_loss"] for hist in drawn.values() for h in hist
              if h["val_loss"] is not None and math.isfinite(h["val_loss"]) and h["val_loss"] > 0]
    accs = [100 * h["val_acc"] for hist in drawn.values() for h in hist]
    colours = {}
    for family, members in groups.items():
        a, b = panels[family]
        for i, name in enumerate(members):
            hist = drawn[name]
            ep = [h["epoch"] for h in hist]
            loss = [h["val_loss"] if h["val_loss"] is not None and math.isfinite(h["val_loss"]) and h["val_loss"] > 0
                    else np.nan for h in hist]
            st = (status or {}).get(name, "done")
            line, = a.plot(ep, loss, **_style(i), ms=3, lw=1.3, label=name if st == "done" else f"{name} ({st})")
            colours[name] = matplotlib.colors.to_hex(line.get_color())
            b.plot(ep, [100 * h["val_acc"] for h in hist], **_style(i), ms=3, lw=1.3)
        a.set_yscale("log")
        if losses:
            a.set_ylim(min(losses) * 0.9, max(losses) * 1.1)
        if accs:
            b.set_ylim(min(accs) - 1, min(100.5, max(accs) + 1))
        a.set_title(f"{family}: validation loss (log)" if family else "validation loss (log)", fontsize=9)
        b.set_title(f"{family}: validation accuracy (%)" if family else "validation accuracy (%)", fontsize=9)
        if members:
            a.legend(fontsize=7, loc="upper right", frameon=False)
        for ax in (a, b):
            ax.grid(alpha=0.3, which="both")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch", fontsize=8)
    fig.suptitle("every optimizer's validation curves, by family (same scales in every panel)", fontsize=10)
    fig.tight_layout()
    savefig(fig, path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return colours


def plot_leaderboard(results: dict, path: str, summary: dict | None = None) -> None:
    """Best validation accuracy (what ranks) and test accuracy with its 95% interval (what it is worth) per
    optimizer, the winner on top, the majority-class baseline as a line."""
    best = (summary or {}).get("winner", winner(results))
    items = ranked(results)[::-1]
    seeded = has_seeds(results)
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(items) + 1.8))
    y = np.arange(len(items))
    val = [100 * (value(r, "best_val_acc") or 0) for _, r in items]
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

def plot_val_curves(results: dict, path: str, target: float | None = None) -> None:
    """Mean ± std (over seeds) validation accuracy per epoch, one panel per optimizer family (readable with 25+)."""
    curves = {n: r["val_curve"] for n, r in results.items() if (r.get("val_curve") or {}).get("epochs")}
    fig, panels, groups = family_panels(curves, 1, width=5.0)
    low = min((100 * (m - s) for c in curves.values() for m, s in zip(c["mean"], c["std"])), default=0)
    for family, members in groups.items():
        ax = panels[family][0]
        for i, name in enumerate(members):
            c = curves[name]
            m, sd = [100 * v for v in c["mean"]], [100 * v for v in c["std"]]
            ax.plot(c["epochs"], m, **_style(i), ms=3, label=name)
            ax.fill_between(c["epochs"], [a - b for a, b in zip(m, sd)], [a + b for a, b in zip(m, sd)],
                            color=_style(i)["color"], alpha=0.15)
        if target is not None:
            ax.axhline(100 * target, color="k", ls=":", lw=1, label="target")
        ax.set_ylim(max(0, low - 1), 100.5)
        ax.set_title(f"{family}: validation accuracy over seeds (mean ± std, %)" if family else
                     "validation accuracy over seeds (mean ± std, %)", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right", frameon=False)
    fig.tight_layout()
    savefig(fig, path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_lr_sensitivity(results: dict, path: str) -> None:
    """Final validation accuracy of every search trial against its learning rate (log x), one panel per optimizer
    family (readable with 25+); star: the chosen rate; hollow: stopped early; crosses at 0: diverged."""
    tuned = {n: r["tune"] for n, r in results.items() if "tune" in r}
    fig, panels, groups = family_panels(tuned, 1, width=5.0)
    for family, members in groups.items():
        ax = panels[family][0]
        for i, name in enumerate(members):
            g, col, ls = tuned[name]["grid"], _style(i)["color"], _style(i)["ls"]
            lrs = [t["lr"] for t in g]
            acc = [100 * (t["final_val_acc"] if t["final_val_acc"] is not None else 0) for t in g]
            ax.plot(lrs, acc, color=col, ls=ls, label=name, lw=1.2)
            for lr, a, t in zip(lrs, acc, g):
                if t["final_val_acc"] is None:  # diverged before an epoch ended
                    ax.scatter([lr], [a], marker="x", s=24, color=col)
                else:
                    ax.scatter([lr], [a], marker="o", s=24, facecolors=col if t["status"] == "done" else "none", edgecolors=col)
            chosen = tuned[name]["chosen_lr"]
            if chosen is not None:
                ax.scatter([chosen], [acc[lrs.index(chosen)]] if chosen in lrs else [0], marker="*", s=140, color=col,
                           edgecolors="k", zorder=3)
        ax.set_xscale("log")
        ax.set(ylim=(0, 102))
        ax.set_title(f"{family}: final validation accuracy (%) per learning rate" if family else
                     "final validation accuracy (%) per learning rate", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower left", frameon=False)
    fig.suptitle("learning-rate sensitivity (star: chosen; hollow: stopped early; x: diverged)", fontsize=10)
    fig.tight_layout()
    savefig(fig, path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _stale(picture: str, source: str) -> bool:
    """A per-optimizer picture to draw again: absent, or older than the file it shows."""
    return not os.path.exists(picture) or not os.path.exists(source) or os.path.getmtime(picture) < os.path.getmtime(source)


def write_reports(run_dir: str, results: dict, histories: dict, title: str, comparison: dict | None, summary: dict,
                  predictions: dict, test_images=None) -> None:
    """Every report file of a run (names: models/rundir.py): leaderboard.md/png, compare.png, calibration.png,
    confusion.png (all optimizers), per optimizer curves.png and confusion.png, mistakes.png (the winner's; needs
    `test_images`, the decoded test split in the predictions' order), and with seeds/tuning val_curves.png,
    lr_sensitivity.png. `summary`: train/summary.summarize's."""
    def at(*parts):
        return os.path.join(run_dir, *parts)

    write_text(at(rundir.LEADERBOARD), leaderboard_markdown(results, title, comparison, summary))
    plot_compare(histories, at(rundir.COMPARE), {n: r.get("status", "done") for n, r in results.items()})
    plot_leaderboard(results, at(rundir.LEADERBOARD_PNG), summary)
    plot_calibration(results, at(rundir.CALIBRATION), summary)
    for n, rows in histories.items():
        if rows and os.path.isdir(at(n)) and _stale(at(n, rundir.CURVES), at(n, rundir.HISTORY)):
            plot_curves(n, rows, at(n, rundir.CURVES))
    classes = summary.get("classes") or []
    order = [n for n, r in ranked(results) if r.get("confusion")]
    best = summary.get("winner")
    for n in order:
        if os.path.isdir(at(n)) and _stale(at(n, rundir.CONFUSION), at(n, rundir.PREDICTIONS)):
            plot_confusions({n: results[n]["confusion"]["matrix"]}, classes, at(n, rundir.CONFUSION),
                            {n: f"{n}: test {pct(results[n].get('test_acc'))}"})
    if order:
        plot_confusions({n: results[n]["confusion"]["matrix"] for n in order}, classes, at(rundir.CONFUSION),
                        {n: f"{i}. {n}{' (winner)' if n == best else '' if results[n]['status'] == 'done' else ' (' + results[n]['status'].split(':')[0] + ')'}"
                            f": test {pct(results[n].get('test_acc'))}"
                         for i, n in enumerate(order, 1)})
    p = predictions.get(best)
    if test_images is not None and p and p.get("probabilities") and len(test_images) == len(p["labels"]):
        plot_mistakes(test_images, p["labels"], p["probabilities"], classes, at(rundir.MISTAKES), f"winner {best}")
    if has_seeds(results):
        plot_val_curves(results, at(rundir.VAL_CURVES), (comparison or {}).get("target", {}).get("val_acc"))
    if any("tune" in r for r in results.values()):
        plot_lr_sensitivity(results, at(rundir.LR_SENSITIVITY))
