"""Train the insect classifier once per optimizer and keep the best checkpoint of each.

    python train/run_all.py                                   # whole sweep, default profile
    python train/run_all.py --data ../shared/data/hymenoptera --optimizers momentum,qhm --epochs 3 --out runs/hym
    python train/run_all.py --tune --seeds 3                  # per-optimizer learning rates, 3 seeds (train/compare.py)

Every optimizer starts from the same initial weights and sees the same data order. Kill it at any
moment and run the same command again: finished optimizers are skipped, an unfinished one resumes
from its last finished epoch, and the results equal an uninterrupted run's.

Scale out (docs/distributed.md): `--parallel N` trains N optimizers at once (one GPU or a share of the
CPU each); `python -m paddle.distributed.launch --nproc_per_node 2 train/run_all.py ...` trains each
optimizer data-parallel over the launcher's ranks (GPUs, or CPU processes), rank 0 writing the files.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import models  # noqa: E402,F401  (first: quiets Paddle)
from train import cli  # noqa: E402
from util import runtime  # noqa: E402
from util.io import DamagedFile  # noqa: E402


def main(argv=None) -> int:
    plan = cli.plan(argv, __doc__.split("\n\n")[0])  # every setting resolved and checked (exit 2 otherwise)
    runtime.on_stop_signals()  # SIGTERM and Ctrl+C: KeyboardInterrupt, no Paddle FatalError block
    from train import driver

    try:
        return driver.run(plan)
    except driver.SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: what finished is saved; run the same command again to resume", file=sys.stderr)
        return runtime.INTERRUPTED
    except DamagedFile as e:
        print(f"error: {e}; delete it and run the same command again (it is made again)", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, a folder that vanished, permissions: one line, not a traceback
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}; fix that and run the same command again (it resumes)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
