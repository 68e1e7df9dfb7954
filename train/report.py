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
    """Optimizers best first: by test accuracy of the best checkpoint, then best val accuracy."""
    return sorted(results.items(), key=lambda kv: (-(kv[1].get("test_acc") or -1), -(kv[1].get("best_val_acc") or -1)))


def leaderboard_rows(results: dict) -> list[list[str]]:
    rows = []
    for i, (name, r) in enumerate(ranked(results), 1):
        val = f"{_fmt(r.get('best_val_acc'))} @ {r['best_epoch']}" if r.get("best_epoch") else "-"
        rows.append([str(i), name, val, _fmt(r.get("test_acc")), _fmt(r.get("test_loss"), pct=False),
                     f"{r.get('train_seconds', 0) / 60:.1f}", r["status"]])
    return rows


HEADER = ["#", "optimizer", "best val acc @ epoch", "test acc", "test loss", "minutes", "status"]


def leaderboard_text(results: dict) -> str:
    rows = [HEADER] + leaderboard_rows(results)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def leaderboard_markdown(results: dict, title: str) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in leaderboard_rows(results)]
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


def plot_compare(histories: dict[str, list[dict]], path: str) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    cmap = plt.get_cmap("tab20")
    for i, (name, hist) in enumerate(sorted(histories.items())):
        ep = [h["epoch"] for h in hist]
        style = dict(marker="o.^s"[i // 5 % 4], ls=("-", "--", ":")[i // 10 % 3], color=cmap(2 * (i % 10) % 20), label=name)
        a.plot(ep, [h["val_loss"] for h in hist], **style)
        b.plot(ep, [100 * h["val_acc"] for h in hist], **style)
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


def write_reports(run_dir: str, results: dict, histories: dict, title: str) -> None:
    import os

    write_text(os.path.join(run_dir, "leaderboard.md"), leaderboard_markdown(results, title))
    plot_compare(histories, os.path.join(run_dir, "compare.png"))
    plot_leaderboard(results, os.path.join(run_dir, "leaderboard.png"))
