"""Throughput of the input pipeline, stage by stage, in images/s and batches/s.

    kerasface-benchmark-input --data PATH [--batch-size B] [--seconds S] [--threads N]

Stages: decode only; decode + resize + crops; the full training pipeline (shuffle, decode,
resize, augmentation, crops, batching, prefetch). Without --data it uses the embedded demo
dataset. Prints a table and one JSON line per stage.
"""

import argparse
import json
import os
import sys

from tabulate import tabulate

from kerasface.cli.common import add_debug_argument, cli_main, positive_float, positive_int
from kerasface.data.benchmark import benchmark_input
from kerasface.data.crops import VIEW_MODES
from kerasface.data.pipeline import InputConfig
from kerasface.data.readers import read_dataset


@cli_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="image folder, CSV or TFRecord folder (default: demo data)")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--seconds", type=positive_float, default=5.0, help="timed seconds per stage (default 5)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help=f"tf.data worker threads (default: all {os.cpu_count()} cores)")
    parser.add_argument("--image-size", type=positive_int, default=48, help="side of each view (default 48)")
    parser.add_argument("--views", default="crops-horizontal",
                        choices=VIEW_MODES)
    parser.add_argument("--crop-fraction", type=float, default=0.875)
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    if args.data:
        _, spec = read_dataset(args.data, verify="header")
    else:
        from kerasface.datasets.demo import ensure_demo_dataset

        _, spec = read_dataset(ensure_demo_dataset(), verify="header")
    config = InputConfig(args.image_size, args.views, args.crop_fraction)
    print(f"{spec.source}: {len(spec.samples)} images; {args.threads or os.cpu_count()} threads")
    rows = benchmark_input(spec, config, args.batch_size, args.seconds, args.threads)
    print(tabulate([[r["stage"], f"{r['images_per_s']:.0f}", f"{r['batches_per_s']:.1f}"] for r in rows],
                   headers=["stage", "images/s", "batches/s"]))
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
