"""Where the benchmarks find the real data sets, which the repository does not hold.

One setting: ``TANDEM_SHARED_DATA`` names the folder (a relative path is read from the
repository root); unset, it is ``../shared/data`` beside the repository root. A benchmark's
``--data``/``--prompts-file`` flag still names any other file. Tests never read this folder:
they build their own data (``tests/hh_dialogues.py``), so a fresh clone tests on its own.

    python bench/shared_data.py hh_harmless_dev.jsonl     # prints the path (for shell scripts)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTING = "TANDEM_SHARED_DATA"


def shared_data_dir() -> Path:
    return (REPO / os.environ.get(SETTING, "../shared/data")).resolve()


def shared_data(name: str) -> Path:
    """``<folder>/<name>``, whether or not it exists (the benchmark says what is missing)."""
    return shared_data_dir() / name


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} FILE_NAME")
    print(shared_data(sys.argv[1]))
