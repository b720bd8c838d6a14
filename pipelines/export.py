#!/usr/bin/env python
"""Export a trained run as a SavedModel for serving, and check it in a fresh process.

The command ``kerasface-export``; arguments and --help in kerasface/cli/export.py.
"""

import sys

from kerasface.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
