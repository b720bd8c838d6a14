"""Throughput of the input pipeline, stage by stage, in images/s and batches/s.

    kerasface-benchmark-input --data PATH [--batch-size B] [--seconds S] [--threads N]
        [--limit N] [--storage files tfrecord recordio] [--order deterministic|fast]
        [--match-peer] [--peer-python PYTHON [--peer-script torch_loader.py]]
        [--backbone NAME [--branches N]]

Stages: decode only; decode + resize + crops; the full training pipeline (shuffle, decode,
resize, augmentation, crops, batching, prefetch). Without --data it uses the embedded demo
dataset. --storage also writes the images as TFRecord shards and a RecordIO pack (in a
temporary folder) and times each. --match-peer does the work of ../shared/peers/torch_loader.py:
three horizontal 96 px crops of 0.75 of the side, rotation +-50 degrees, flip, noise 0.05, 2 threads.
--peer-python runs that peer on the same images (a folder of links) with the same batch,
workers (= --threads) and size, and prints kit / peer. --backbone times that model's train step
(kerasface-benchmark-train) and says which of the two is the bottleneck.
Prints a table and one JSON line per row.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from tabulate import tabulate

from kerasface.cli.common import add_debug_argument, cli_main, positive_float, positive_int
from kerasface.data.augment import AugmentConfig
from kerasface.benchmarks.input import (PEER_AUGMENT, PEER_INPUT, STAGES, STORAGES, benchmark_input, bottleneck,
                                      link_folder, prefetch_device, run_peer, store_as, subset, train_step_rate)
from kerasface.data.crops import VIEW_MODES
from kerasface.data.pipeline import InputConfig
from kerasface.data.readers import read_dataset

PEER_SCRIPT = Path(__file__).resolve().parents[3] / "shared" / "peers" / "torch_loader.py"


@cli_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="image folder, CSV, TFRecord folder or RecordIO pack (default: demo data)")
    parser.add_argument("--limit", type=positive_int, help="time N images drawn at random from --data")
    parser.add_argument("--storage", nargs="+", choices=STORAGES, default=["files"],
                        help="read image files, and/or TFRecord shards and a RecordIO pack written from them")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--seconds", type=positive_float, default=5.0, help="timed seconds per row (default 5)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help=f"tf.data worker threads and peer workers (default: all {os.cpu_count()} cores; "
                             "2 with --match-peer)")
    parser.add_argument("--order", choices=("deterministic", "fast"), default="deterministic",
                        help="fast: parallel reads and maps hand out elements as they finish")
    parser.add_argument("--match-peer", action="store_true",
                        help="the peer's work: 96 px, three horizontal crops of 0.75, rotation 50, flip, noise 0.05")
    parser.add_argument("--image-size", type=positive_int, help="side of each view (default 48; 96 with --match-peer)")
    parser.add_argument("--views", choices=VIEW_MODES, help="default crops-horizontal")
    parser.add_argument("--crop-fraction", type=float, help="default 0.875; 0.75 with --match-peer")
    parser.add_argument("--peer-python", help="a Python with torch and cv2: run the PyTorch DataLoader peer too")
    parser.add_argument("--peer-script", default=str(PEER_SCRIPT), help=f"the peer (default {PEER_SCRIPT})")
    parser.add_argument("--backbone", help="time this model's train step at the same size and batch")
    parser.add_argument("--branches", type=positive_int, default=3, help="branches of that model (default 3)")
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    if args.data:
        _, spec = read_dataset(args.data, verify="header")
    else:
        from kerasface.datasets.demo import ensure_demo_dataset

        _, spec = read_dataset(ensure_demo_dataset(), verify="header")
    spec = subset(spec, args.limit)
    base, augment, threads = InputConfig(48, "crops-horizontal", 0.875), AugmentConfig(), args.threads
    if args.match_peer:
        base, augment, threads = PEER_INPUT, PEER_AUGMENT, threads or 2
    config = InputConfig(args.image_size or base.image_size, args.views or base.views,
                         args.crop_fraction or base.crop_fraction)
    if args.backbone and args.branches != config.num_views:
        parser.error(f"--branches {args.branches} does not match the {config.num_views} view(s) of --views")
    needs_files = args.peer_python or set(args.storage) - {"files"}
    if needs_files and spec.storage != "files":
        parser.error(f"--storage and --peer-python read image files; {spec.source} is {spec.storage}")
    deterministic = args.order == "deterministic"
    device = prefetch_device()
    print(f"{spec.source}: {len(spec.samples)} images; {threads or os.cpu_count()} threads; {args.order} order; "
          + (f"batches prefetched to {device}" if device else "no GPU: batches stay on the host"))

    rows = []
    with tempfile.TemporaryDirectory(prefix="kerasface-input-") as tmp:
        if args.peer_python:  # before and after the kit's rows, so both see the machine's load
            folder = link_folder(spec, Path(tmp) / "peer-images")

            def peer_run():
                return run_peer(args.peer_python, args.peer_script, folder, args.batch_size,
                                threads or os.cpu_count(), config.image_size, args.seconds)

            peer = [peer_run()]
        for storage in args.storage:
            stored = store_as(spec, storage, tmp)
            rows += benchmark_input(stored, config, args.batch_size, args.seconds, threads, augment, deterministic,
                                    stages=args.stages)
        if args.peer_python:
            peer.append(peer_run())
            rates = [p["images_per_s"] for p in peer]
            rows.append({**peer[-1], "stage": peer[-1].get("peer", "peer"), "storage": "files",
                         "images_per_s": sum(rates) / 2, "runs_images_per_s": rates})
    print(tabulate([[r["stage"], r["storage"], f"{r['images_per_s']:.0f}", f"{r.get('batches_per_s', 0):.1f}"]
                    for r in rows], headers=["stage", "storage", "images/s", "batches/s"]))
    full = [r for r in rows if r["stage"] == "full training pipeline"]
    if args.peer_python:
        for row in full:
            row["peer_ratio"] = row["images_per_s"] / rows[-1]["images_per_s"]
            print(f"kit {row['storage']} / peer (mean of its runs before and after, "
                  f"{rows[-1]['runs_images_per_s'][0]:.0f} and {rows[-1]['runs_images_per_s'][1]:.0f}): "
                  f"{row['peer_ratio']:.2f}x")
    if args.backbone and full:
        step = train_step_rate(args.backbone, args.branches, config.image_size, args.batch_size)
        slowest = min(full, key=lambda r: r["images_per_s"])
        rows.append({"stage": "train step", **step})
        print(f"input pipeline {slowest['images_per_s']:.0f} img/s ({slowest['storage']}) vs train step "
              f"{step['samples_per_s']:.1f} samples/s ({args.backbone} x{args.branches}, {config.image_size} px): "
              f"the bottleneck is {bottleneck(slowest['images_per_s'], step['samples_per_s'])}")
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
