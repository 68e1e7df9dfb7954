"""The answer in words: which optimizer to train with, said from the numbers of results.json alone.

`facts` gathers the numbers (the winner and its scores, who is statistically tied with it, who reached the target
first, who is most and least sensitive to its learning rate, who fails at its defaults, the regime); `sentences`
says them. results.json keeps both ("answer": {"facts", "sentences"}), leaderboard.md and the terminal open with
the sentences, and the demo's Leaderboard tab shows leaderboard.md.
"""
from __future__ import annotations

from models.ranking import eligible, ranked, value
from util.fmt import pct

FAILS_BELOW = 0.10  # an optimizer "fails at its defaults" when it diverges, fails, or ends this far below the winner

REGIME = {
    "head": ("a linear classifier trained on frozen ImageNet features is a convex problem: every optimizer that converges "
             "reaches nearly the same solution, so the differences are small and mostly within the noise of the test "
             "set; fine-tuning the whole network (--finetune all, the GPU default) is not convex, and there the "
             "choice of optimizer and its learning rate matters more"),
    "top": ("only the last block and the classifier train, on frozen features below them: a small non-convex problem; "
            "with every layer training (--finetune all) the optimizer's choice matters more"),
    "all": ("every layer trains: a non-convex problem where the optimizer and its learning rate can change the result; "
            "repeat with more seeds (--seeds) before trusting a small difference"),
}


def _tied(results: dict, best: str) -> tuple[list, list]:
    """(optimizers statistically tied with the winner on the test set, those that are not), in leaderboard order."""
    tied, apart = [], []
    for name, r in ranked(results):
        if name == best or not eligible(r):
            continue
        if "group" in r:  # with seeds: the bootstrap tie groups
            (tied if r["group"] == results[best].get("group") else apart).append(name)
        elif r.get("vs_winner"):  # one seed: McNemar against the winner, Holm-corrected
            (apart if r["vs_winner"]["distinguishable"] else tied).append(name)
    return tied, apart


def _fails(results: dict, best: str) -> dict:
    """name -> why it fails at its default settings (the centre of its search, when there was one)."""
    out, bar = {}, (value(results[best], "best_val_acc") or 0) - FAILS_BELOW if best else None
    for name, r in results.items():
        statuses = r["seeds"]["status"] if "seeds" in r else [r.get("status", "not run")]
        centre = next((t for t in (r.get("tune") or {}).get("grid", []) if t["lr"] == r["tune"]["centre_lr"]), None)
        if centre is not None and centre["status"].startswith(("diverged", "failed")):
            out[name] = f"its default learning rate {centre['lr']:g} {centre['status'].split(':')[0]} in the search"
        elif centre is not None and bar is not None and centre["final_val_acc"] is not None and centre["final_val_acc"] < bar:
            out[name] = f"at its default learning rate {centre['lr']:g} it ended at {pct(centre['final_val_acc'])} validation accuracy"
        elif any(not st == "done" for st in statuses):
            out[name] = next(st for st in statuses if st != "done")
        elif centre is None and bar is not None and (value(r, "best_val_acc") or 0) < bar:
            out[name] = f"best validation accuracy {pct(value(r, 'best_val_acc'))}, more than {FAILS_BELOW:.0%} below the winner"
    return out


def facts(results: dict, summary: dict, target: dict | None, protocol: dict | None, regime: str) -> dict:
    best = summary.get("winner")
    out = {"winner": best, "regime": regime, "protocol": (protocol or {}).get("name"),
           "seeds": int((protocol or {}).get("seeds") or 1),
           "target_val_acc": (target or {}).get("val_acc"), "fails_at_defaults": _fails(results, best)}
    if best:
        r = results[best]
        s = r.get("seeds") or {}
        out.update(winner_val_acc=value(r, "best_val_acc"), winner_test_acc=value(r, "test_acc"),
                   winner_test_ci95=s.get("test_acc_ci95") if s else r.get("test_acc_ci95"),
                   winner_lr=(r.get("hyperparams") or {}).get("learning_rate"))
        out["tied"], out["distinguishable"] = _tied(results, best)
    reached = [(n, r["time_to_target"]) for n, r in results.items()
               if eligible(r) and (r.get("time_to_target") or {}).get("epochs") is not None]
    if reached:
        name, t = min(reached, key=lambda nt: (nt[1]["epochs"], nt[1]["seconds"], list(results).index(nt[0])))
        out["fastest"] = {"name": name, "epochs": t["epochs"], "seconds": t["seconds"]}
    widths = {n: r["tune"]["sensitivity"]["decades"] for n, r in results.items()
              if (r.get("tune") or {}).get("sensitivity", {}).get("decades") is not None}
    if widths:
        narrow, wide = min(widths, key=widths.get), max(widths, key=widths.get)
        out["most_sensitive"] = {"name": narrow, "decades": widths[narrow]}
        out["least_sensitive"] = {"name": wide, "decades": widths[wide]}
    return out


def _names(names: list, most: int = 8) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def sentences(f: dict) -> list[str]:
    if not f["winner"]:
        return ["No optimizer finished without diverging or failing, so there is no answer: see the statuses below."]
    over = f"mean over {f['seeds']} seeds, " if f["seeds"] > 1 else ""
    lr = f" at learning rate {f['winner_lr']:g}" if f.get("winner_lr") is not None else ""
    ci = f" (95% CI {100 * f['winner_test_ci95'][0]:.1f}–{pct(f['winner_test_ci95'][1])})" if f.get("winner_test_ci95") else ""
    out = [f"Train with {f['winner']}{lr}: it has the best validation accuracy, {pct(f['winner_val_acc'])} ({over}chosen "
           f"on validation; the test split never chooses), and scores {pct(f['winner_test_acc'])} on the test set{ci}."]
    tied, apart = f.get("tied", []), f.get("distinguishable", [])
    if tied or apart:
        if not apart:
            out.append(f"It is not statistically distinguishable on the test set from any of the other {len(tied)}: "
                       "on this data, the choice between them hardly matters.")
        else:
            out.append(f"Statistically tied with it on the test set: {len(tied)} ({_names(tied)}); clearly behind: "
                       f"{len(apart)} ({_names(apart)}).")
    if f.get("fastest"):
        t = f["fastest"]
        out.append(f"Fastest to the target ({pct(f['target_val_acc'])} validation accuracy): {t['name']}, after "
                   f"{t['epochs']} epoch{'s' if t['epochs'] != 1 else ''} ({t['seconds']:.1f} s of training).")
    if f.get("most_sensitive"):
        m, least = f["most_sensitive"], f["least_sensitive"]
        out.append(f"Most sensitive to its learning rate: {m['name']} (within 1 point of its best over {m['decades']:g} "
                   f"decades of the search); least: {least['name']} ({least['decades']:g} decades).")
    fails = f["fails_at_defaults"]
    if fails:
        out.append("Fails at its default settings: " + "; ".join(f"{n} ({why})" for n, why in fails.items()) + ".")
    else:
        out.append("None fails at its default settings.")
    out.append("What the regime means: " + REGIME[f["regime"]] + ".")
    return out


def answer(results: dict, summary: dict, target: dict | None, protocol: dict | None, regime: str) -> dict:
    f = facts(results, summary, target, protocol, regime)
    return {"facts": f, "sentences": sentences(f)}
