"""Several trainings side by side, each in a row of one table: the studies' shared core
(``run_trainings``) and the loss comparison (loss | verification accuracy | AUC)."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tabulate import tabulate

from kerasface.fileio import write_json_atomic, write_text_atomic
from kerasface.report import load_run_report
from kerasface.train.callbacks import read_run_state
from kerasface.train.config import CONFIG_FILE, TrainConfig
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


@dataclasses.dataclass
class Training:
    """One row's training: its run folder and report, or the error that stopped it."""

    name: str
    run_dir: Path | None = None
    report: dict | None = None
    error: str | None = None


def study_folder(out, default_parent, prefix: str) -> Path:
    """``out``, or ``<default_parent>/<prefix>-<time>``; created."""
    folder = Path(out or Path(default_parent) / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_training(out: Path, name: str, config: TrainConfig, log=print) -> Training:
    """Train ``config`` into ``<out>/<name>``: a finished run there (its report written) is
    reused, an interrupted one continues from its last checkpoint, one that never reached a
    checkpoint starts again. A run that fails with ValueError or RuntimeError gives its error."""
    run_dir = out / name
    log(f"--- {name}")
    if (run_dir / "report.json").is_file():
        log(f"{run_dir}: finished, reused")
        return Training(name, run_dir, load_run_report(run_dir))
    try:
        state = read_run_state(run_dir / "checkpoints") if (run_dir / CONFIG_FILE).is_file() else None
        if state and 0 < state.get("epoch", 0) < config.optim.epochs:
            log(f"{run_dir}: continuing after epoch {state['epoch']}")
            run_dir = train(resume=run_dir, log=log)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir = train(dataclasses.replace(config, out=str(out), run_id=name), log=log)
    except (ValueError, RuntimeError) as error:
        log(f"{name}: failed: {error}")
        return Training(name, error=str(error))
    return Training(name, run_dir, load_run_report(run_dir))


def run_trainings(out: Path, runs: Sequence[tuple[str, TrainConfig]], log=print) -> list[Training]:
    """``run_training`` for each ``(name, config)`` in turn, so that a study stopped part way
    continues at the row it was in."""
    return [run_training(Path(out), name, config, log) for name, config in runs]


def write_table(out: Path, name: str, title: str, text: str, columns: Sequence[str], rows: list[dict],
                data: dict, log=print, after: str = "") -> str:
    """``<name>.md`` (title, text, the rows under ``columns``; a failed row shows its error; then
    ``after``) and ``<name>.json`` (``data`` and the rows) in ``out``; returns the table."""
    table = tabulate([[row.get(c, row.get("error", "")) for c in columns] for row in rows], headers=columns,
                     tablefmt="github", floatfmt=".4f")
    write_text_atomic(out / f"{name}.md", f"# {title}\n\n{text}\n\n{table}\n" + (f"\n{after}\n" if after else ""))
    write_json_atomic(out / f"{name}.json", {**data, "rows": rows})
    log(table)
    return table


def scored_split(config: TrainConfig) -> str:
    """The results section a recognition study's table reports: the ``--monitor`` set when it is
    one of ``--val-pairs`` (as a benchmark's pairs are), else the test split."""
    monitor = config.task_config.monitor
    return "test" if monitor == "validation" else monitor


def compare_losses(config: TrainConfig, losses=COMPARED_LOSSES, out=None, log=print,
                   loss_kwargs: Callable[[str], dict] | None = None) -> Path:
    """Train ``config`` once per loss (run folders ``<out>/<loss>``) and write ``table.md`` and
    ``table.json`` there; a loss whose run fails gets its error in the table and the rest go on.
    ``loss_kwargs(loss)``: each loss's options (default: ``config``'s for every loss)."""
    out = study_folder(out, config.out, "compare-losses")
    given = config.task_config.loss_kwargs
    runs = [(loss.replace("+", "-"), config.replace(loss=loss, loss_kwargs=loss_kwargs(loss) if loss_kwargs else given))
            for loss in losses]
    scored_set = scored_split(config)
    rows = []
    for loss, done in zip(losses, run_trainings(out, runs, log)):
        if done.error:
            rows.append({"loss": loss, "error": done.error})
            continue
        scored = done.report["results"][scored_set]
        rows.append({"loss": loss, **{k: scored.get(k) for k in COLUMNS[1:6]},
                     "best_epoch": done.report["card"].get("best_epoch"),
                     "wall_time_s": done.report["card"].get("wall_time_s")})
    card = {"backbone": config.model.backbone, "dataset": dataset_description(config.data),
            "image_size": config.data.image_size, "epochs": config.optim.epochs, "batch_size": config.optim.batch_size,
            "seed": config.seed}
    scored_text = ("Test split: identities never trained on" if scored_set == "test" else
                   f"The {scored_set} pairs (--val-pairs, --monitor) at each run's best epoch")
    text = (", ".join(f"{k}: {v}" for k, v in card.items())
            + f"\n\n{scored_text}; accuracy by the LFW 10-fold protocol.")
    write_table(out, "table", "Loss comparison", text, COLUMNS, rows, {"card": card}, log)
    return out
