#!/usr/bin/env python
"""Train a multi-branch model; see kerasface/cli/train_branches.py or --help."""

import sys

from kerasface.cli.train_branches import main

if __name__ == "__main__":
    sys.exit(main())
