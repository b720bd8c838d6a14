#!/usr/bin/env python
"""What a run would use on this machine: backend, devices, strategy, XLA and precision.

The command ``kerasface-check-runtime``; arguments and --help in kerasface/cli/check_runtime.py.
"""

import sys

from kerasface.cli.check_runtime import main

if __name__ == "__main__":
    sys.exit(main())
