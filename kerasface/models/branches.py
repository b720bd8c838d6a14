"""Multi-branch models: one backbone per input view, merged by a head from ``HEADS``.

    model = build_branch_model("densenet121", num_branches=3, head="concat", num_outputs=10)

Branch ``i`` is the backbone sub-model ``branch_<i>``; with ``shared_weights`` a single sub-model
``branch_0`` is applied to every input.
"""

from __future__ import annotations

import os
import re

import keras

import kerasface.models.heads  # noqa: F401  (registers the heads)
from kerasface.models.backbones import create_backbone
from kerasface.saving import load_model
from kerasface.registry import HEADS

BRANCH_NAME = re.compile(r"branch_(\d+)")


def _branch_indices(indices, num_branches: int, what: str) -> list[int]:
    indices = [int(i) for i in indices]
    bad = [i for i in indices if not 0 <= i < num_branches]
    if bad:
        raise ValueError(
            f"{what}: branch indices {bad} are out of range for {num_branches} branches"
        )
    return indices


def _check_shared_subset(indices, num_branches: int, what: str) -> None:
    if indices and len(set(indices)) != num_branches:
        raise ValueError(
            f"{what}: the branches share one backbone (shared_weights=True), so freeze or "
            f"unfreeze all {num_branches} of them or none, not {sorted(set(indices))}"
        )


def build_branch_model(
    backbone: str,
    num_branches: int = 3,
    head: str = "concat",
    num_outputs: int = 10,
    input_shape=(64, 64, 3),
    output_activation="sigmoid",
    shared_weights: bool = False,
    hidden_units: int = 256,
    vote: str = "mean",
    embedding_dim: int = 128,
    frozen_branches=(),
    backbone_kwargs: dict | None = None,
    input_names=None,
    name: str | None = None,
) -> keras.Model:
    """``num_branches`` images (RGB in [0, 255], inputs ``view_<i>`` or ``input_names``) ->
    backbone ``backbone`` (``create_backbone`` with ``backbone_kwargs``) per image -> ``head``.

    The backbones must give feature vectors (``pooling="avg"`` or ``include_top=True``).
    ``frozen_branches`` are built with ``trainable=False``."""
    if num_branches < 1:
        raise ValueError(f"num_branches must be >= 1, got {num_branches}")
    input_names = list(input_names or [f"view_{i}" for i in range(num_branches)])
    if len(input_names) != num_branches:
        raise ValueError(f"input_names {input_names} must name {num_branches} inputs")
    HEADS.get(head)
    frozen = _branch_indices(frozen_branches, num_branches, "frozen_branches")
    if shared_weights:
        _check_shared_subset(frozen, num_branches, "frozen_branches")
    backbone_kwargs = dict(backbone_kwargs or {})
    backbone_kwargs.pop("model_name", None)

    def make_branch(index):
        return create_backbone(
            backbone, tuple(input_shape), model_name=f"branch_{index}", **backbone_kwargs
        )

    if shared_weights:
        branches = [make_branch(0)] * num_branches
    else:
        branches = [make_branch(i) for i in range(num_branches)]
    for i in frozen:
        branches[i].trainable = False

    inputs = [keras.Input(shape=tuple(input_shape), name=n) for n in input_names]
    features = [branch(image) for branch, image in zip(branches, inputs)]
    if len(features[0].shape) != 2:
        raise ValueError(
            f"backbone {backbone!r} gives outputs of shape {features[0].shape}; a head needs "
            "feature vectors: use pooling='avg' or include_top=True in backbone_kwargs"
        )
    outputs = HEADS.create(
        head,
        features,
        num_outputs=num_outputs,
        output_activation=output_activation,
        hidden_units=hidden_units,
        vote=vote,
        embedding_dim=embedding_dim,
    )
    return keras.Model(
        inputs if num_branches > 1 else inputs[0],
        outputs,
        name=name or f"{backbone}_x{num_branches}_{head}",
    )


def branch_models(model: keras.Model) -> list[keras.Model]:
    """The backbone sub-model of each input, in input order (the same object for every input
    when the branches share weights)."""
    found = {}
    for layer in model.layers:
        match = BRANCH_NAME.fullmatch(layer.name)
        if match:
            found[int(match.group(1))] = layer
    if not found:
        raise ValueError(f"model {model.name!r} has no branch_<i> sub-models")
    num_inputs = len(model.inputs)
    if len(found) == 1 and num_inputs > 1:
        return [found[0]] * num_inputs
    missing = sorted(set(range(len(found))) - set(found))
    if missing:
        raise ValueError(f"model {model.name!r} lacks branch sub-models {missing}")
    return [found[i] for i in range(len(found))]


def set_branch_trainable(model: keras.Model, indices, trainable: bool) -> None:
    """Freeze (``trainable=False``) or unfreeze branches ``indices``; compile the model again
    afterwards for the change to reach training."""
    branches = branch_models(model)
    indices = _branch_indices(indices, len(branches), "set_branch_trainable")
    if len({id(b) for b in branches}) == 1 and len(branches) > 1:
        _check_shared_subset(indices, len(branches), "set_branch_trainable")
    for i in indices:
        branches[i].trainable = trainable


def init_branches_from(model: keras.Model, source, indices=None) -> list[int]:
    """Copy the weights of a trained single-branch run into branches ``indices`` (default all).

    ``source``: a ``.keras`` file path, a model with a ``branch_0`` sub-model, or a bare backbone
    built the same way. Returns the indices written."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"init_branches_from: {path!r} does not exist")
        source = load_model(path, compile=False)
        source_label = path
    else:
        source_label = f"model {source.name!r}"
    try:
        donor = source.get_layer("branch_0")
    except ValueError:
        donor = source
    branches = branch_models(model)
    indices = (
        list(range(len(branches)))
        if indices is None
        else _branch_indices(indices, len(branches), "init_branches_from")
    )
    for i in indices:
        target = branches[i]
        if len(target.weights) != len(donor.weights):
            raise ValueError(
                f"init_branches_from: {source_label} has {len(donor.weights)} weights, "
                f"branch_{i} of {model.name!r} has {len(target.weights)}; "
                "they are not the same backbone"
            )
        for target_var, donor_var in zip(target.weights, donor.weights):
            if tuple(target_var.shape) != tuple(donor_var.shape):
                raise ValueError(
                    f"init_branches_from: weight {donor_var.path} of {source_label} has shape "
                    f"{tuple(donor_var.shape)} but {target_var.path} of branch_{i} has shape "
                    f"{tuple(target_var.shape)}"
                )
        for target_var, donor_var in zip(target.weights, donor.weights):
            target_var.assign(donor_var.value)
    return indices
