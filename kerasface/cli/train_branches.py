"""Train a multi-branch model: three crop views (or one image) -> backbones -> head.

    kerasface-train-branches --backbone densenet121     (or python pipelines/train_branches.py)

Without --data it trains the multi-label attribute task (gender, emotion, pose, facial hair,
occlusion, spectacles: 10 outputs) on the embedded demo dataset, generated once into the cache
(~/.cache/kerasface, or $KERASFACE_CACHE), with settings chosen on 2 CPU cores
(docs/benchmarks.md, "Attribute demo"): 100 identities x 20 images, top / centre / bottom
32 px crops covering 0.6 of a 53 px face (the top one holds eyes, brows and spectacles, the
bottom one mouth and beard), a 75/25 train/test split, 3 epochs of batch 16 at Adam 1e-3 with a cosine schedule and no augmentation (the
renders already vary roll, shift, scale, light, blur and noise; any flag overrides these). --data takes a CSV (path, identity and label
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

from kerasface.cli.common import cli_main
from kerasface.cli.training import training_command


DEMO_DEFAULTS = {
    "demo_identities": 100, "demo_images_per_identity": 20, "image_size": 32, "views": "crops-vertical",
    "crop_fraction": 0.6,
    "test_fraction": 0.25, "validation_fraction": 0.0, "epochs": 3, "batch_size": 16,
    "learning_rate": 1e-3, "lr_schedule": "cosine", "augment": False,
}


@cli_main
def main(argv=None) -> int:
    return training_command(argv, "kerasface-train-branches", __doc__, demo_defaults=DEMO_DEFAULTS,
                            tasks=("attributes", "identity"))
