"""Report cards of the paper's three backbones (section 3), side by side with theirs.

    kerasface-compare-backbones [--backbones densenet121 efficientnetv2s vit] [--preset paper] [training flags]
    (or python pipelines/compare_backbones.py)

Every backbone trains the same multi-branch attribute run (train_branches' settings and any
training flag given here: --data, --epochs, --views, ...) into
<out>/compare-backbones-<time>/<backbone>/, whose report.md holds its card; cards.md /
cards.json there put the cards side by side in the paper's columns (layout, trainable and
non-trainable parameters with their size, epochs and time, batch, train / validation /
evaluation binary accuracy, loss and AUC, device), each beside the paper's card, then every
field of each card. With --preset paper (or its old name seed) the layouts are the paper's
(include_top branches, concat -> Dense 256 ReLU -> Dense 10 sigmoid; their parameter counts);
without it each branch gives pooled features, and ViT is a small one (dim 128, depth 4, 4
heads, MLP 256, patch 8). A study given with --resume-table DIR reuses its finished runs and continues the
one it was in.

Without --data: 50 demo identities x 10 images, top / centre / bottom 32 px crops, a 50 / 10
/ 40 train / validation / test split, 2 epochs of batch 16 at Adam 1e-3 (the paper: 224 px,
7 to 22 epochs, 50% test); about 20 minutes on 2 CPU cores.
"""

from __future__ import annotations

from kerasface.cli.common import cli_main
from kerasface.cli.training import study_parser
from kerasface.cli.train_branches import DEMO_DEFAULTS as BRANCHES_DEMO_DEFAULTS

DEMO_DEFAULTS = {**BRANCHES_DEMO_DEFAULTS, "demo_identities": 50, "demo_images_per_identity": 10,
                 "test_fraction": 0.4, "validation_fraction": 0.1, "epochs": 2}
STUDY_BACKBONE_KWARGS = {"vit": {"patch_size": 8, "dim": 128, "depth": 4, "heads": 4, "mlp_dim": 256, "dim_head": 32}}


@cli_main
def main(argv=None) -> int:
    from kerasface.train.compare_backbones import BACKBONES, compare_backbones
    from kerasface.train.config import config_from_args

    parser = study_parser(__doc__, "attributes", "backbone comparison", ("backbones", BACKBONES))
    args = parser.parse_args(argv)
    config = config_from_args(args, None, DEMO_DEFAULTS, tasks=["attributes"])
    kwargs = {} if args.backbone_kwargs is not None else STUDY_BACKBONE_KWARGS
    compare_backbones(config, args.backbones, out=args.resume_table, backbone_kwargs=kwargs)
    return 0
