"""The caveats the demo and serve/predict.py show beside an answer (numbers: util/fmt.py's `pct`), and the answer itself."""
from __future__ import annotations

from util.fmt import pct


def knows(classes) -> str:
    """What any classifier of this product can and cannot answer."""
    return (f"This model only knows: {', '.join(classes)}. "
            "A photo of anything else still gets one of these.")


SYNTHETIC = ("Trained on SYNTHETIC pictures (generated stripes and blobs, not insect photos): "
             "a pipeline check, not an insect classifier. Its answers on real photos mean nothing.")


def answer(classes, probabilities, threshold: float) -> str:
    """The answer people read: the likeliest class, or, when its calibrated probability is below the model's
    threshold (chosen on validation, train/calibration.py), "not sure: wasp 55.0%, bee 38.0%"."""
    ranked = sorted(zip(classes, (float(p) for p in probabilities)), key=lambda kv: -kv[1])
    if ranked[0][1] >= threshold:
        return ranked[0][0]
    return "not sure: " + ", ".join(f"{c} {pct(p)}" for c, p in ranked[:2])


def unsure_note(threshold: float) -> str:
    return (f"Below {pct(threshold)} for its top class the model says \"not sure\" instead of guessing "
            "(threshold chosen on the validation split).")
