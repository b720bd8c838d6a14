#!/usr/bin/env python
"""Step time and peak memory of a margin head, full and Partial FC, against the identities.

The command ``kerasface-benchmark-partial-fc``; arguments and --help in kerasface/cli/benchmark_partial_fc.py.
"""

import sys

from kerasface.cli.benchmark_partial_fc import main

if __name__ == "__main__":
    sys.exit(main())
