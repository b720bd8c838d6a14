#!/usr/bin/env python
"""Import an insightface arcface_torch model (.onnx or .pt) as the kit's own .keras model.

The command ``kerasface-import-model``; arguments and --help in kerasface/cli/import_model.py.
"""

import sys

from kerasface.cli.import_model import main

if __name__ == "__main__":
    sys.exit(main())
