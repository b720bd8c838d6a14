#!/usr/bin/env python
"""Inference latency, throughput and size on disk of one embedding model in each serving format.

The command ``kerasface-benchmark-infer``; arguments and --help in kerasface/cli/benchmark_infer.py.
"""

import sys

from kerasface.cli.benchmark_infer import main

if __name__ == "__main__":
    sys.exit(main())
