"""Fuzz the `video` target: `python fuzz/run_video.py --iterations N [--seed S] [--atheris]`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.runner import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("video"))
