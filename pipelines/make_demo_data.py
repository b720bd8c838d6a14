#!/usr/bin/env python
"""Render the synthetic demo face dataset (images, attributes.csv, photometric-stereo lights).

The command ``kerasface-make-demo-data``; arguments and --help in kerasface/cli/make_demo_data.py.
"""

import sys

from kerasface.cli.make_demo_data import main

if __name__ == "__main__":
    sys.exit(main())
