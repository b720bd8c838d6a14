#!/usr/bin/env python
"""Train a multi-branch model: three crop views (or one image) -> backbones -> head.

    python pipelines/train_branches.py --backbone densenet121

Without --data it trains the multi-label attribute task (gender, emotion, pose, facial hair,
occlusion, spectacles: 10 outputs) on the embedded demo dataset, generated once into the cache
(~/.cache/kerasface, or $KERASFACE_CACHE). --data takes an image folder (one sub-folder per
identity: the task becomes identity classification), a CSV (path, identity and label columns:
the attribute task) or a TFRecord folder. Settings may also come from --config FILE (YAML or
JSON, keys as the long flags); flags override the file.

Each run writes reports/<run-id>/: config.json, checkpoints/, history.csv, tensorboard/,
model.keras and report.md/report.json with plots. An interrupted run continues with
--resume reports/<run-id> (optionally with more --epochs).
"""

import argparse
import json
import sys

from kerasface.train.config import add_config_arguments, config_from_args


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    parser.add_argument("--dry-run", action="store_true",
                        help="build the model, print its summary and a JSON line of parameter counts, exit")
    parser.add_argument("--list-backbones", action="store_true", help="print the registered backbones and exit")
    args = parser.parse_args(argv)

    if args.list_backbones:
        from kerasface.models import list_backbones

        print("\n".join(list_backbones()))
        return 0
    from kerasface.train.branch_trainer import dry_run, train_branches

    if args.resume:
        overrides = config_from_args(argparse.Namespace(epochs=args.epochs)) if args.epochs else None
        train_branches(overrides, resume=args.resume)
        return 0
    config = config_from_args(args)
    if args.dry_run:
        print(json.dumps(dry_run(config)))
        return 0
    train_branches(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
