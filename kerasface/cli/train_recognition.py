"""Train a face-recognition embedding model: backbone -> embedding -> margin head or metric loss.

    kerasface-train-recognition --backbone iresnet18 --loss arcface   (or python pipelines/train_recognition.py)

Without --data it trains on the embedded demo dataset's identities (generated once into the
cache), split by identity: the test identities are never trained on; the demo run uses 40 px
images, 5 epochs without augmentation (the renders vary pose, light, blur and noise) and, unless --loss-kwargs says otherwise, margin heads at scale 16 (ArcFace at
margin 0.3): s=64, m=0.5 are made for thousands of identities, the demo trains on 60. With
--data the defaults are 112 px aligned faces (pipelines/prepare_faces.py), 20 epochs and head
settings from the training identities (kerasface.train.recognition_defaults; --paper-settings:
each head's paper settings); the report's "Loss settings" say which and why. --data takes an image
folder (one sub-folder per identity), a CSV with path and identity columns, or an insightface
RecordIO pack (train.rec + train.idx). --loss is a margin head, LOSS+HEAD (a loss over a head's
logits, e.g. ohem+arcface) or a metric loss on P x K identity batches (the names: --loss in the
model options below); --loss-kwargs sets its options.

Each epoch scores same/different pairs of the validation and test identities (accuracy by
the LFW 10-fold protocol, ROC AUC by cosine and euclidean distance); the best checkpoint by
validation AUC is kept. The run folder holds the report (results.test: accuracy, auc_cosine,
auc_euclidean, eer, TAR@FAR) and model.keras, the embedding model without its head, which
pipelines/export.py exports with an image-in, embedding-out signature.

--exclude-identities FILE... leaves out of training the people that LFW pairs.txt files, pair
CSVs or name lists name (a benchmark's people are then never trained on), and
--min-images-per-identity N the identities with fewer than N images; the report says how many.

--init MODEL.keras fine-tunes an embedding model made before (kerasface-import-model's import of
an insightface model, or an earlier run's folder) under a new margin head; --image-size and
--embedding-dim must be the model's; --freeze-backbone-epochs N trains only the head at first.

--val-pairs PATH... verifies standard pair sets (lfw, cfp_fp, agedb_30) every epoch, and
--monitor SET picks the best checkpoint by one of them.
"""

from __future__ import annotations

from kerasface.cli.common import cli_main
from kerasface.cli.training import training_command

DEFAULTS = {
    "task": "recognition", "backbone": "iresnet18", "loss": "arcface", "views": "single", "split": "identity",
    "image_size": 112, "test_fraction": 0.1, "validation_fraction": 0.05, "epochs": 20, "batch_size": 32,
    "learning_rate": 1e-3, "lr_schedule": "cosine", "flip": "auto", "max_rotation": 10.0,
}
DEMO_DEFAULTS = {
    "image_size": 40, "test_fraction": 0.3, "validation_fraction": 0.1, "demo_identities": 100,
    "demo_images_per_identity": 20, "epochs": 5, "augment": False,
}


def demo_defaults(config) -> dict:
    """The demo run's settings: small images, a short schedule and the chosen loss's demo options."""
    from kerasface.train.recognition import demo_loss_kwargs

    options = config.task_config
    return {**DEMO_DEFAULTS, "loss_kwargs": {} if options.paper_settings else demo_loss_kwargs(options.loss)}


@cli_main
def main(argv=None) -> int:
    return training_command(argv, "kerasface-train-recognition", __doc__, DEFAULTS, demo_defaults)
