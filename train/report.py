"""What a sweep shows people: per-optimizer curves, the comparison plot, the leaderboard (md, png, terminal)."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from models.io import savefig, write_text  # noqa: E402


def _fmt(v, pct=True):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:.1f}%" if pct else f"{v:.3f}"


def ranked(results: dict) -> list[tuple[str, dict]]:
    """Optimizers best first: by test accuracy of the best checkpoint (mean over seeds when there are
    several), then best val accuracy."""
    def acc(r, key):
        return (r["seeds"][key]["mean"] if "seeds" in r else r.get(key)) or -1

    return sorted(results.items(), key=lambda kv: (-acc(kv[1], "test_acc"), -acc(kv[1], "best_val_acc")))


def leaderboard_rows(results: dict) -> list[list[str]]:
    rows = []
    for i, (name, r) in enumerate(ranked(results), 1):
        val = f"{_fmt(r.get('best_val_acc'))} @ {r['best_epoch']}" if r.get("best_epoch") else "-"
        rows.append([str(i), name, val, _fmt(r.get("test_acc")), _fmt(r.get("test_loss"), pct=False),
                     f"{r.get('train_seconds', 0) / 60:.1f}", r["status"]])
    return rows


HEADER = ["#", "optimizer", "best val acc @ epoch", "test acc", "test loss", "minutes", "status"]


def leaderboard_text(results: dict) -> str:
    header, body = (SEEDED_HEADER, seeded_rows(results)) if _seeded(results) else (HEADER, leaderboard_rows(results))
    rows = [header] + body
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def leaderboard_markdown(results: dict, title: str, comparison: dict | None = None) -> str:
    header, body = (SEEDED_HEADER, seeded_rows(results)) if _seeded(results) else (HEADER, leaderboard_rows(results))
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    if comparison:
        lines += comparison_notes(results, comparison)
    return "\n".join(lines) + "\n"


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
    """Line style of the i-th optimizer in a plot: 10 hues, then other markers and dashes."""
    return dict(marker="o.^s"[i // 5 % 4], ls=("-", "--", ":")[i // 10 % 3], color=plt.get_cmap("tab20")(2 * (i % 10) % 20))


def plot_compare(histories: dict[str, list[dict]], path: str) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (name, hist) in enumerate(sorted(histories.items())):
        ep = [h["epoch"] for h in hist]
        a.plot(ep, [h["val_loss"] for h in hist], **_style(i), label=name)
        b.plot(ep, [100 * h["val_acc"] for h in hist], **_style(i), label=name)
    a.set(title="validation loss", xlabel="epoch")
    b.set(title="validation accuracy (%)", xlabel="epoch")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if histories and any(histories.values()):
        b.legend(fontsize=8, ncol=2, loc="lower right")
    fig.tight_layout()
    savefig(fig, path, dpi=100)
    plt.close(fig)


def plot_leaderboard(results: dict, path: str) -> None:
    items = [(n, r) for n, r in ranked(results)][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(items) + 1.2))
    vals = [100 * (r.get("test_acc") or 0) for _, r in items]
    colors = ["tab:green" if r["status"] == "done" else "tab:red" for _, r in items]
    ax.barh([n for n, _ in items], vals, color=colors)
    for y, v in enumerate(vals):
        ax.text(v + 0.5, y, f"{v:.1f}%", va="center", fontsize=8)
    ax.set(xlabel="test accuracy of the best checkpoint (%)", xlim=(0, 105), title="optimizer leaderboard (red: diverged/failed)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    savefig(fig, path, dpi=100)
    plt.close(fig)


def write_reports(run_dir: str, results: dict, histories: dict, title: str, comparison: dict | None = None) -> None:
    import os

    write_text(os.path.join(run_dir, "leaderboard.md"), leaderboard_markdown(results, title, comparison))
    plot_compare(histories, os.path.join(run_dir, "compare.png"))
    plot_leaderboard(results, os.path.join(run_dir, "leaderboard.png"))
    if _seeded(results):
        plot_val_curves(results, os.path.join(run_dir, "val_curves.png"), (comparison or {}).get("target", {}).get("val_acc"))
    if any("tune" in r for r in results.values()):
        plot_lr_sensitivity(results, os.path.join(run_dir, "lr_sensitivity.png"))


# ---- the comparison over seeds (train/tune.py) ---------------------------------------------------------

SEEDED_HEADER = ["#", "group", "optimizer", "lr", "test acc (mean ± std)", "95% CI", "best val acc (mean ± std)",
                 "epochs to target", "seconds to target", "seeds", "status"]


def _seeded(results: dict) -> bool:
    return any("seeds" in r for r in results.values())


def _mean_std(d: dict | None) -> str:
    if not d or d["mean"] is None:
        return "-"
    return f"{100 * d['mean']:.1f}%" + ("" if d["std"] is None else f" ± {100 * d['std']:.1f}")


def _to_target(v, fmt) -> str:
    return "∞" if v is None else fmt(v)


def seeded_rows(results: dict) -> list[list[str]]:
    rows = []
    for i, (name, r) in enumerate(ranked(results), 1):
        s = r.get("seeds", {})
        ci = s.get("test_acc_ci95")
        ok = sum(st == "done" for st in s.get("status", []))
        lr = r.get("hyperparams", {}).get("learning_rate")
        ttt = r.get("time_to_target", {})
        bad = [st for st in s.get("status", [r["status"]]) if st != "done"]
        rows.append([str(i), str(r.get("group") or "-"), name, "-" if lr is None else f"{lr:g}", _mean_std(s.get("test_acc")),
                     "-" if not ci else f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}%", _mean_std(s.get("best_val_acc")),
                     _to_target(ttt.get("epochs"), str), _to_target(ttt.get("seconds"), lambda v: f"{v:.1f}"),
                     f"{ok}/{len(s.get('status', []))}", bad[0] if bad else "done"])
    return rows


def comparison_notes(results: dict, comparison: dict) -> list[str]:
    """Lines under the leaderboard: how to read the groups and the target, and the learning-rate grids."""
    t = comparison["target"]
    lines = ["", f"Seeds {', '.join(map(str, comparison['seeds']))}: each seed gives every optimizer the same initial weights and data order.",
             f"Group: optimizers in one group are not significantly different ({comparison['significance']['method']}); "
             "group 1 holds the best optimizer and every one tied with it.",
             "95% CI: of the mean test accuracy, bootstrap over seeds and test images.",
             "Target: " + ("none" if t["val_acc"] is None else f"validation accuracy ≥ {100 * t['val_acc']:.1f}% ({t['rule']})")
             + "; epochs and seconds to the first epoch where the mean over seeds reaches it (∞: never)."]
    grids = [(n, r["tune"]) for n, r in ranked(results) if "tune" in r]
    if grids:
        s = comparison.get("search", {})
        lines += ["", f"## Learning-rate search (validation accuracy only; {s.get('trial_epochs')} epoch(s) on "
                      f"{s.get('subset_size')}/{s.get('train_size')} training images per trial)", "",
                  "| optimizer | chosen lr | final val acc per trial (lr: acc; s = stopped early, d = diverged) |", "|---|---|---|"]
        for n, tu in grids:
            cells = [f"{t['lr']:g}: " + ("-" if t["final_val_acc"] is None else f"{100 * t['final_val_acc']:.0f}%")
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
