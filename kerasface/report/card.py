"""The run's report card: one row (base | layout | params | epochs, time | batch | results | device),
and every field in full.

Sizes: bytes = params * 4 (float32 weights), units of 1024.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from collections.abc import Mapping

CARD_KEYS = (
    "run_id", "task", "base_model", "layout", "trainable_params", "non_trainable_params",
    "split", "optimizer", "learning_rate", "batch_size", "epochs", "wall_time_s",
    "fit_time_s", "device", "backend", "jit_compile", "mixed_precision", "image_size",
    "views", "head", "seed", "command",
)  # fmt: skip

FIELD_LABELS = {
    "run_id": "run id",
    "base_model": "base model",
    "trainable_params": "trainable params",
    "non_trainable_params": "non-trainable params",
    "learning_rate": "learning rate",
    "batch_size": "batch size",
    "wall_time_s": "wall time",
    "data_time_s": "data-loading time",
    "fit_time_s": "time in fit",
    "jit_compile": "XLA (jit_compile)",
    "mixed_precision": "mixed precision",
    "image_size": "image size",
}

NOTES_COLUMNS = ("base", "layout", "params", "epochs, time", "batch", "results", "device")

SPLIT_ABBREVIATIONS = {"train": "train", "validation": "val", "val": "val", "test": "test"}
METRIC_ABBREVIATIONS = {
    "binary_accuracy": "bin-acc",
    "accuracy": "acc",
    "categorical_accuracy": "cat-acc",
    "sparse_categorical_accuracy": "acc",
    "auc": "AUC",
}

MISSING = "-"
BYTES_PER_PARAM = 4
_UNITS = ("B", "KB", "MB", "GB", "TB")


def format_bytes(n: float) -> str:
    """``1003776 -> "980.25 KB"``: the largest unit (of 1024) keeping the number >= 1, two decimals."""
    if n is None or isinstance(n, bool) or not math.isfinite(n) or n < 0:
        raise ValueError(f"byte count must be a finite number >= 0, got {n!r}")
    if n < 1024:
        return f"{int(n)} B" if float(n).is_integer() else f"{n:.2f} B"
    value, unit = float(n), 0
    while unit < len(_UNITS) - 1 and round(value / 1024, 2) >= 1:
        value /= 1024
        unit += 1
    return f"{value:.2f} {_UNITS[unit]}"


def format_params(n: int, bytes_per_param: int = BYTES_PER_PARAM) -> str:
    """``24707394 -> "24,707,394 (94.25 MB)"``: the count and its float32 size."""
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"parameter count must be a whole number >= 0, got {n!r}")
    n = int(n)
    return f"{n:,} ({format_bytes(n * bytes_per_param)})"


def format_duration(seconds: float | None) -> str:
    """``42.08 -> "42.1 s"``, ``1800 -> "30 min"``, ``3725 -> "1 h 2 min"``; None -> "-".

    Under a minute: tenths of a second; under an hour: minutes and whole seconds;
    from an hour: hours and whole minutes (halves round up).
    """
    if seconds is None:
        return MISSING
    if isinstance(seconds, bool) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"duration must be a finite number of seconds >= 0, got {seconds!r}")
    if seconds < 59.95:
        return f"{seconds:.1f} s"
    whole = math.floor(seconds + 0.5)
    if whole < 3600:
        minutes, secs = divmod(whole, 60)
        return f"{minutes} min" + (f" {secs} s" if secs else "")
    hours, minutes = divmod(math.floor(seconds / 60 + 0.5), 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


def format_number(value: float, digits: int = 4) -> str:
    """Fixed decimals for metric values; "nan"/"inf" as such; None -> "-"."""
    if value is None:
        return MISSING
    value = float(value)
    return f"{value:.{digits}f}" if math.isfinite(value) else str(value)


def split_fractions(split) -> dict[str, float]:
    """Split name -> fraction, from a card ``split`` given as a mapping of fractions (else {})."""
    if not isinstance(split, Mapping):
        return {}
    fractions = {}
    for name, value in split.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1:
            fractions[str(name)] = float(value)
    return fractions


def metric_order(metrics: Mapping) -> list[str]:
    """Metrics first in their given order, losses last ("bin-acc ... AUC ... loss")."""
    names = list(metrics)
    return [m for m in names if not m.endswith("loss")] + [m for m in names if m.endswith("loss")]


def format_results(results: Mapping[str, Mapping[str, float]], split=None) -> str:
    """The card's results column: ``train bin-acc 0.8093 loss 0.4374; val ... (10%); test ...``."""
    fractions = split_fractions(split)
    parts = []
    for split_name, metrics in results.items():
        words = [SPLIT_ABBREVIATIONS.get(split_name, split_name)]
        for metric in metric_order(metrics):
            words.append(f"{METRIC_ABBREVIATIONS.get(metric, metric)} {format_number(metrics[metric])}")
        if split_name in fractions and split_name != "train":
            words.append(f"({fractions[split_name]:.0%})")
        parts.append(" ".join(words))
    return "; ".join(parts) if parts else MISSING


