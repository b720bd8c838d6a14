#!/usr/bin/env python
"""Face verification of a model on pair sets (LFW pairs.txt, insightface .bin, pair CSVs) or on
IJB-B / IJB-C (1:1 and 1:N, as insightface computes them).

The command ``kerasface-evaluate``; arguments and --help in kerasface/cli/evaluate.py.
"""

import sys

from kerasface.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
