"""The multitask task: identity embedding + attribute heads + adversaries that take the
per-image attributes out of the identity embedding (``kerasface.models.multitask.build_multitask_model``).

    total = w_id * loss_id + sum over attributes a of (w_a * loss_a + w_da * loss_da_a)

``loss_id`` is the recognition task's (a margin head's softmax cross-entropy, or a metric loss
such as triplet on P x K batches); ``loss_a`` and ``loss_da_a`` are cross-entropies that leave
samples without a value of ``a`` out (``kerasface.losses.masked``); the weights come from
``multitask.loss_weights`` (keys ``id``, ``attributes``, ``adversarial``, or one attribute ``a`` /
``da_a``; 1 by default). The task's settings are the ``multitask`` section of the run's config
(``MultitaskConfig``). Two kinds of adversary (``multitask.adversary``):

- ``eraser`` (the default): after training, the closed-form linear adversary. A LEACE eraser
  (``kerasface.models.erasure``) fitted on the training split's embeddings of the best checkpoint
  ends the identity model, so that no linear read-out of the adversarial attributes is left; the
  test figures (``results.test``) are those of the erased embedding, the per-epoch ones the trunk's.
- ``reversal``: during training, a head per attribute learns to predict it from the identity
  embedding behind a gradient reversal (``loss_da_a``), which trains the trunk to defeat it.

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

import argparse
import dataclasses
import math

import keras
import numpy as np

from kerasface.data.spec import column_slices, column_values, label_names
from kerasface.errors import BadInputError
from kerasface.eval.attributes import column_auc, within_identity_variation
from kerasface.eval.identity import verify_identities
from kerasface.losses.masked import MaskedAUC, MaskedCrossentropy
from kerasface.models.erasure import ConceptErasure, fit_concept_eraser
from kerasface.models.multitask import (
    ID_OUTPUT, attribute_model, attribute_outputs, build_multitask_model, identity_model, predictor_model,
)
from kerasface.registry import TASKS
from kerasface.report.history import num_epochs, shown_epochs
from kerasface.report.multitask import multitask_table
from kerasface.settings_file import json_object
from kerasface.train.data import split_pipeline
from kerasface.train.multitask_evaluation import MultitaskEvaluation
from kerasface.train.predict import IDENTITY, predict_all
from kerasface.train.recognition import (
    EmbeddingLossConfig, RecognitionTask, add_embedding_loss_arguments, check_identity_split, parse_loss,
)
from kerasface.train.tasks import Monitoring

TRAIN_PAIR_IMAGES = 600
LOSS_WEIGHT_GROUPS = ("id", "attributes", "adversarial")
# "auto" adversaries: the attributes whose within-identity variation (eval.attributes) is at least this
PER_IMAGE_VARIATION = 0.5
ADVERSARY_KINDS = ("eraser", "reversal")


@dataclasses.dataclass
class MultitaskConfig(EmbeddingLossConfig):
    """The multitask task's settings (the ``multitask`` section of a run's config): the identity
    embedding's loss and size, the attribute columns (empty: all), heads, adversaries and loss weights."""

    attributes: list[str] = dataclasses.field(default_factory=list)
    head_units: int = 128
    adversarial: bool = True
    adversaries: str | list[str] = "auto"
    adversary: str = "eraser"
    reversal_lambda: float = 1.0
    reversal_warmup: float = 0.0
    adversary_speed: float = 1.0
    loss_weights: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.reversal_lambda < 0:
            raise ValueError(f"reversal_lambda must be >= 0, got {self.reversal_lambda}")
        if self.reversal_warmup < 0:
            raise ValueError(f"reversal_warmup (epochs) must be >= 0, got {self.reversal_warmup}")
        if self.adversary not in ADVERSARY_KINDS:
            raise ValueError(f"adversary must be one of {', '.join(ADVERSARY_KINDS)}, got {self.adversary!r}")
        if self.adversary_speed <= 0:
            raise ValueError(f"adversary_speed must be > 0, got {self.adversary_speed}")
        if self.head_units < 0:
            raise ValueError(f"head_units must be >= 0, got {self.head_units}")
        if isinstance(self.adversaries, (list, tuple)):
            self.adversaries = (self.adversaries[0] if list(self.adversaries) in (["auto"], ["all"])
                                else list(self.adversaries))
        if isinstance(self.adversaries, str) and self.adversaries not in ("auto", "all"):
            raise ValueError(f"adversaries must be auto, all or a list of attribute columns, got {self.adversaries!r}")


