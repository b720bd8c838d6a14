#!/usr/bin/env python
"""Print a dataset's label balance and identity counts, and check that every image decodes.

The command ``kerasface-data-stats``; arguments and --help in kerasface/cli/data_stats.py.
"""

import sys

from kerasface.cli.data_stats import main

if __name__ == "__main__":
    sys.exit(main())
