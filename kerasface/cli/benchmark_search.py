"""Gallery search speed and recall: FAISS flat, IVF, IVF-PQ and HNSW indexes against exact search.

    kerasface-benchmark-search --gallery 10000 100000 1000000 [--dim 512] [--queries 1000]
        [--noise 1.0] [--index flat ivf ivf-pq hnsw] [--nprobe 16 32 64] [--ef-search 32 64 128]

Each gallery is random unit vectors; each query a gallery vector plus noise of norm --noise,
normalised. Printed per index and search setting: build time, index size (MiB),
the latency of one query at a time (p50, p99) and recall@1 against exact search; then one JSON
line per row. Needs the serve extra (FAISS).
"""

import argparse
import json
import sys

from kerasface.cli.common import add_debug_argument, cli_main, positive_float, positive_int


@cli_main
def main(argv=None) -> int:
    from kerasface.faces.index import KINDS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery", type=positive_int, nargs="+", required=True, help="gallery sizes")
    parser.add_argument("--dim", type=positive_int, default=512, help="embedding dimension (512)")
    parser.add_argument("--queries", type=positive_int, default=1000, help="queries per gallery (1000)")
    parser.add_argument("--noise", type=positive_float, default=1.0, help="norm of the query noise (1.0)")
    parser.add_argument("--index", nargs="+", choices=KINDS, default=list(KINDS), help="index types (all)")
    parser.add_argument("--nprobe", type=positive_int, nargs="+", help="IVF and IVF-PQ lists searched (default: the kit's)")
    parser.add_argument("--ef-search", type=positive_int, nargs="+", help="HNSW candidates (default: the kit's)")
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    from tabulate import tabulate

    from kerasface.faces.search_benchmark import benchmark_search

    def show(row):
        print(json.dumps(row), flush=True)

    rows = []
    for size in args.gallery:
        rows += benchmark_search(size, dim=args.dim, queries=args.queries, noise=args.noise, kinds=args.index,
                                 sweep={"ivf": args.nprobe, "ivf-pq": args.nprobe, "hnsw": args.ef_search}, log=show)
    print(tabulate([{**r, "params": " ".join(f"{k}={v}" for k, v in r["params"].items())} for r in rows],
                   headers="keys"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
