"""The caveats the demo and serve/predict.py show beside an answer (numbers: util/fmt.py's `pct`)."""
from __future__ import annotations


def knows(classes) -> str:
    """What any classifier of this product can and cannot answer."""
    return (f"This model only knows: {', '.join(classes)}. "
            "A photo of anything else still gets one of these.")


SYNTHETIC = ("Trained on SYNTHETIC pictures (generated stripes and blobs, not insect photos): "
             "a pipeline check, not an insect classifier. Its answers on real photos mean nothing.")
