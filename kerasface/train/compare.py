"""One backbone, one dataset, one run per loss: the loss comparison table (loss | verification accuracy | AUC)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from tabulate import tabulate

from kerasface.fileio import write_json_atomic, write_text_atomic
from kerasface.report import load_run_report
from kerasface.train.config import TrainConfig
from kerasface.train.run import train

COMPARED_LOSSES = ("softmax", "normface", "sphereface", "cosface", "arcface", "combined", "ohem+normface",
                   "focal+normface", "triplet", "contrastive")
SEED_004_LOSSES = COMPARED_LOSSES  # deprecated name
COLUMNS = ("loss", "accuracy", "accuracy_std", "auc_cosine", "auc_euclidean", "eer", "best_epoch", "wall_time_s")


def dataset_description(data) -> str:
    """``data.path``, or for the demo data its cache folder's name and size (no machine's path)."""
    if data.path:
        return data.path
    from kerasface.datasets.demo import DemoConfig, demo_folder_name

    folder = demo_folder_name(DemoConfig(identities=data.demo_identities,
                                         images_per_identity=data.demo_images_per_identity))
    return (f"demo dataset {folder} ({data.demo_identities} identities x {data.demo_images_per_identity} images, "
            "rendered into the kerasface cache)")


def compare_losses(config: TrainConfig, losses=COMPARED_LOSSES, out=None, log=print,
                   loss_kwargs: Callable[[str], dict] | None = None) -> Path:
    """Train ``config`` once per loss (run folders ``<out>/<loss>``) and write ``table.md`` and
    ``table.json`` there; a loss whose run fails gets its error in the table and the rest go on.
    ``loss_kwargs(loss)``: each loss's options (default: ``config``'s for every loss)."""
    out = Path(out or Path(config.out) / f"compare-losses-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for loss in losses:
        run_id = loss.replace("+", "-")
        options = loss_kwargs(loss) if loss_kwargs else config.model.loss_kwargs
        run_config = dataclasses.replace(config.replace(loss=loss, loss_kwargs=options), out=str(out), run_id=run_id)
        log(f"--- {loss}")
        try:
            run_dir = out / run_id if (out / run_id / "report.json").is_file() else train(run_config, log=log)
        except (ValueError, RuntimeError) as error:
            rows.append({"loss": loss, "error": str(error)})
            log(f"{loss}: failed: {error}")
            continue
        report = load_run_report(run_dir)
        test = report["results"]["test"]
        rows.append({"loss": loss, **{k: test.get(k) for k in COLUMNS[1:6]},
                     "best_epoch": report["card"].get("best_epoch"), "wall_time_s": report["card"].get("wall_time_s")})
    table = tabulate([[row.get(c, row.get("error", "")) for c in COLUMNS] for row in rows], headers=COLUMNS,
                     tablefmt="github", floatfmt=".4f")
    card = {"backbone": config.model.backbone, "dataset": dataset_description(config.data),
            "image_size": config.data.image_size, "epochs": config.optim.epochs, "batch_size": config.optim.batch_size, "seed": config.seed}
    text = ("# Loss comparison\n\n" + ", ".join(f"{k}: {v}" for k, v in card.items())
            + "\n\nTest split: identities never trained on; accuracy by the LFW 10-fold protocol.\n\n" + table + "\n")
    write_text_atomic(out / "table.md", text)
    write_json_atomic(out / "table.json", {"card": card, "rows": rows})
    log(table)
    return out
