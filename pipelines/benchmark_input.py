#!/usr/bin/env python
"""Throughput of the input pipeline, stage by stage, in images/s and batches/s.

The command ``kerasface-benchmark-input``; arguments and --help in kerasface/cli/benchmark_input.py.
"""

import sys

from kerasface.cli.benchmark_input import main

if __name__ == "__main__":
    sys.exit(main())
