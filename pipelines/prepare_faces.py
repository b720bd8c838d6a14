#!/usr/bin/env python
"""A raw photo folder (one sub-folder per identity) -> MTCNN-detected, aligned faces.

The command ``kerasface-prepare-faces``; arguments and --help in kerasface/cli/prepare_faces.py.
"""

import sys

from kerasface.cli.prepare_faces import main

if __name__ == "__main__":
    sys.exit(main())
