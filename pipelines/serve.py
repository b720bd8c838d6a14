#!/usr/bin/env python
"""The HTTP face service: embed, verify and identify faces, enroll and remove people.

The command ``kerasface-serve``; arguments and --help in kerasface/cli/serve.py.
"""

import sys

from kerasface.cli.serve import main

if __name__ == "__main__":
    sys.exit(main())
