"""Export a training run's model, then verify it against the Keras model."""

from __future__ import annotations

import json
from pathlib import Path

from kerasface.data.readers import read_dataset
from kerasface.export import DEFAULT_TOLERANCE
from kerasface.export.savedmodel import check_export_target, export_savedmodel, verify_export
from kerasface.saving import load_model
from kerasface.train.config import load_run_config


class ExportCheckFailed(RuntimeError):
    """The SavedModel's outputs differ from the Keras model's; nothing was written."""

    def __init__(self, message: str, differences: dict):
        super().__init__(message)
        self.differences = differences


def export_run(run_dir, out_dir, model_file: str = "model.keras", check_images: int = 8,
               tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """Write the SavedModel of ``run_dir`` to ``out_dir``; returns each signature's max absolute
    difference from the Keras model on ``check_images`` images of the run's dataset. The check
    runs before ``out_dir`` appears: above ``tolerance``, ``ExportCheckFailed`` and no ``out_dir``."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    model_path = run_dir / model_file
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path}: no model; did the run finish? (try --model checkpoints/last.keras)")
    check_export_target(out_dir)
    model = load_model(model_path)
    input_config = config.data.input_config()
    _, spec = read_dataset(config.data.resolved_path(), verify="none")
    paths = [str(p) for p in spec.samples.paths[:check_images]]
    differences = {}

    def check(folder):
        differences.update(verify_export(folder, model, input_config, paths))
        worst = max(differences.values())
        if worst > tolerance:
            raise ExportCheckFailed(
                f"{out_dir}: not written: the SavedModel of {model_path} gives outputs that differ from the "
                f"Keras model's by up to {worst:g} (tolerance {tolerance:g}): {json.dumps(differences)}",
                differences)

    export_savedmodel(model, input_config, out_dir, check=check)
    return differences
