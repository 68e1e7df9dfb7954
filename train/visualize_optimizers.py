"""Moved to docs/tools/visualize_optimizers.py (a docs tool, next to its toy landscapes). This forwarder
keeps the old command working until tests/test_train.py names the new path; then delete it."""
import os
import runpy

if __name__ == "__main__":
    runpy.run_path(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "tools",
                                "visualize_optimizers.py"), run_name="__main__")
