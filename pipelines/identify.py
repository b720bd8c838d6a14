#!/usr/bin/env python
"""Face identification: enroll a gallery of people, then name the faces of images, videos or a camera.

The command ``kerasface-identify``; arguments and --help in kerasface/cli/identify.py.
"""

import sys

from kerasface.cli.identify import main

if __name__ == "__main__":
    sys.exit(main())
