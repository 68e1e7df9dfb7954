"""How numbers and caveats are written wherever people read them: the demo, serve/predict.py, and
export/to_onnx.py's table. One definition each, so the three never disagree.

The percentage format is the one training's leaderboard.md already uses ("73.7%"), so the demo's
Leaderboard tab and its own figures read alike.
"""
from __future__ import annotations

import math


def pct(x) -> str:
    """A fraction as a percentage with one decimal: 0.7368 -> '73.7%'; None/NaN -> 'n/a'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.1f}%"


def knows(classes) -> str:
    """What any classifier of this product can and cannot answer."""
    return (f"This model only knows: {', '.join(classes)}. "
            "A photo of anything else still gets one of these.")


SYNTHETIC = ("Trained on SYNTHETIC pictures (generated stripes and blobs, not insect photos): "
             "a pipeline check, not an insect classifier. Its answers on real photos mean nothing.")
