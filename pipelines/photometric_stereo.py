#!/usr/bin/env python
"""Turn photometric-stereo renders into albedo | normal | depth tiles (the "modalities" view).

The command ``kerasface-photometric-stereo``; arguments and --help in kerasface/cli/photometric_stereo.py.
"""

import sys

from kerasface.cli.photometric_stereo import main

if __name__ == "__main__":
    sys.exit(main())
