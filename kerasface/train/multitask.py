"""The multitask task: identity embedding + attribute heads + an adversary per
attribute on the identity embedding behind a gradient reversal
(``kerasface.models.multitask.build_multitask_model``).

    total = w_id * loss_id + sum over attributes a of (w_a * loss_a + w_da * loss_da_a)

``loss_id`` is the recognition task's (a margin head's softmax cross-entropy, or a metric loss
such as triplet on P x K batches); ``loss_a`` and ``loss_da_a`` are cross-entropies that leave
samples without a value of ``a`` out (``kerasface.losses.masked``); the weights come from
``model.loss_weights`` (keys ``id``, ``attributes``, ``adversarial``, or one attribute ``a`` /
``da_a``; 1 by default). The adversaries train to predict the attributes from the identity
embedding; the reversed gradient trains the trunk to defeat them.

The split is by identity (as the recognition task's). Each epoch logs the multi-task figures:
Keras' per-output losses and AUCs renamed ``loss_id``, ``loss_<a>``, ``loss_da_<a>``,
``auc_<a>``, ``auc_da_<a>``, ``accuracy_id`` (training batches), identity verification AUCs
of training identities (``auc_id_cosine``, ``auc_id_euclidean``: pairs of up to 600 training
images, no augmentation), and every figure over the validation and test identities
(``val_validation_*``, ``val_test_*``); it prints the multi-task table (Train | Test), and the
report keeps it. ``model.keras`` is the identity embedding model alone, ``attributes.keras``
the attribute predictor alone (image -> label-vector scores); both export as SavedModels.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
from tabulate import tabulate

from kerasface.data.pipeline import build_pipeline
from kerasface.data.spec import column_slices, label_names
from kerasface.errors import BadInputError
from kerasface.eval.attributes import column_auc
from kerasface.eval.identity import verify_identities
from kerasface.eval.probe import linear_probe
from kerasface.fileio import write_json_atomic
from kerasface.losses.masked import MaskedAUC, MaskedCrossentropy
from kerasface.models.multitask import (
    ID_OUTPUT, attribute_model, attribute_outputs, build_multitask_model, identity_model, predictor_model,
)
from kerasface.registry import TASKS
from kerasface.report.card import format_number
from kerasface.report.history import epoch_grid, epoch_grids, num_epochs, shown_epochs
from kerasface.report.writer import add_report_section, load_run_report
from kerasface.saving import load_model
from kerasface.train.config import load_run_config
from kerasface.train.data import load_run_data
from kerasface.train.recognition import RecognitionTask
from kerasface.train.tasks import Monitoring, predict_split

WEIGHT_GROUPS = ("id", "attributes", "adversarial")
TRAIN_PAIR_IMAGES = 600
TEST_HEADER = "Test"
TEST_PREFIX = "val_test_"
IDENTITY = "identity"
RENAMED = ("loss", "auc", "accuracy")  # Keras' "<output>_<name>" -> the table's "<name>_<output>"


def multitask_table_rows(attributes) -> list[str]:
    """The multi-task table's rows: loss, loss_id, loss_<a> and loss_da_<a> per attribute, auc_<a> per
    attribute, auc_id_cosine, auc_id_euclidean."""
    rows = ["loss", "loss_id"]
    for a in attributes:
        rows += [f"loss_{a}", f"loss_da_{a}"]
    return rows + [f"auc_{a}" for a in attributes] + ["auc_id_cosine", "auc_id_euclidean"]


def multitask_table(history: dict, epochs: list[int], attributes) -> str:
    """The multi-task grid (Metric | Train | Test) for each of ``epochs`` (1-based) of ``history``."""
    return epoch_grids(history, epochs, names=multitask_table_rows(attributes), test_prefix=TEST_PREFIX,
                       test_header=TEST_HEADER)


seed_table_rows = multitask_table_rows  # deprecated names
seed_table = multitask_table


def resolve_loss_weights(weights: dict, attributes, adversarial: bool) -> dict[str, float]:
    """Per output, its weight in the total loss (see the module docstring for the keys)."""
    known = set(WEIGHT_GROUPS) | set(attributes) | {f"da_{a}" for a in attributes}
    unknown = sorted(set(weights) - known)
    if unknown:
        raise ValueError(f"unknown loss weight(s) {unknown}; known: {sorted(known)}")
    for key, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"loss weight {key!r} must be a number >= 0, got {value!r}")
    out = {ID_OUTPUT: float(weights.get("id", 1.0))}
    for a in attributes:
        out[a] = float(weights.get(a, weights.get("attributes", 1.0)))
        if adversarial:
            out[f"da_{a}"] = float(weights.get(f"da_{a}", weights.get("adversarial", 1.0)))
    return out


def predict_all(predictor: keras.Model, dataset) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(targets, outputs) over a pipeline of ``Task.model_io`` batches, the targets with the
    samples' ``IDENTITY`` (a margin head's input; its target may be Partial FC's zeros); a short
    last batch is padded to the first batch's size so that the predict function is traced once."""
    targets, outputs, full = {}, {}, None
    for x, y in dataset:
        with_identity = isinstance(x, (tuple, list))
        images = np.asarray(x[0] if with_identity else x)
        targets.setdefault(IDENTITY, []).append(np.asarray(x[1] if with_identity else y[ID_OUTPUT]))
        n = len(images)
        full = full or n
        if n < full:
            images = np.concatenate([images, np.zeros((full - n, *images.shape[1:]), images.dtype)])
        for key, value in predictor.predict_on_batch(images).items():
            outputs.setdefault(key, []).append(np.asarray(value, np.float32)[:n])
        for key, value in y.items():
            targets.setdefault(key, []).append(np.asarray(value))
    return ({k: np.concatenate(v) for k, v in targets.items()}, {k: np.concatenate(v) for k, v in outputs.items()})


