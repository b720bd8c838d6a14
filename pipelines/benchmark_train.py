#!/usr/bin/env python
"""Time the compiled train step of a multi-branch model on synthetic batches.

The command ``kerasface-benchmark-train``; arguments and --help in kerasface/cli/benchmark_train.py.
"""

import sys

from kerasface.cli.benchmark_train import main

if __name__ == "__main__":
    sys.exit(main())
