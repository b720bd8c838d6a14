#!/usr/bin/env python
"""The paper's backbone report cards; see kerasface/cli/compare_backbones.py or --help."""

import sys

from kerasface.cli.compare_backbones import main

if __name__ == "__main__":
    sys.exit(main())
