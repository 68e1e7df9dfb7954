"""Draw how every registry optimizer moves on two classic 2-D test functions.

    python docs/tools/visualize_optimizers.py                # all optimizers -> docs/img/*.png
    python docs/tools/visualize_optimizers.py --out /tmp/viz --optimizers adam,qhm,lion --steps 200

Writes, atomically:
  optimizers_rosenbrock.png  one panel per optimizer: its path on Rosenbrock's valley (contours, same start)
  optimizers_rastrigin.png   the same on Rastrigin's field of local minima
  optimizers_loss.png        f(θ_t) against step t for every optimizer, one subplot per function

The optimizers are the real ones (train.optimizers.create), with the per-optimizer learning rates and
step counts of docs/tools/landscapes.py (TOY_SETTINGS) and cosine decay over the steps.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
import models  # noqa: E402,F401  (first: quiets Paddle)
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from docs.tools.landscapes import LANDSCAPES, TOY_SETTINGS, descend  # noqa: E402
from util.io import savefig  # noqa: E402
from train.optimizers import NAMES  # noqa: E402

DRAWN = ("rosenbrock", "rastrigin")
DEFAULT_OUT = os.path.join(ROOT, "docs", "img")


def save_atomic(fig, path: str) -> None:
    """Write the figure atomically (util.io.savefig), then free it."""
    try:
        savefig(fig, path)
    finally:
        plt.close(fig)


def draw_paths(landscape: str, paths: dict[str, np.ndarray], path: str) -> None:
    land = LANDSCAPES[landscape]
    x0, x1, y0, y1 = land.box
    xs, ys = np.meshgrid(np.linspace(x0, x1, 160), np.linspace(y0, y1, 160))
    zs = land.f(xs, ys)
    levels = np.geomspace(max(zs.min(), 1e-2), zs.max(), 20) if landscape == "rosenbrock" else 8
    cols = 4
    rows = math.ceil(len(paths) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.6 * rows), dpi=72, squeeze=False)
    for ax in axes.flat[len(paths):]:
        ax.axis("off")
    for ax, (name, p) in zip(axes.flat, paths.items()):
        ax.contourf(xs, ys, zs, levels=levels, cmap="Greys", alpha=0.55,
                    norm=matplotlib.colors.LogNorm() if landscape == "rosenbrock" else None)
        q = p[np.all(np.abs(p) < 1e3, axis=1)]  # a diverging path is drawn up to where it leaves
        ax.plot(q[:, 0], q[:, 1], "-", color="tab:red", lw=1.2)
        ax.plot(*land.start, "o", color="tab:blue", ms=5)
        ax.plot(*land.minimum, "*", color="gold", ms=11, mec="black", mew=0.6)
        lr, steps = TOY_SETTINGS[name][landscape]
        end = p[-1]
        dist = np.linalg.norm(end - land.minimum) if np.isfinite(end).all() else float("inf")
        ax.set_title(f"{name}  lr={lr:g}, {len(p) - 1} steps\nend {dist:.3g} from the minimum", fontsize=8)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{landscape.capitalize()}: paths from {land.start} (blue) towards the minimum (star)", fontsize=10)
    fig.tight_layout()
    save_atomic(fig, path)


def draw_losses(all_paths: dict[str, dict[str, np.ndarray]], path: str) -> None:
    fig, axes = plt.subplots(1, len(all_paths), figsize=(6.0 * len(all_paths), 4.2), dpi=72, squeeze=False)
    cmap = plt.get_cmap("tab20")
    for ax, (landscape, paths) in zip(axes.flat, all_paths.items()):
        land = LANDSCAPES[landscape]
        for i, (name, p) in enumerate(paths.items()):
            with np.errstate(all="ignore"):
                f = land.f(p[:, 0], p[:, 1]) - land.f(*np.array(land.minimum))
            ax.plot(np.arange(len(f)), np.maximum(f, 1e-12), lw=1.1, color=cmap(i % 20), label=name,
                    ls="-" if i < 10 else "--")
        ax.set_xscale("symlog", linthresh=10)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("f(θ) − f(θ*)")
        ax.set_title(landscape)
        ax.grid(alpha=0.3)
    axes.flat[-1].legend(fontsize=7, ncol=2, loc="lower left")
    fig.tight_layout()
    save_atomic(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help="folder for the PNGs (default docs/img/)")
    ap.add_argument("--optimizers", default=",".join(NAMES), help="comma list (default: all registry optimizers)")
    ap.add_argument("--steps", type=int, default=None,
                    help="steps per run for every optimizer (default: each optimizer's own from TOY_SETTINGS)")
    a = ap.parse_args(argv)
    names = [n.strip() for n in a.optimizers.split(",") if n.strip()]
    unknown = [n for n in names if n not in NAMES]
    if unknown or not names:
        ap.error(f"unknown optimizer(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(NAMES)}")
    if a.steps is not None and a.steps < 1:
        ap.error(f"--steps must be >= 1 (got {a.steps})")
    os.makedirs(a.out, exist_ok=True)

    all_paths = {land: {} for land in DRAWN}
    with tqdm(total=len(names) * len(DRAWN), desc="optimizer paths", unit="run") as bar:
        for land in DRAWN:
            for name in names:
                all_paths[land][name] = descend(name, land, steps=a.steps)
                bar.update()
    written = []
    for land in DRAWN:
        written.append(os.path.join(a.out, f"optimizers_{land}.png"))
        draw_paths(land, all_paths[land], written[-1])
    written.append(os.path.join(a.out, "optimizers_loss.png"))
    draw_losses(all_paths, written[-1])
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
