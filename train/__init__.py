"""Training stage: dataset -> runs/<run>/ (train/run_all.py is the entry point; train/cli.py makes its plan, train/driver.py runs it)."""
from util import runtime  # noqa: F401  (first: quiets Paddle before any training module imports it)
