"""The multitask probe experiment: does the adversary take attribute information out of the
identity embedding? A finished multitask run and its twin with the adversaries switched the
other way, each identity embedding probed linearly (``kerasface.eval.probe``), side by side in
both reports."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
from tabulate import tabulate

from kerasface.data.spec import column_slices
from kerasface.eval.probe import linear_probe
from kerasface.fileio import write_json_atomic
from kerasface.report.card import format_number
from kerasface.report.writer import add_report_section, load_run_report
from kerasface.saving import load_model
from kerasface.train.config import load_run_config
from kerasface.train.data import load_run_data, split_pipeline
from kerasface.train.multitask import MultitaskTask
from kerasface.train.predict import predict_split

PROBE_TITLE = "Linear probe of the identity embedding (with vs without adversaries)"


def embed_split(embedder: keras.Model, task: MultitaskTask, samples) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, label matrix) of ``samples`` through the evaluation pipeline (no augmentation)."""
    dataset = split_pipeline(task.config, task.spec, samples, "labels")
    labels, embeddings = predict_split(embedder, dataset)
    return embeddings, labels


def probe_run(run_dir) -> dict:
    """Fresh linear probes (``kerasface.eval.probe``) of a finished multitask run's identity
    embedding (``model.keras``, frozen): fitted on the training split, AUC on the test split (its
    identities never trained on); with the run's test identity AUCs beside them."""

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    data = load_run_data(config, progress=False)
    task = MultitaskTask(config, data.spec)
    task.check_data(data.splits)
    embedder = load_model(run_dir / "model.keras", compile=False)
    train_x, train_y = embed_split(embedder, task, data.splits["train"])
    test_x, test_y = embed_split(embedder, task, data.splits["test"])
    slices = column_slices(data.spec.label_columns)
    columns = task.columns
    pick = lambda y: np.concatenate([y[:, slices[c]] for c in columns], axis=1)  # noqa: E731
    aucs = linear_probe(train_x, pick(train_y), test_x, pick(test_y), columns, seed=config.seed)
    test = load_run_report(run_dir)["results"].get("test", {})
    measured = [v for v in aucs.values() if not math.isnan(v)]
    return {"run": run_dir.name, "adversarial": bool(config.task_config.adversarial),
            "probe_auc": aucs, "mean_probe_auc": float(np.mean(measured)) if measured else math.nan,
            "auc_id_cosine": test.get("auc_id_cosine"), "auc_id_euclidean": test.get("auc_id_euclidean"),
            "attribute_auc": {c: test.get(f"auc_{c}") for c in columns}}


def probe_table(probes: list[dict]) -> str:
    """Side by side: probe AUC per attribute, their mean, the run's own attribute AUC mean and its
    identity verification AUCs (test split), one column per run."""

    headers = ["metric"] + [f"{'with' if p['adversarial'] else 'without'} adversaries ({p['run']})" for p in probes]
    rows = [[f"probe_auc_{c}"] + [format_number(p["probe_auc"].get(c)) for p in probes] for c in probes[0]["probe_auc"]]
    rows.append(["mean probe AUC"] + [format_number(p["mean_probe_auc"]) for p in probes])
    rows.append(["auc_id_cosine"] + [format_number(p["auc_id_cosine"]) for p in probes])
    rows.append(["auc_id_euclidean"] + [format_number(p["auc_id_euclidean"]) for p in probes])
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def probe_comparison(run_dir, log=print) -> dict:
    """``--probe``: the same run with the adversaries switched the other way (trained into
    ``<run>-no-adversary`` or ``<run>-adversary`` beside it, unless it is there already), a linear
    probe of both identity embeddings, and the side-by-side table in both reports (and
    ``probe.json`` in ``run_dir``)."""
    from kerasface.train.run import train

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    other = not config.task_config.adversarial
    twin_id = f"{run_dir.name}-{'adversary' if other else 'no-adversary'}"
    twin_dir = run_dir.parent / twin_id
    if not (twin_dir / "report.json").is_file():
        log(f"--probe: training the same run {'with' if other else 'without'} adversaries: {twin_dir}")
        twin_dir = train(config.replace(adversarial=other, run_id=twin_id, out=str(run_dir.parent)), log=log)
    probes = sorted([probe_run(run_dir), probe_run(twin_dir)], key=lambda p: not p["adversarial"])
    table = probe_table(probes)
    text = ("A fresh logistic-regression probe per attribute, trained on the frozen identity embeddings "
            "(L2-normalised) of the training split and scored by its AUC on the test split (identities never "
            "trained on). Lower probe AUC = less attribute information in the identity embedding; "
            "auc_id_* are the runs' test verification AUCs.\n\n" + table)
    for folder in (run_dir, twin_dir):
        add_report_section(folder, PROBE_TITLE, text, data=probes)
    write_json_atomic(run_dir / "probe.json", probes)
    log(table)
    return {"runs": [run_dir, twin_dir], "probes": probes, "table": table}
