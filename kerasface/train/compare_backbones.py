"""Report cards of the paper's three backbones (section 3): DenseNet121,
EfficientNetV2S and ViT trained on the same data with the same budget, each card beside the
paper's own."""

from __future__ import annotations

from pathlib import Path

from kerasface.report.card import NOTES_COLUMNS, format_results
from kerasface.report.markdown import markdown_table
from kerasface.train.compare import dataset_description, run_trainings, study_folder, write_table
from kerasface.train.config import TrainConfig

BACKBONES = ("densenet121", "efficientnetv2s", "vit")
# the paper's cards, as section 3 gives them
NOTES_CARDS = {
    "densenet121": {
        "base": "DenseNet121", "layout": "3 images -> 3x DenseNet121 -> Dense 256 ReLU -> Dense 10 sigmoid",
        "params": "trainable 24,707,394 (94.25 MB), non-trainable 250,944 (980.25 KB)",
        "epochs, time": "7 epochs, 1 h", "batch": "8",
        "results": "train bin-acc 0.8093 loss 0.4374; val bin-acc 0.8384 loss 0.4314 (10%); "
                   "eval bin-acc 0.8069 loss 0.4353",
        "device": "P100 16 GB",
    },
    "efficientnetv2s": {
        "base": "EfficientNetV2S",
        "layout": "3x EfficientNetV2S(include_top=True, weights=None, classes=256, classifier_activation='relu') "
                  "-> 256 ReLU -> 10 sigmoid",
        "params": "trainable 65,146,290 (248.51 MB), non-trainable 461,616 (1.76 MB)",
        "epochs, time": "22 epochs, 30 min (29 min of it filling the input buffer)", "batch": "16",
        "results": "eval bin-acc 0.8079, AUC 0.6602, loss 3.5929", "device": "TPU v3-8",
    },
    "vit": {
        "base": "ViT",
        "layout": "3x ViT(image_size 224, patch_size 32, num_classes 1000, dim 1024, depth 6, heads 16, "
                  "mlp_dim 2048, dropout 0.1, emb_dropout 0.1) -> 256 ReLU -> 10 sigmoid",
        "params": "1.37 GB", "epochs, time": "14 epochs, 30 min", "batch": "8",
        "results": "train bin-acc 0.8250 loss 0.4171; val 0.8152 / 0.4410 (30%); eval bin-acc 0.8139, "
                   "AUC 0.7297, loss 0.4538",
        "device": "P100 16 GB",
    },
}
COLUMNS = ("source", *NOTES_COLUMNS)
CARD_METRICS = ("binary_accuracy", "auc", "loss")


def compare_backbones(config: TrainConfig, backbones=BACKBONES, out=None, log=print,
                      backbone_kwargs: dict[str, dict] | None = None) -> Path:
    """Train ``config`` once per backbone (run folders ``<out>/<backbone>``, ``backbone_kwargs``
    per backbone; none with ``--preset paper``, whose layouts are the paper's) and write
    ``cards.md`` / ``cards.json`` there: the measured cards beside the paper's side by side,
    then every field of each run's card. A finished run is reused, an interrupted one continues."""
    out = study_folder(out, config.out, "compare-backbones")
    kwargs = {} if config.model.preset == "paper" else dict(backbone_kwargs or {})
    runs = [(b, config.replace(backbone=b, backbone_kwargs=kwargs.get(b, config.model.backbone_kwargs)))
            for b in backbones]
    rows, cards = [], []
    for backbone, done in zip(backbones, run_trainings(out, runs, log)):
        if done.error:
            rows.append({"source": f"measured ({backbone})", "error": done.error})
        else:
            results = {split: {k: v for k, v in metrics.items() if k in CARD_METRICS}
                       for split, metrics in done.report["results"].items()}
            rows.append({"source": "measured", **done.report["notes_row"],
                         "results": format_results(results, done.report["card"].get("split"))})
            cards += [f"## {backbone}", markdown_table(list(done.report["card_text"].items()), ["field", "value"])]
        if backbone in NOTES_CARDS:
            rows.append({"source": "paper", **NOTES_CARDS[backbone]})
    setting = {"task": config.task, "dataset": dataset_description(config.data), "views": config.data.views,
               "image_size": config.data.image_size, "preset": config.model.preset or "pooled features",
               "epochs": config.optim.epochs, "batch_size": config.optim.batch_size,
               "learning_rate": config.optim.learning_rate, "split (test, validation)":
               f"{config.data.test_fraction}, {config.data.validation_fraction}"}
    text = (", ".join(f"{k}: {v}" for k, v in setting.items())
            + "\n\nEach backbone's measured card (same data, same budget), then the paper's card for "
            "the same backbone; the paper trained 224 px images for longer on other devices. Results: binary "
            "accuracy, AUC and loss per split (every metric is in each run's report.md).")
    write_table(out, "cards", "Backbone report cards (paper, section 3)", text, COLUMNS, rows,
                {"setting": setting}, log, after="\n\n".join(cards))
    return out
