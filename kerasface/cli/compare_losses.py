"""One backbone, one dataset, one run per loss; the loss comparison table (loss | verification accuracy | AUC).

    kerasface-compare-losses [--losses softmax arcface ...] [training flags]   (or python pipelines/compare_losses.py)

Every loss trains the same recognition run (train_recognition's defaults, its demo settings
without --data, and any training flag given here: --backbone, --data, --epochs, ...) into
<out>/compare-losses-<time>/<loss>/, and table.md / table.json there list each loss's test
verification accuracy (+- std over the 10 folds), AUC by cosine and euclidean distance and EER,
on identities never trained on. A run already finished in --resume-table DIR is reused.
"""

from __future__ import annotations

from kerasface.cli.common import cli_main
from kerasface.cli.training import study_parser
from kerasface.cli.train_recognition import DEFAULTS, DEMO_DEFAULTS


@cli_main
def main(argv=None) -> int:
    from kerasface.train.compare import COMPARED_LOSSES, compare_losses
    from kerasface.train.config import config_from_args

    parser = study_parser(__doc__, "recognition", "comparison", ("losses", COMPARED_LOSSES))
    args = parser.parse_args(argv)
    config = config_from_args(args, DEFAULTS, DEMO_DEFAULTS, tasks=["recognition"])
    loss_kwargs = None
    if config.data.path is None and not config.task_config.loss_kwargs:
        from kerasface.train.recognition import demo_loss_kwargs as loss_kwargs
    compare_losses(config, args.losses, out=args.resume_table, loss_kwargs=loss_kwargs)
    return 0
