"""Running a kerasface module in a process of its own (benchmarks time each configuration in a
fresh process, so one run's compiled functions and memory never skew the next)."""

from __future__ import annotations

import os


def child_environment() -> dict[str, str]:
    """This environment, with the folder holding the kerasface package first on PYTHONPATH, for
    commands that run a kerasface module in a process of its own."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, path]) if path else root}
