#!/usr/bin/env python
"""The paper's modality comparison; see kerasface/cli/compare_modalities.py or --help."""

import sys

from kerasface.cli.compare_modalities import main

if __name__ == "__main__":
    sys.exit(main())
