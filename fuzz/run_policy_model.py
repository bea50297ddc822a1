"""Fuzz the `policy-model` target (fuzz/targets.py): `python fuzz/run_policy_model.py --iterations N`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.runner import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("policy-model"))
