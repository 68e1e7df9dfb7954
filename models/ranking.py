"""The winner rule, defined once: training (results.json "winner", every leaderboard) and export (a run without a
winner) both rank optimizers with it. The test split never chooses.

Optimizers are ranked by best VALIDATION accuracy (the mean over seeds with --seeds). Ties: lower validation loss at
the best epoch (mean over seeds), then the earlier optimizer in the run's order. Diverged or failed optimizers (any
seed) rank after the others and never win. A row is an optimizer's results.json entry: "status",
"best_val_acc", "best_val_loss", and with seeds "seeds" {"status": [...], "best_val_acc": {"mean"}, ...}.
"""
from __future__ import annotations

import math

WINNER_RULE = ("best validation accuracy (mean over seeds with --seeds; the test split never chooses); ties: lower "
               "validation loss at the best epoch, then the earlier optimizer in the run; diverged/failed never win")


def eligible(r: dict) -> bool:
    """Can win: trained to the end ('done') on every seed, with a best checkpoint."""
    statuses = r["seeds"]["status"] if "seeds" in r else [r.get("status")]
    return all(st == "done" for st in statuses) and r.get("best_val_acc") is not None


def value(r: dict, key: str):
    """The row's `key` (best_val_acc, best_val_loss, test_acc ...): the mean over seeds when it has seeds; None if unknown."""
    v = r["seeds"][key]["mean"] if "seeds" in r and key in r["seeds"] else r.get(key)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def ranked(results: dict) -> list[tuple[str, dict]]:
    """(name, row) best first by WINNER_RULE; `results` is in the run's order."""
    def key(item):
        i, (name, r) = item
        acc, loss = value(r, "best_val_acc"), value(r, "best_val_loss")
        return (not eligible(r), -(acc if acc is not None else -1.0), loss if loss is not None else math.inf, i)

    return [kv for _, kv in sorted(enumerate(results.items()), key=key)]


def winner(results: dict) -> str | None:
    top = ranked(results)
    return top[0][0] if top and eligible(top[0][1]) else None


def best_val_loss(history: list[dict], best_epoch) -> float | None:
    """Validation loss at the best epoch (the tie-breaker)."""
    row = next((h for h in history or [] if h.get("epoch") == best_epoch), None)
    return None if row is None or not math.isfinite(row["val_loss"]) else row["val_loss"]
