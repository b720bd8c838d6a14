"""Time the compiled train step of a multi-branch model on synthetic batches.

    kerasface-benchmark-train --backbone densenet121 [--branches 3] [--image-size S]
        [--batch-size B] [--steps N] [--jit-compile auto on off] [--mixed-precision ...]
    kerasface-benchmark-train --backbone iresnet50 --loss arcface --num-classes 1000 --branches 1 \
        --image-size 112 --batch-size 32

Without --loss the model is the multi-branch attribute model (binary cross-entropy, Adam); with
--loss it is a recognition model: the backbone's embedding and a margin head over --num-classes
identities (softmax cross-entropy, SGD momentum 0.9, weight decay 5e-4, as insightface trains).

Each configuration (every combination of the values given) runs in its own process, so peak
memory is per configuration; each prints one JSON line: samples/s, median and mean step time
after warm-up (warm-up includes compilation), peak host memory (and device memory on a GPU),
on whichever backend (KERAS_BACKEND) and device are active.
"""

import argparse
import itertools
import json
import subprocess
import sys

from kerasface.cli.common import add_debug_argument, cli_main, non_negative_int, positive_int
from kerasface.processes import child_environment
from kerasface.settings_file import json_object


@cli_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", nargs="+", default=["densenet121"], help="one or more backbone names")
    parser.add_argument("--branches", type=positive_int, default=3)
    parser.add_argument("--backbone-kwargs", type=json_object, default={}, metavar="JSON",
                        help='backbone options as a JSON object, e.g. \'{"patch_size": 16}\' for vit at 48 px')
    parser.add_argument("--loss", default=None,
                        help="a margin head (arcface, cosface, ...): benchmark a recognition model instead")
    parser.add_argument("--num-classes", type=positive_int, default=1000,
                        help="identities of the margin head (default 1000)")
    parser.add_argument("--image-size", type=positive_int, nargs="+", default=[48])
    parser.add_argument("--batch-size", type=positive_int, nargs="+", default=[32])
    parser.add_argument("--steps", type=positive_int, default=10, help="timed steps (default 10)")
    parser.add_argument("--warmup-steps", type=non_negative_int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--jit-compile", nargs="+", default=["auto"], choices=["auto", "on", "off"])
    parser.add_argument("--mixed-precision", nargs="+", default=["auto"],
                        choices=["auto", "off", "float16", "bfloat16"])
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    import kerasface.models  # noqa: F401  (registers the backbones)
    from kerasface.registry import BACKBONES

    import kerasface.losses  # noqa: F401  (registers the margin heads)
    from kerasface.registry import MARGIN_HEADS

    for name in args.backbone:
        BACKBONES.get(name)
    if args.loss:
        MARGIN_HEADS.get(args.loss)
    combos = list(itertools.product(args.backbone, args.image_size, args.batch_size, args.jit_compile,
                                    args.mixed_precision))
    if args.in_process:
        from kerasface.benchmarks.train_step import TrainBenchmark, run_train_benchmark

        (backbone, size, batch, jit, precision), = combos
        bench = TrainBenchmark(backbone, args.branches, size, batch, args.steps, args.warmup_steps, jit, precision,
                               loss=args.loss, num_classes=args.num_classes, backbone_kwargs=args.backbone_kwargs)
        print(json.dumps(run_train_benchmark(bench)), flush=True)
        return 0
    failed = 0
    for backbone, size, batch, jit, precision in combos:
        command = [sys.executable, "-m", "kerasface.cli.benchmark_train", "--in-process",
                   "--backbone", backbone, "--branches", str(args.branches),
                   "--backbone-kwargs", json.dumps(args.backbone_kwargs), "--num-classes", str(args.num_classes),
                   *(["--loss", args.loss] if args.loss else []),
                   "--image-size", str(size), "--batch-size", str(batch), "--steps", str(args.steps),
                   "--warmup-steps", str(args.warmup_steps), "--jit-compile", jit, "--mixed-precision", precision]
        result = subprocess.run(command, capture_output=True, text=True, env=child_environment())
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode or not lines:
            failed += 1
            print(json.dumps({"backbone": backbone, "image_size": size, "batch_size": batch, "jit_compile": jit,
                              "error": result.stderr.strip().splitlines()[-1:]}), flush=True)
        else:
            print(lines[-1], flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
