#!/usr/bin/env python
"""Face detection speed: a plain loop of MTCNN().detect_faces against the kit's batched detector.

The command ``kerasface-benchmark-detect``; arguments and --help in kerasface/cli/benchmark_detect.py.
"""

import sys

from kerasface.cli.benchmark_detect import main

if __name__ == "__main__":
    sys.exit(main())
