"""Write and read a run's report in ``reports/<run-id>/``: report.json, report.md and the plots.

Every file is written to a temporary file in the same folder, then moved over the old one
with ``os.replace``, so an interrupted write leaves the previous report intact.
"""

from __future__ import annotations

import datetime
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from kerasface.fileio import atomic_write, jsonable
from kerasface.report.card import card_text, notes_row, parameter_sizes
from kerasface.report.history import clean_history, num_epochs
from kerasface.report.markdown import render_markdown
from kerasface.report.plots import loss_figure, metrics_figure, roc_figure
from kerasface.report.roc import label_rocs

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
LOSS_PNG = "loss.png"
METRICS_PNG = "metrics.png"
ROC_PNG = "roc.png"


def _clean_results(results) -> dict[str, dict[str, float]]:
    if not isinstance(results, Mapping):
        raise TypeError(f"results must be a dict of split -> {{metric: value}}, got {type(results).__name__}")
    out = {}
    for split, metrics in results.items():
        if not isinstance(metrics, Mapping):
            raise TypeError(f"results[{split!r}] must be a dict of metric -> value, got {metrics!r}")
        out[str(split)] = {str(m): float(v) for m, v in metrics.items()}
    return out


def _save_png(figure, path: Path) -> None:
    atomic_write(path, lambda fh: figure.savefig(fh, format="png"), binary=True)


def write_run_report(
    run_dir: str | os.PathLike,
    card: dict,
    history: dict[str, list[float]],
    results: dict[str, dict[str, float]],
    roc: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    sections: list[dict] | None = None,
) -> dict:
    """Write report.json, report.md, loss.png, metrics.png and roc.png into ``run_dir``.

    card: the run's facts (``kerasface.report.card.CARD_KEYS``; missing ones shown as "-",
    extra ones shown too). history: Keras ``History.history`` (``val_`` = validation).
    results: final evaluation per split. roc: per label, test-split ``(y_true, y_score)``.
    sections: a task's own sections (``{"title", "text"}``), at the end of report.md.
    A plot with nothing to draw is not written; report["plots"] lists those that were.
    Returns the report dict (what report.json holds).
    """
    if not isinstance(card, Mapping):
        raise TypeError(f"card must be a dict, got {type(card).__name__}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    card = {**card, "run_id": card.get("run_id") or run_dir.name}
    history = clean_history(history)
    results = _clean_results(results)
    curves, skipped = label_rocs(roc)
    epochs_run = num_epochs(history)

    plots = []
    for name, figure in (
        (LOSS_PNG, loss_figure(history)),
        (METRICS_PNG, metrics_figure(history)),
        (ROC_PNG, roc_figure(curves)),
    ):
        if figure is not None:
            _save_png(figure, run_dir / name)
            plots.append(name)

    aucs = {label: curve.auc for label, curve in curves.items()}
    report = jsonable(
        {
            "run_id": card["run_id"],
            "written_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "card": card,
            "card_text": card_text(card),
            "notes_row": notes_row(card, results, epochs_run or None),
            "parameter_sizes": parameter_sizes(card),
            "epochs_run": epochs_run,
            "history": history,
            "results": results,
            "label_auc": aucs,
            "label_counts": {
                label: {"positives": c.positives, "negatives": c.negatives} for label, c in curves.items()
            },
            "mean_label_auc": math.fsum(aucs.values()) / len(aucs) if aucs else None,
            "skipped_labels": skipped,
            "plots": plots,
            "sections": [{"title": str(x["title"]), "text": str(x["text"])} for x in sections or []],
        }
    )
    _write_report_files(run_dir, report)
    return report


def _write_report_files(run_dir: Path, report: dict) -> None:
    atomic_write(run_dir / REPORT_JSON, lambda fh: json.dump(report, fh, indent=2, default=str))
    atomic_write(run_dir / REPORT_MD, lambda fh: fh.write(render_markdown(report)))


def add_report_section(run_dir: str | os.PathLike, title: str, text: str, data=None) -> dict:
    """Add (or replace, by title) a section of a written report, with optional JSON ``data``
    kept beside it in report.json; report.md is rendered again."""
    report = load_run_report(run_dir)
    section = jsonable({"title": title, "text": text, **({"data": data} if data is not None else {})})
    report["sections"] = [s for s in report.get("sections", []) if s["title"] != title] + [section]
    _write_report_files(Path(run_dir), report)
    return report


def load_run_report(run_dir: str | os.PathLike) -> dict:
    """The report dict from ``run_dir``/report.json (or from that file's path)."""
    path = Path(run_dir)
    if path.is_dir() or path.suffix != ".json":
        path = path / REPORT_JSON
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"no run report at {path} (write_run_report writes it)") from None
    try:
        report = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(report, dict) or "card" not in report:
        raise ValueError(f"{path} is not a run report (no 'card' entry)")
    return report
