#!/usr/bin/env python
"""One recognition run per loss and the loss comparison table; see kerasface/cli/compare_losses.py or --help."""

import sys

from kerasface.cli.compare_losses import main

if __name__ == "__main__":
    sys.exit(main())
