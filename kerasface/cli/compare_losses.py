"""One backbone, one dataset, one run per loss; the loss comparison table (loss | verification accuracy | AUC).

    kerasface-compare-losses [--losses softmax arcface ...] [training flags]   (or python pipelines/compare_losses.py)

Every loss trains the same recognition run (train_recognition's defaults, its demo settings
without --data, and any training flag given here: --backbone, --data, --epochs, ...) into
<out>/compare-losses-<time>/<loss>/, and table.md / table.json there list each loss's test
verification accuracy (+- std over the 10 folds), AUC by cosine and euclidean distance and EER,
on identities never trained on. A run already finished in --resume-table DIR is reused.
"""

from __future__ import annotations

import argparse

from kerasface.cli.common import add_debug_argument, cli_main
from kerasface.cli.train_recognition import DEFAULTS, DEMO_DEFAULTS


@cli_main
def main(argv=None) -> int:
    from kerasface.registry import TASKS
    from kerasface.train.compare import COMPARED_LOSSES, compare_losses
    from kerasface.train.config import add_config_arguments, config_from_args
    from kerasface.train.tasks import task_class

    task_class("recognition")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, TASKS.names())
    parser.add_argument("--losses", nargs="+", default=list(COMPARED_LOSSES),
                        help=f"losses to compare (default: {' '.join(COMPARED_LOSSES)})")
    parser.add_argument("--resume-table", metavar="DIR", help="a comparison folder to complete")
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    config = config_from_args(args, DEFAULTS, DEMO_DEFAULTS)
    loss_kwargs = None
    if config.data.path is None and not config.model.loss_kwargs:
        from kerasface.train.recognition import demo_loss_kwargs as loss_kwargs
    compare_losses(config, args.losses, out=args.resume_table, loss_kwargs=loss_kwargs)
    return 0