@TASKS.register("multitask")
class MultitaskTask(RecognitionTask):
    name = "multitask"
    target = "identity_labels"
    output_activation = "multitask"
    loss_settings_from_data = False

    def __init__(self, config, spec):
        super().__init__(config, spec)
        chosen = config.model.attributes or list(spec.label_columns)
        self.columns = {c: spec.label_columns[c] for c in chosen if c in spec.label_columns}
        self.missing_columns = [c for c in chosen if c not in spec.label_columns]
        self.slices = column_slices(spec.label_columns)

    @property
    def attributes(self) -> list[str]:
        return list(self.columns)

    @property
    def adversarial(self) -> bool:
        return bool(self.config.model.adversarial)

    @property
    def output_names(self) -> list[str]:
        return label_names(self.columns)

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        model = config.model
        if model.reversal_lambda < 0:
            raise ValueError(f"reversal_lambda must be >= 0, got {model.reversal_lambda}")
        if model.reversal_warmup < 0:
            raise ValueError(f"reversal_warmup (epochs) must be >= 0, got {model.reversal_warmup}")
        if model.adversary_speed <= 0:
            raise ValueError(f"adversary_speed must be > 0, got {model.adversary_speed}")
        if model.head_units < 0:
            raise ValueError(f"head_units must be >= 0, got {model.head_units}")

    def check_data(self, splits):
        if self.missing_columns:
            raise BadInputError(f"{self.spec.source}: no attribute column(s) {self.missing_columns}; the "
                                f"columns are {list(self.spec.label_columns)}")
        if not self.columns:
            raise BadInputError(f"{self.spec.source}: no attribute columns; the multitask task needs a CSV with "
                                "path, identity and attribute columns (or a folder holding attributes.csv)")
        single = [c for c, vocab in self.columns.items() if len(vocab) < 2]
        if single:
            raise BadInputError(f"{self.spec.source}: attribute column {single[0]!r} holds one value only; an "
                                "attribute needs at least two values to learn; leave it out with --attributes")
        super().check_data(splits)
        resolve_loss_weights(self.config.model.loss_weights, self.attributes, self.adversarial)

    # how data reaches the model
    def model_io(self, x, y):
        identity, labels = y
        inputs, target = self.identity_io(x, identity)
        targets = {ID_OUTPUT: target}
        for a in self.attributes:
            targets[a] = labels[:, self.slices[a]]
            if self.adversarial:
                targets[f"da_{a}"] = targets[a]
        return inputs, targets

    # the model
    def build_model(self):
        model, size = self.config.model, self.config.data.image_size
        if model.reversal_warmup and self.steps_per_epoch is None:
            raise ValueError("the reversal warm-up is counted in training steps: the trainer sets the task's "
                             "steps_per_epoch (kerasface.train.data.steps_per_epoch) before building the model")
        warmup = round(model.reversal_warmup * self.steps_per_epoch) if model.reversal_warmup else 0
        return build_multitask_model(
            {a: len(v) for a, v in self.columns.items()}, self.num_train_classes, backbone=model.backbone,
            input_shape=(size, size, 3), embedding_dim=model.embedding_dim, identity_head=self.head_name,
            head_kwargs=model.loss_kwargs, adversarial=self.adversarial, reversal_lambda=model.reversal_lambda,
            reversal_warmup_steps=warmup, head_units=model.head_units, adversary_speed=model.adversary_speed,
            backbone_kwargs=model.backbone_kwargs,
            name=f"multitask_{model.backbone}")

    def inference_model(self, model):
        return identity_model(model)

    def extra_models(self, model):
        return {"attributes.keras": attribute_model(model, self.attributes)}

    def loss(self):
        losses = {ID_OUTPUT: super().loss()}
        for a in self.attributes:
            losses[a] = MaskedCrossentropy(name=f"loss_{a}")
            if self.adversarial:
                losses[f"da_{a}"] = MaskedCrossentropy(name=f"loss_da_{a}")
        return losses

    def loss_weights(self):
        return resolve_loss_weights(self.config.model.loss_weights, self.attributes, self.adversarial)

    def metrics(self):
        metrics = {ID_OUTPUT: super().metrics()} if super().metrics() else {}
        for a, vocab in self.columns.items():
            width = attribute_outputs(len(vocab))
            kwargs = dict(multi_label=True, num_labels=width) if width > 1 else {}
            metrics[a] = [MaskedAUC(name="auc", **kwargs)]
            if self.adversarial:
                metrics[f"da_{a}"] = [MaskedAUC(name="auc", **kwargs)]
        return metrics

    def output_keys(self) -> list[str]:
        keys = [ID_OUTPUT]
        for a in self.attributes:
            keys += [a, f"da_{a}"] if self.adversarial else [a]
        return keys

    def monitoring(self, run_dir, pipelines):
        """Validation identities' verification AUC, logged by ``MultitaskEvaluation``; without a
        validation split the identity loss (the total loss would reward the trunk for losing to the
        adversaries no more than it rewards it for learning)."""
        sets = {"train": self.eval_pipeline(self.train_pair_samples())}
        sets.update({name: pipelines[name] for name in ("validation", "test") if name in pipelines})
        callbacks = [MultitaskEvaluation(self, sets)]
        if "validation" in pipelines:
            return Monitoring("val_validation_auc_id_cosine", "max", callbacks)
        return Monitoring("loss_id", "min", callbacks)

    # evaluation
    def split_figures(self, targets: dict, outputs: dict) -> dict[str, float]:
        """The multi-task figures of one split from its targets and ``predictor_model`` outputs: per
        attribute loss, loss_da and their AUCs (samples with a value only), the mean attribute AUC,
        and identity verification of the split's same/different identity pairs."""
        losses = self.loss()
        figures = {}
        for a in self.attributes:
            for key in ([a, f"da_{a}"] if self.adversarial else [a]):
                figures[f"loss_{key}"] = float(keras.ops.convert_to_numpy(losses[key](targets[key], outputs[key])))
                figures[f"auc_{key}"] = column_auc(targets[key], outputs[key], self.columns[a])
        aucs = [figures[f"auc_{a}"] for a in self.attributes if not math.isnan(figures[f"auc_{a}"])]
        if aucs:
            figures["mean_auc"] = float(np.mean(aucs))
        figures.update(self.identity_figures(targets[IDENTITY], outputs["embedding"]))
        return figures

    def identity_figures(self, identity: np.ndarray, embeddings: np.ndarray) -> dict[str, float]:
        try:
            result, _, _ = verify_identities(identity, embeddings, seed=self.config.seed)
        except ValueError:
            return {}
        return {"auc_id_cosine": result.auc_cosine, "auc_id_euclidean": result.auc_euclidean,
                "accuracy_id": result.accuracy, "eer_id": result.eer}

    def eval_pipeline(self, samples):
        data = self.config.data
        return build_pipeline(self.spec, samples, input_config=data.input_config(), target=self.target,
                              batch_size=self.config.optim.batch_size, training=False, cache=True,
                              seed=self.config.seed).map(self.model_io)

    def train_pair_samples(self):
        train = self.splits["train"]
        if len(train) <= TRAIN_PAIR_IMAGES:
            return train
        rng = np.random.default_rng(self.config.seed)
        return train.subset(np.sort(rng.choice(len(train), TRAIN_PAIR_IMAGES, replace=False)))

    def evaluate(self, model, dataset):
        """The multi-task figures of the test identities, from the best checkpoint."""
        targets, outputs = predict_all(predictor_model(model), dataset)
        figures = self.split_figures(targets, outputs)
        roc = {}
        for a, vocab in self.columns.items():
            keep = ~np.isnan(targets[a]).any(axis=1)
            for j, label in enumerate(label_names({a: vocab})):
                roc[label] = (targets[a][keep, j], outputs[a][keep, j])
        return figures, {"roc": roc}

    def report_sections(self, history):
        n = num_epochs(history)
        if not n:
            return []
        epochs = shown_epochs(n)
        shown = "every epoch" if len(epochs) == n else "epochs " + ", ".join(map(str, epochs))
        text = (f"Train: training batches (losses, attribute AUCs) and pairs of up to {TRAIN_PAIR_IMAGES} "
                "training images (identity AUCs); Test: the test split, whose identities were never trained on "
                f"(no identity loss there). Shown: {shown} (all are in report.json's history).\n\n"
                "```text\n" + multitask_table(history, epochs, self.attributes) + "\n```")
        return [{"title": "Multi-task table (attributes, adversarial identity)", "text": text}]

    def layout(self) -> str:
        model = self.config.model
        identity = f"{model.loss} head ({self.num_train_classes} identities)" if self.head_name else f"{model.loss} loss"
        adversary = (f"; per attribute an adversary behind GradientReversal({model.reversal_lambda})"
                     if self.adversarial else "; no adversaries")
        return (f"1 image -> {model.backbone} -> embedding {model.embedding_dim} -> {identity}; pooled features -> "
                f"{len(self.columns)} attribute heads ({', '.join(self.attributes)}){adversary}")


