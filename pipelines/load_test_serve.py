#!/usr/bin/env python
"""Load test of a running kerasface-serve on this machine: mixed /identify and /enroll.

The command ``kerasface-load-test-serve``; arguments and --help in kerasface/cli/load_test_serve.py.
"""

import sys

from kerasface.cli.load_test_serve import main

if __name__ == "__main__":
    sys.exit(main())
