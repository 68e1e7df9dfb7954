"""How numbers are written wherever people read them: the leaderboards and reports, export's table, the demo
and serve/predict.py. One definition, so they never disagree."""
from __future__ import annotations

import math


def pct(x) -> str:
    """A fraction as a percentage with one decimal: 0.7368 -> '73.7%'; None/NaN -> '-'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:.1f}%"
