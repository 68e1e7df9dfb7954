"""Training stage: dataset -> runs/<run>/ (train/run_all.py is the entry point; train/sweep.py plans and runs a sweep)."""
from util import runtime  # noqa: F401  (first: quiets Paddle before any training module imports it)
