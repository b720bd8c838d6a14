"""Loading ``.keras`` files of the kit: every custom layer, head and loss registered first."""

from __future__ import annotations

import os
from pathlib import Path

import keras


def load_model(path, compile: bool = True) -> keras.Model:
    """``keras.models.load_model(path, safe_mode=True)`` with the kit's layers, margin heads and
    losses registered, whatever the caller imported before."""
    import kerasface.losses  # noqa: F401
    import kerasface.models  # noqa: F401

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such model file")
    return keras.models.load_model(path, compile=compile, safe_mode=True)


def run_model_file(source) -> Path:
    """A ``.keras`` file as given, or the model of a run folder (``model.keras``, else
    ``checkpoints/best.keras``)."""
    source = Path(source)
    if source.is_dir():
        return next((p for p in (source / "model.keras", source / "checkpoints" / "best.keras") if p.is_file()),
                    source / "model.keras")
    return source
