#!/usr/bin/env python
"""Export a trained run (SavedModel) or an embedding model (ONNX, LiteRT), checked against the Keras model.

The command ``kerasface-export``; arguments and --help in kerasface/cli/export.py.
"""

import sys

from kerasface.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
