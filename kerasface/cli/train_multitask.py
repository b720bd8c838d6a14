"""Train the multi-task model: identity embedding + attribute heads + adversaries that take the
attributes that vary within an identity (pose, expression, occlusion; not gender) out of the
identity embedding.

    kerasface-train-multitask                      (or python pipelines/train_multitask.py)
    kerasface-train-multitask --probe              (and the same run without adversaries, probed)
    kerasface-train-multitask --data faces.csv --backbone iresnet18 --image-size 112 --epochs 40

Without --data it trains on the embedded demo dataset (identity folders + attributes.csv:
gender, emotion, pose, facial_hair, occlusion, spectacles), generated once into the cache.
--data takes a CSV with path, identity and attribute columns, or a folder holding
attributes.csv; an empty attribute cell is a missing value, left out of that attribute's loss
and AUC (--no-missing-labels makes it an error). The split is by identity: the test identities
are never trained on.

The adversary (--adversary) is by default the closed-form one: after training, a LEACE eraser
(Belrose et al., 2023) fitted on the training split's embeddings ends model.keras, so that no
linear read-out of those attributes is left (the test results are the erased embedding's).
--adversary reversal trains a head per attribute behind a gradient reversal instead (loss_da_a;
--reversal-lambda, --reversal-warmup, --adversary-speed). The figures of both are in
docs/benchmarks.md ("Which attributes get adversaries, and how").

total = w_id * loss_id + sum over attributes (w_a * loss_a + w_da * loss_da_a), weights from
--loss-weights '{"id": 1, "attributes": 1, "adversarial": 1, "gender": 2, "da_gender": 0.5}'
(or loss_weights in a --config file). --undersample paper applies fixed per-attribute
undersampling factors (gender 3x, emotion 1.5x, pose 2x, facial hair 2.25x, occlusion 1.75x,
spectacles 2.5x) to the training split (they compound: on the demo data 1,200 training images
become 54, so the demo runs without). The identity loss is --loss: a margin head (default
normface, chosen on the demo data: see docs/benchmarks.md, "Multi-task demo"), or triplet on
P x K batches. With --adversary reversal, --adversary-speed K makes the heads learn K times faster
than the trunk (two time-scale training; plain gradient reversal lets the trunk outrun them, and
they end up predicting the attribute inverted, AUC < 0.5, while the information stays in the
embedding).

Each epoch prints the multi-task table (loss, loss_id, loss_<a>, loss_da_<a> with reversal, auc_<a>,
auc_id_cosine, auc_id_euclidean; Train | Test) and the report keeps it. The run folder holds
model.keras (the identity embedding model alone, with the eraser) and attributes.keras (the attribute predictor
alone); export each with pipelines/export.py --run RUN [--model attributes.keras].
--probe then trains the same run with the adversaries switched the other way (--adversarial
off), fits a fresh linear probe per attribute on each frozen identity embedding and writes the
probe AUCs and identity AUCs of both side by side into both reports.
"""

from __future__ import annotations

import argparse

from kerasface.cli.common import cli_main
from kerasface.cli.training import training_command

DEFAULTS = {
    "task": "multitask", "backbone": "iresnet18", "loss": "normface", "views": "single", "split": "identity",
    "missing_labels": True, "image_size": 32, "embedding_dim": 128, "test_fraction": 0.3,
    "validation_fraction": 0.1, "demo_identities": 100, "demo_images_per_identity": 20, "epochs": 6,
    "batch_size": 32, "learning_rate": 1e-3, "lr_schedule": "cosine", "max_rotation": 10.0,
}


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("probe")
    a = g.add_argument
    a("--probe", action="store_true", help="after training, train the same run with the adversaries switched the "
      "other way and compare linear-probe AUCs of both identity embeddings (written into both reports)")
    a("--probe-only", metavar="RUN_DIR", help="run the --probe comparison for a finished run, without training it")


def after_training(run_dir, args) -> None:
    if args.probe:
        from kerasface.train.probe import probe_comparison

        probe_comparison(run_dir)


@cli_main
def main(argv=None) -> int:
    args = list(argv) if argv is not None else None
    import sys

    given = sys.argv[1:] if args is None else args
    if "--probe-only" in given:
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--probe-only", metavar="RUN_DIR", required=True)
        parser.add_argument("--debug", action="store_true")
        from kerasface.train.probe import probe_comparison

        probe_comparison(parser.parse_args(given).probe_only)
        return 0
    return training_command(argv, "kerasface-train-multitask", __doc__, DEFAULTS, add_arguments=add_probe_arguments,
                            after=after_training)