def on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")
    return text == "on"


def resolve_loss_weights(weights: dict, attributes, adversaries) -> dict[str, float]:
    """``multitask.loss_weights`` (keys ``id``, ``attributes``, ``adversarial``, or one attribute
    ``a`` / ``da_a``; 1 by default) as the weight of each output in the total loss; ``adversaries``:
    the attributes with an adversary."""
    known = set(LOSS_WEIGHT_GROUPS) | set(attributes) | {f"da_{a}" for a in attributes}
    unknown = sorted(set(weights) - known)
    if unknown:
        raise ValueError(f"unknown loss weight(s) {unknown}; known: {sorted(known)}")
    for key, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"loss weight {key!r} must be a number >= 0, got {value!r}")
    out = {ID_OUTPUT: float(weights.get("id", 1.0))}
    for a in attributes:
        out[a] = float(weights.get(a, weights.get("attributes", 1.0)))
        if a in adversaries:
            out[f"da_{a}"] = float(weights.get(f"da_{a}", weights.get("adversarial", 1.0)))
    return out


@TASKS.register("multitask")
class MultitaskTask(RecognitionTask):
    name = "multitask"
    summary = "an identity embedding, attribute heads and per attribute an adversary on the embedding"
    target = "identity_labels"
    output_activation = "multitask"
    config_cls = MultitaskConfig

    def __init__(self, config, spec):
        super().__init__(config, spec)
        chosen = self.task_config.attributes or list(spec.label_columns)
        self.columns = {c: spec.label_columns[c] for c in chosen if c in spec.label_columns}
        self.missing_columns = [c for c in chosen if c not in spec.label_columns]
        self.slices = column_slices(spec.label_columns)
        self.variation: dict[str, float] = {}
        self._adversaries: list[str] | None = None

    @property
    def attributes(self) -> list[str]:
        return list(self.columns)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("multitask")
        add_embedding_loss_arguments(g, "normface", 128)
        a = g.add_argument
        a("--attributes", nargs="+", help="attribute columns to learn (default: every label column)")
        a("--head-units", type=int, help="hidden units of each attribute and adversary head (default 128; 0: linear)")
        a("--adversarial", type=on_off, metavar="{on,off}", help="adversaries on the identity embedding (default on)")
        a("--adversaries", nargs="+", metavar="ATTR",
          help="the attributes that get an adversary: auto (default: those that vary within an identity, "
               f"within-identity variation >= {PER_IMAGE_VARIATION}: pose, expression, not gender), all, or "
               "attribute columns")
        a("--adversary", choices=ADVERSARY_KINDS,
          help="eraser (default): after training, a LEACE eraser fitted on the training split ends the identity "
               "model and leaves no linear read-out of the adversarial attributes; reversal: during training, heads "
               "that learn the attributes from the embedding behind a gradient reversal (--reversal-lambda, "
               "--reversal-warmup, --adversary-speed)")
        a("--reversal-lambda", type=float, help="gradient-reversal strength lambda (default 1)")
        a("--reversal-warmup", type=float, metavar="EPOCHS",
          help="DANN warm-up of lambda over this many epochs, 2/(1+exp(-10p))-1 (default 0: constant lambda)")
        a("--adversary-speed", type=float, help="the adversaries learn this many times faster than the rest (their "
          "weights scaled, as a learning-rate multiplier under Adam; default 1)")
        a("--loss-weights", type=json_object, metavar="JSON",
          help='loss weights: {"id": w, "attributes": w, "adversarial": w, "<attr>": w, "da_<attr>": w} (default 1)')
        # a data setting (every task's data reading applies it) that only this task can learn with
        a("--no-missing-labels", action="store_false", dest="missing_labels", default=None,
          help="an empty attribute cell is bad input (default: a missing value, masked out of the loss)")

    @property
    def adversaries(self) -> list[str]:
        """The attributes with an adversary (``multitask.adversaries``; "auto" is decided from the
        training split in ``check_data``)."""
        if self._adversaries is None:
            self._adversaries = self.choose_adversaries()
        return self._adversaries

    @property
    def adversarial(self) -> bool:
        return bool(self.adversaries)

    @property
    def erases(self) -> bool:
        """The adversaries are a LEACE eraser fitted after training (``multitask.adversary`` eraser)."""
        return self.adversarial and self.task_config.adversary == "eraser"

    @property
    def adversary_heads(self) -> list[str]:
        """The attributes with a gradient-reversal head in the training model (``da_<a>`` outputs)."""
        return [] if self.task_config.adversary == "eraser" else self.adversaries

    def choose_adversaries(self) -> list[str]:
        chosen = self.task_config.adversaries
        if not self.task_config.adversarial:
            return []
        if chosen == "all":
            return self.attributes
        if chosen != "auto":
            return [a for a in self.attributes if a in chosen]
        if not self.variation:  # check_data measures the training split; before it, the whole dataset
            self.variation = self.attribute_variation(self.spec.samples)
        return [a for a in self.attributes if self.variation[a] >= PER_IMAGE_VARIATION]

    def attribute_variation(self, samples) -> dict[str, float]:
        """Per attribute, its within-identity variation over ``samples`` (``eval.attributes``)."""
        values = column_values(self.spec.label_columns, samples.labels)
        return {a: within_identity_variation(samples.identity, values[a]) for a in self.attributes}

    def adversary_reason(self) -> str:
        """Which attributes have an adversary, and why."""
        chosen = self.task_config.adversaries
        if not self.task_config.adversarial:
            return "no adversaries (--adversarial off)"
        if chosen != "auto":
            return f"adversaries on {', '.join(self.adversaries)} (--adversaries {' '.join(chosen) if isinstance(chosen, list) else chosen})"
        shown = lambda names: ", ".join(f"{a} {self.variation[a]:.2f}" for a in names)  # noqa: E731
        others = [a for a in self.attributes if a not in self.adversaries]
        text = (f"adversaries on the attributes that vary within an identity (within-identity variation >= "
                f"{PER_IMAGE_VARIATION}, training split): {shown(self.adversaries) or 'none'}")
        if others:
            text += f"; none on {shown(others)}: they belong to the identity, which the embedding must keep"
        return text

    def adversary_kind(self) -> str:
        """How the adversaries work (empty without adversaries)."""
        if not self.adversarial:
            return ""
        if self.erases:
            return (" Eraser (--adversary eraser): a LEACE eraser fitted on the training split's embeddings of the "
                    "best checkpoint ends model.keras and leaves no linear read-out of these attributes; the test "
                    "results are the erased embedding's, the per-epoch table the trunk's.")
        options = self.task_config
        return (f" Gradient reversal (--adversary reversal): heads that learn the attributes from the embedding, "
                f"lambda {options.reversal_lambda:g}, warm-up {options.reversal_warmup:g} epochs, speed "
                f"{options.adversary_speed:g}.")

    @property
    def output_names(self) -> list[str]:
        return label_names(self.columns)

    @classmethod
    def check_config(cls, config):
        parse_loss(config.task_config.loss)
        if config.data.views != "single":
            raise ValueError(f"the multitask task trains one image per sample; use --views single "
                             f"(got {config.data.views!r})")
        check_identity_split(config)

    @classmethod
    def needs_test_split(cls, config):
        return True

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
        self.check_identities(splits)
        unknown = sorted(set(self.task_config.adversaries) - set(self.attributes)) if isinstance(
            self.task_config.adversaries, list) else []
        if unknown:
            raise BadInputError(f"--adversaries {unknown}: not among the attributes learnt ({self.attributes})")
        self.variation = self.attribute_variation(splits["train"])
        self._adversaries = None
        resolve_loss_weights(self.task_config.loss_weights, self.attributes, self.adversary_heads)
        self._eraser = None

    # how data reaches the model
    def model_io(self, x, y):
        identity, labels = y
        inputs, target = self.identity_io(x, identity)
        targets = {ID_OUTPUT: target}
        for a in self.attributes:
            targets[a] = labels[:, self.slices[a]]
            if a in self.adversary_heads:
                targets[f"da_{a}"] = targets[a]
        return inputs, targets

    # the model
    def build_model(self):
        model, options, size = self.config.model, self.task_config, self.config.data.image_size
        if options.reversal_warmup and self.steps_per_epoch is None:
            raise ValueError("the reversal warm-up is counted in training steps: the trainer sets the task's "
                             "steps_per_epoch (kerasface.train.data.steps_per_epoch) before building the model")
        warmup = round(options.reversal_warmup * self.steps_per_epoch) if options.reversal_warmup else 0
        return build_multitask_model(
            {a: len(v) for a, v in self.columns.items()}, self.num_train_classes, backbone=model.backbone,
            input_shape=(size, size, 3), embedding_dim=options.embedding_dim, identity_head=self.head_name,
            head_kwargs=options.loss_kwargs, adversarial=bool(self.adversary_heads), adversaries=self.adversary_heads,
            reversal_lambda=options.reversal_lambda,
            reversal_warmup_steps=warmup, head_units=options.head_units, adversary_speed=options.adversary_speed,
            backbone_kwargs=model.backbone_kwargs,
            name=f"multitask_{model.backbone}")

    def eraser(self, model) -> ConceptErasure | None:
        """The LEACE eraser of the adversarial attributes, fitted on the training split's embeddings
        of ``model`` (no augmentation; once per model), or None without eraser adversaries."""
        if not self.erases:
            return None
        if getattr(self, "_eraser", None) is None or self._eraser[0] is not model:
            targets, outputs = predict_all(predictor_model(model), self.eval_pipeline(self.splits["train"]))
            layer = ConceptErasure(name="concept_erasure")
            layer.set_eraser(*fit_concept_eraser(outputs["embedding"], [targets[a] for a in self.adversaries]))
            self._eraser = (model, layer)
        return self._eraser[1]

    def inference_model(self, model):
        embedder = identity_model(model)
        eraser = self.eraser(model)
        if eraser is None:
            return embedder
        return keras.Model(embedder.input, eraser(embedder.output), name="embedding")

    def extra_models(self, model):
        return {"attributes.keras": attribute_model(model, self.attributes)}

    def loss(self):
        losses = {ID_OUTPUT: super().loss()}
        for a in self.attributes:
            losses[a] = MaskedCrossentropy(name=f"loss_{a}")
            if a in self.adversary_heads:
                losses[f"da_{a}"] = MaskedCrossentropy(name=f"loss_da_{a}")
        return losses

    def loss_weights(self):
        return resolve_loss_weights(self.task_config.loss_weights, self.attributes, self.adversary_heads)

    def metrics(self):
        metrics = {ID_OUTPUT: super().metrics()} if super().metrics() else {}
        for a, vocab in self.columns.items():
            width = attribute_outputs(len(vocab))
            kwargs = dict(multi_label=True, num_labels=width) if width > 1 else {}
            metrics[a] = [MaskedAUC(name="auc", **kwargs)]
            if a in self.adversary_heads:
                metrics[f"da_{a}"] = [MaskedAUC(name="auc", **kwargs)]
        return metrics

    def output_keys(self) -> list[str]:
        keys = [ID_OUTPUT]
        for a in self.attributes:
            keys += [a, f"da_{a}"] if a in self.adversary_heads else [a]
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
            for key in ([a, f"da_{a}"] if a in self.adversary_heads else [a]):
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
        return split_pipeline(self.config, self.spec, samples, self.target, cache=True).map(self.model_io)

    def train_pair_samples(self):
        train = self.splits["train"]
        if len(train) <= TRAIN_PAIR_IMAGES:
            return train
        rng = np.random.default_rng(self.config.seed)
        return train.subset(np.sort(rng.choice(len(train), TRAIN_PAIR_IMAGES, replace=False)))

    def evaluate(self, model, dataset):
        """The multi-task figures of the test identities, from the best checkpoint (its embedding
        through the eraser, with eraser adversaries)."""
        targets, outputs = predict_all(predictor_model(model), dataset)
        eraser = self.eraser(model)
        if eraser is not None:
            outputs["embedding"] = keras.ops.convert_to_numpy(eraser(outputs["embedding"]))
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
                "```text\n" + multitask_table(history, epochs, self.attributes, self.adversary_heads) + "\n```")
        return [{"title": "Adversaries", "text": self.adversary_reason() + "." + self.adversary_kind()},
                {"title": "Multi-task table (attributes, adversarial identity)", "text": text}]

    def layout(self) -> str:
        options = self.task_config
        identity = (f"{options.loss} head ({self.num_train_classes} identities)" if self.head_name
                    else f"{options.loss} loss")
        if not self.adversarial:
            adversary = "; no adversaries"
        elif self.erases:
            adversary = f"; embedding -> LEACE eraser of {', '.join(self.adversaries)} (fitted after training)"
        else:
            adversary = f"; adversaries on {', '.join(self.adversaries)} behind GradientReversal({options.reversal_lambda})"
        return (f"1 image -> {self.config.model.backbone} -> embedding {options.embedding_dim} -> {identity}; "
                f"pooled features -> {len(self.columns)} attribute heads ({', '.join(self.attributes)}){adversary}")