class MultitaskEvaluation(keras.callbacks.Callback):
    """At each epoch's end: Keras' per-output names in ``logs`` renamed to the
    multi-task table's (``id_loss`` -> ``loss_id``, ``gender_auc`` -> ``auc_gender``, ``da_gender_loss`` ->
    ``loss_da_gender``), then the figures of each evaluation set: ``train`` (identity AUCs only,
    unprefixed), ``validation`` and ``test`` (every figure, as ``val_<set>_<figure>``); then the
    multi-task table of the epoch is printed. Runs before checkpointing and CSV logging."""

    def __init__(self, task: MultitaskTask, sets: dict, printer=print):
        super().__init__()
        self.task = task
        self.sets = sets
        self.printer = printer
        self._predictor = None

    def rename(self, logs: dict) -> None:
        for key in sorted(self.task.output_keys(), key=len, reverse=True):
            for suffix in RENAMED:
                if f"{key}_{suffix}" in logs:
                    logs[f"{suffix}_{key}"] = logs.pop(f"{key}_{suffix}")

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        self.rename(logs)
        if self._predictor is None:
            self._predictor = predictor_model(self.model)
        for name, dataset in self.sets.items():
            figures = self.task.split_figures(*predict_all(self._predictor, dataset))
            if name == "train":
                logs.update({k: v for k, v in figures.items() if k in ("auc_id_cosine", "auc_id_euclidean")})
            else:
                logs.update({f"val_{name}_{k}": v for k, v in figures.items()})
        total = (self.params or {}).get("epochs") or "?"
        grid = epoch_grid({k: [v] for k, v in logs.items()}, 1, names=multitask_table_rows(self.task.attributes),
                          test_prefix=TEST_PREFIX, test_header=TEST_HEADER)
        self.printer(f"Epoch {epoch + 1}/{total} (multi-task table)\n{grid}")


# the check that matters: does the adversary take attribute information out of the embedding?
PROBE_TITLE = "Linear probe of the identity embedding (with vs without adversaries)"


def embed_split(embedder: keras.Model, task: MultitaskTask, samples) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, label matrix) of ``samples`` through the evaluation pipeline (no augmentation)."""
    data = task.config.data
    dataset = build_pipeline(task.spec, samples, input_config=data.input_config(), target="labels",
                             batch_size=task.config.optim.batch_size, training=False)
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
    return {"run": run_dir.name, "adversarial": bool(config.model.adversarial),
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
    other = not config.model.adversarial
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
