#!/usr/bin/env python
"""Train the multi-task model with adversarial identity disentanglement; see kerasface/cli/train_multitask.py or --help."""

import sys

from kerasface.cli.train_multitask import main

if __name__ == "__main__":
    sys.exit(main())
