"""examples/train_on_tpu.ipynb runs top to bottom on CPU with a tiny configuration: demo shards
staged to a remote-style URL (TensorFlow's ram:// file system, read through tf.io.gfile as
gs:// is), bfloat16 and XLA as on a TPU, Partial FC, export checked in a fresh process."""

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "train_on_tpu.ipynb"

TINY = {
    "KIT": None, "DATA": None, "STAGE_TO": "ram://kerasface-ci/shards", "RUN_ID": "ci", "STRATEGY": "auto",
    "MIXED_PRECISION": "bfloat16", "JIT_COMPILE": "on", "BACKBONE": "vit",
    "BACKBONE_KWARGS": dict(patch_size=8, dim=16, depth=1, heads=2, mlp_dim=32, dim_head=8, dropout=0.0,
                            emb_dropout=0.0),
    "IMAGE_SIZE": 32, "EMBEDDING_DIM": 16, "LOSS": "arcface", "LOSS_KWARGS": {"sample_rate": 0.5, "scale": 16.0},
    "BATCH_SIZE": 8, "EPOCHS": 1, "LEARNING_RATE": 0.01, "DEMO_IDENTITIES": 30, "DEMO_IMAGES_PER_IDENTITY": 4,
}


def parameters_cell(notebook):
    cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    return cells[0]


def test_the_committed_parameters_are_the_tpu_ones():
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    values = {}
    exec(parameters_cell(notebook).source, values)
    assert (values["STRATEGY"], values["MIXED_PRECISION"], values["KIT"], values["DATA"]) == ("tpu", "auto", None, None)
    assert set(TINY) | {"OUT", "EXPORT"} == {k for k in values if k.isupper()}
    assert all(cell.get("outputs", []) == [] for cell in notebook.cells if cell.cell_type == "code")


def test_notebook_runs_top_to_bottom_on_cpu(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    values = {**TINY, "OUT": str(tmp_path / "runs"), "EXPORT": str(tmp_path / "export")}
    parameters_cell(notebook).source = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    assert "ram://kerasface-ci/shards: 120 images of 30 identities, tfrecord" in outputs
    report = json.loads((tmp_path / "runs" / "ci" / "report.json").read_text())
    card = report["card"]
    assert (card["mixed_precision"], card["jit_compile"], card["dataset"]) == (
        "mixed_bfloat16", True, "ram://kerasface-ci/shards")
    assert "Partial FC at sample rate 0.5" in card["layout"]
    assert (tmp_path / "export" / "saved_model.pb").is_file()
