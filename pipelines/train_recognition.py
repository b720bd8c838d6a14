#!/usr/bin/env python
"""Train a face-recognition embedding model; see kerasface/cli/train_recognition.py or --help."""

import sys

from kerasface.cli.train_recognition import main

if __name__ == "__main__":
    sys.exit(main())
