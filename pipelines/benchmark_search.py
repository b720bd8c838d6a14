#!/usr/bin/env python
"""Gallery search speed and recall: FAISS flat, IVF and HNSW indexes against exact search.

The command ``kerasface-benchmark-search``; arguments and --help in kerasface/cli/benchmark_search.py.
"""

import sys

from kerasface.cli.benchmark_search import main

if __name__ == "__main__":
    sys.exit(main())
