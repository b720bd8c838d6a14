"""The paper's modality comparison (section 2): one identity-embedding branch per
photometric-stereo modality, the three frozen and fused, the fusion fine-tuned.

    kerasface-compare-modalities [--runs 2] [training flags]   (or python pipelines/compare_modalities.py)

Per run (seeds --seed, --seed + 1, ...): a recognition run per modality (albedo, normal map,
depth map: one panel of the albedo | normal | depth tile each), then the three branches frozen
and fused by concatenation (only the fusion's Dense layer, its batch norm and the margin head
train), then the same fusion with the branches fine-tuned jointly. Each row lives in
<out>/compare-modalities-<time>/<row>-run-<k>/; table.md / table.json there give verification
AUC by cosine and euclidean distance on identities never trained on, at the last and the best
epoch, beside the paper's figure, and say which of the paper's conclusions held on this data.
A study given with --resume-table DIR reuses its finished rows and continues the one it was in.

--data: albedo | normal | depth tiles (kerasface-photometric-stereo's output), or the renders
it reads (lights.json and photometric/), turned into tiles under the study folder. Without
--data: the demo dataset's photometric renders at 64 px, 60 identities x 10 images, panels of
32 px, iresnet18 embeddings of 128, ArcFace at scale 16 and margin 0.3, 4 epochs of batch 32
(the paper trained larger images for longer), identity split 60 / 10 / 30; about 20 minutes
on 2 CPU cores.
"""

from __future__ import annotations

from kerasface.cli.common import cli_main
from kerasface.cli.training import study_parser
from kerasface.cli.train_recognition import DEFAULTS

STUDY_DEFAULTS = {**DEFAULTS, "views": "modalities", "augment": False, "image_size": 64, "epochs": 10}
DEMO_DEFAULTS = {
    "image_size": 32, "demo_identities": 60, "demo_images_per_identity": 10, "test_fraction": 0.3,
    "validation_fraction": 0.1, "epochs": 4, "embedding_dim": 128,
}
DEMO_RENDER_SIZE = 64


def demo_defaults(config) -> dict:
    """The demo study's settings and the chosen loss's demo options (ArcFace: scale 16, margin 0.3)."""
    from kerasface.train.recognition import demo_loss_kwargs

    return {**DEMO_DEFAULTS, "loss_kwargs": demo_loss_kwargs(config.task_config.loss)}


@cli_main
def main(argv=None) -> int:
    from kerasface.train.compare_modalities import compare_modalities
    from kerasface.train.config import config_from_args

    parser = study_parser(__doc__, "recognition", "modality comparison")
    parser.add_argument("--runs", type=int, default=2, help="runs per row, seeds --seed + 0, 1, ... (default 2)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    data, args.data = args.data, None
    config = config_from_args(args, STUDY_DEFAULTS, demo_defaults if data is None else None, tasks=["recognition"])
    demo = None
    if data is None:
        from kerasface.datasets.demo import DemoConfig

        demo = DemoConfig(identities=config.data.demo_identities,
                          images_per_identity=config.data.demo_images_per_identity, image_size=DEMO_RENDER_SIZE)
    compare_modalities(config, data, out=args.resume_table, runs=args.runs, demo_config=demo)
    return 0
