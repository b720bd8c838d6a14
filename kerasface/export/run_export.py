"""Export a training run's model, then verify it against the Keras model."""

from __future__ import annotations

from pathlib import Path

from kerasface.data.readers import read_dataset
from kerasface.export.savedmodel import check_export_target, export_savedmodel, verify_export
from kerasface.saving import load_model
from kerasface.train.config import load_run_config


def export_run(run_dir, out_dir, model_file: str = "model.keras", check_images: int = 8) -> dict:
    """Write the SavedModel of ``run_dir`` to ``out_dir``; returns each signature's max absolute
    difference from the Keras model on ``check_images`` images of the run's dataset."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    model_path = run_dir / model_file
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path}: no model; did the run finish? (try --model checkpoints/last.keras)")
    check_export_target(out_dir)
    model = load_model(model_path)
    input_config = config.data.input_config()
    export_savedmodel(model, input_config, out_dir)
    _, spec = read_dataset(config.data.resolved_path(), verify="none")
    paths = [str(p) for p in spec.samples.paths[:check_images]]
    return verify_export(out_dir, model, input_config, paths)
