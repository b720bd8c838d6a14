"""Report figures, drawn on ``matplotlib.figure.Figure`` with the Agg canvas (pyplot and its
global backend are left alone): loss per epoch, every other metric per epoch, ROC per label."""

from __future__ import annotations

import math
from collections.abc import Mapping

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kerasface.report.history import VALIDATION_PREFIX, metric_names
from kerasface.report.roc import LabelROC

DPI = 100


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _plot_train_val(ax, history: Mapping[str, list[float]], name: str) -> None:
    for key, label in ((name, "train"), (VALIDATION_PREFIX + name, "validation")):
        values = history.get(key)
        if values:
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=label)
    ax.set_title(name)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")


def loss_figure(history: Mapping[str, list[float]]) -> Figure | None:
    """Train and validation loss per epoch; None when no loss was logged."""
    if not (history.get("loss") or history.get(VALIDATION_PREFIX + "loss")):
        return None
    figure = _figure(7, 4.5)
    ax = figure.add_subplot()
    _plot_train_val(ax, history, "loss")
    ax.set_ylabel("loss")
    return figure


def metrics_figure(history: Mapping[str, list[float]]) -> Figure | None:
    """One panel per metric other than the loss (train vs validation); None when there is none."""
    names = [n for n in metric_names(history) if n != "loss"]
    if not names:
        return None
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    figure = _figure(4.2 * cols, 3.2 * rows)
    for i, name in enumerate(names):
        _plot_train_val(figure.add_subplot(rows, cols, i + 1), history, name)
    return figure


def roc_figure(curves: Mapping[str, LabelROC]) -> Figure | None:
    """One ROC curve per label, its AUC in the legend; None when no label has a curve."""
    if not curves:
        return None
    many = len(curves) > 10
    figure = _figure(11 if many else 7, 6.5 if many else 6)
    ax = figure.add_subplot()
    palette = colormaps["tab20"].colors if many else colormaps["tab10"].colors
    for i, (label, curve) in enumerate(curves.items()):
        ax.plot(
            curve.fpr, curve.tpr, linewidth=1.2, label=f"{label} (AUC {curve.auc:.4f})",
            color=palette[i % len(palette)], linestyle=("-", "--", ":")[i // len(palette) % 3],
        )  # fmt: skip
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC per label (test)")
    ax.grid(alpha=0.3)
    if many:
        ax.legend(
            loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="x-small",
            ncol=math.ceil(len(curves) / 30),
        )  # fmt: skip
    else:
        ax.legend(loc="lower right", fontsize="small")
    return figure