def parameter_sizes(card: Mapping) -> dict[str, dict]:
    """Per kind (trainable, non_trainable, total): params, float32 bytes and the card's text."""
    counts = {kind: card.get(f"{kind}_params") for kind in ("trainable", "non_trainable")}
    counts = {kind: n for kind, n in counts.items() if n is not None}
    if len(counts) == 2:
        counts["total"] = counts["trainable"] + counts["non_trainable"]
    return {
        kind: {"params": int(n), "bytes": int(n) * BYTES_PER_PARAM, "text": format_params(n)}
        for kind, n in counts.items()
    }


def format_value(key: str, value) -> str:
    """One card field as text: parameter counts with sizes, durations human-formatted."""
    if value is None:
        return MISSING
    if key.endswith("_params"):
        return format_params(value)
    if key.endswith("_time_s"):
        return format_duration(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if key == "split" and split_fractions(value):
        return ", ".join(f"{name} {share:.0%}" for name, share in split_fractions(value).items())
    if key == "image_size" and isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value, default=str)
    return str(value)


def field_label(key: str) -> str:
    return FIELD_LABELS.get(key, key.replace("_", " "))


def card_text(card: Mapping) -> dict[str, str]:
    """Every standard key in order ("-" where missing), then the extra keys, as text."""
    keys = list(CARD_KEYS) + [k for k in card if k not in CARD_KEYS]
    return {k: format_value(k, card.get(k)) for k in keys}


def _epochs_and_time(card: Mapping, epochs_run: int | None) -> str:
    planned = card.get("epochs")
    if epochs_run is not None and planned is not None and epochs_run != planned:
        epochs = f"{epochs_run} of {planned} epochs"
    else:
        count = planned if planned is not None else epochs_run
        epochs = MISSING if count is None else f"{count} epoch{'s' if count != 1 else ''}"
    text = f"{epochs}, {format_duration(card.get('wall_time_s'))}"
    if card.get("data_time_s") is not None:
        text += f" ({format_duration(card['data_time_s'])} of it loading data)"
    return text


def _params_text(card: Mapping) -> str:
    sizes = parameter_sizes(card)
    parts = [
        f"{label} {sizes[kind]['text']}"
        for kind, label in (("trainable", "trainable"), ("non_trainable", "non-trainable"))
        if kind in sizes
    ]
    return ", ".join(parts) if parts else MISSING


def notes_row(card: Mapping, results: Mapping, epochs_run: int | None = None) -> dict[str, str]:
    """The card in its columns: base | layout | params | epochs, time | batch | results | device."""
    return {
        "base": format_value("base_model", card.get("base_model")),
        "layout": format_value("layout", card.get("layout")),
        "params": _params_text(card),
        "epochs, time": _epochs_and_time(card, epochs_run),
        "batch": format_value("batch_size", card.get("batch_size")),
        "results": format_results(results, card.get("split")),
        "device": format_value("device", card.get("device")),
    }


def run_card(run_dir, config, task, runtime, data, *, counts: Mapping, global_batch: int, history: Mapping,
             best_epoch: int, monitor: str, wall_time_s: float, fit_time_s: float, notes=()) -> dict:
    """The report card of a finished run (``kerasface.train.run.train``): its config, task,
    runtime, data (``RunData``), parameter counts, history and timings."""
    card = {
        "run_id": run_dir.name,
        "task": task.name,
        "base_model": config.model.backbone,
        "layout": task.layout(),
        **counts,
        "split": {"mode": config.data.split,
                  **{k: round(len(v) / len(data.spec.samples), 4) for k, v in data.splits.items()}},
        "optimizer": config.optim.optimizer,
        "learning_rate": config.optim.learning_rate,
        "lr_schedule": config.optim.lr_schedule,
        "batch_size": global_batch,
        "epochs": len(next(iter(history.values()), [])) or config.optim.epochs,
        "planned_epochs": config.optim.epochs,
        "best_epoch": best_epoch,
        "monitor": monitor,
        "wall_time_s": round(wall_time_s, 1),
        "fit_time_s": round(fit_time_s, 1),
        "device": runtime.device,
        "backend": runtime.backend,
        "strategy": runtime.strategy_name,
        "replicas": runtime.num_replicas,
        "jit_compile": runtime.jit_compile,
        "mixed_precision": runtime.precision,
        "deterministic": config.runtime.deterministic,
        "image_size": config.data.image_size,
        "views": config.data.views,
        "head": config.model.head if config.model.preset != "paper" else "concat (paper preset)",
        "seed": config.seed,
        "dataset": data.spec.source,
        "command": " ".join(shlex.quote(a) for a in sys.argv),
    }
    if data.removed_from_training:
        card["removed_from_training"] = data.removed_from_training
    if notes:
        card["notes"] = "; ".join(notes)
    return card
