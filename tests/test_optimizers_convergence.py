"""Every registry optimizer reaches the minimum of a quadratic and of Rosenbrock's function, with the
per-optimizer learning rates of TOY_SETTINGS in docs/tools/landscapes.py (the one table, also used by the plots).
SLOW: too slow for a test's budget there (landscapes.py says why); checked to approach the minimum instead."""
from __future__ import annotations

import models  # noqa: F401  (first: quiets Paddle)
import numpy as np
import pytest

from docs.tools.landscapes import LANDSCAPES, TOY_SETTINGS, descend
from train.optimizers import NAMES

SLOW = {("asgd", "rosenbrock")}


def test_table_covers_every_optimizer_and_landscape():
    assert set(TOY_SETTINGS) == set(NAMES)
    for name, row in TOY_SETTINGS.items():
        assert set(row) == set(LANDSCAPES), name


@pytest.mark.parametrize("landscape", ["quadratic", "rosenbrock"])
@pytest.mark.parametrize("name", NAMES)
def test_reaches_minimum(name, landscape):
    land = LANDSCAPES[landscape]
    path = descend(name, landscape)
    start_err = np.linalg.norm(np.array(land.start) - land.minimum)
    err = np.linalg.norm(path[-1] - land.minimum)
    assert np.isfinite(path).all(), f"{name} diverged on {landscape}"
    if (name, landscape) in SLOW:
        assert err < start_err / 2, f"{name} ended {err:.4f} from the minimum of {landscape}, started {start_err:.4f}"
        return
    assert err < land.tol < start_err, f"{name} ended {err:.4f} from the minimum of {landscape} (tolerance {land.tol})"
