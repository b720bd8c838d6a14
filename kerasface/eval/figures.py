"""Evaluation figures on ``matplotlib.figure.Figure`` with the Agg canvas (pyplot untouched),
written as PNG atomically."""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kerasface.fileio import atomic_path


def new_figure(width: float = 7, height: float = 5.5) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
