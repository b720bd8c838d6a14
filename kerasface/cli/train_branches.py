"""Train a multi-branch model: three crop views (or one image) -> backbones -> head.

    kerasface-train-branches --backbone densenet121     (or python pipelines/train_branches.py)

Without --data it trains the multi-label attribute task (gender, emotion, pose, facial hair,
occlusion, spectacles: 10 outputs) on the embedded demo dataset, generated once into the cache
(~/.cache/kerasface, or $KERASFACE_CACHE). --data takes a CSV (path, identity and label
columns), a folder holding attributes.csv, an image folder (one sub-folder per identity, with
--task identity for identity classification) or a TFRecord folder. Settings may also come
from --config FILE (YAML or JSON: sections data/model/optim/runtime, or flat keys named as the
long flags); flags override the file.

Each run writes reports/<run-id>/: config.json, checkpoints/, history.csv, tensorboard/,
model.keras (the best checkpoint) and report.md/report.json with plots. An interrupted run
continues with --resume reports/<run-id> (optionally with more --epochs; a cosine or step
learning-rate schedule is then rebuilt for the new length).
"""

from __future__ import annotations

import argparse
import json

from kerasface.cli.common import add_debug_argument, cli_main


@cli_main
def main(argv=None) -> int:
    from kerasface.registry import TASKS
    from kerasface.train import tasks  # noqa: F401  (registers the tasks)
    from kerasface.train.config import add_config_arguments, config_from_args

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, TASKS.names())
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    parser.add_argument("--dry-run", action="store_true",
                        help="build the model for the dataset's outputs, print its summary and a JSON line of "
                             "parameter counts, exit")
    parser.add_argument("--list-backbones", action="store_true", help="print the registered backbones and exit")
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    if args.list_backbones:
        from kerasface.models import list_backbones

        print("\n".join(list_backbones()))
        return 0
    from kerasface.train.run import dry_run, train

    if args.resume:
        train(resume=args.resume, epochs=args.epochs)
        return 0
    config = config_from_args(args)
    if args.dry_run:
        print(json.dumps(dry_run(config)))
        return 0
    train(config)
    return 0
