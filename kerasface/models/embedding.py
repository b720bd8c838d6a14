"""Any registry backbone as a face-embedding model (the model a recognition head trains), and
the embedding of photometric-stereo tiles: one branch per modality panel, fused by concatenation."""

from __future__ import annotations

import inspect

import keras

from kerasface.models.backbones import create_backbone
from kerasface.models.layers import Panel
from kerasface.registry import BACKBONES

EMBEDDING_LAYER = "embedding"


def build_embedding_model(name: str, input_shape, embedding_dim: int = 512, model_name: str = EMBEDDING_LAYER,
                          **kwargs) -> keras.Model:
    """The backbone ``name`` as an embedding model named ``"embedding"``: a face backbone
    (iresnet, seresnet, mobilefacenet: its builder is marked ``embedding_output`` or takes
    ``embedding_dim``) gives its own embedding; any other gives pooled features, projected
    by Dense(embedding_dim) and BatchNormalization without scale, as insightface's heads end."""
    builder = BACKBONES.get(name)
    if getattr(builder, "embedding_output", False) or "embedding_dim" in inspect.signature(builder).parameters:
        return create_backbone(name, input_shape, model_name=model_name, embedding_dim=embedding_dim, **kwargs)
    features = create_backbone(name, input_shape, **kwargs)
    return keras.Model(features.input, _projection(features.output, embedding_dim), name=model_name)


def _projection(features, embedding_dim: int, prefix: str = "embedding"):
    x = keras.layers.Dense(embedding_dim, name=f"{prefix}_dense")(features)
    return keras.layers.BatchNormalization(scale=False, epsilon=1e-5, name=f"{prefix}_bn")(x)


def build_modality_embedding_model(name: str, panel_size: int, panels, all_panels, embedding_dim: int = 512,
                                   frozen=(), **kwargs) -> keras.Model:
    """A (panel_size, len(all_panels) * panel_size, 3) tile -> the embedding of its ``panels``
    (names from ``all_panels``, in the tile's order): panel ``k`` goes through branch
    ``branch_<k>`` (``build_embedding_model``); one branch's embedding is the model's, several
    are concatenated, then Dense(embedding_dim) and BatchNormalization without scale.
    ``frozen``: indices into ``panels`` of branches built with ``trainable=False``."""
    panels, all_panels = list(panels), list(all_panels)
    unknown = [p for p in panels if p not in all_panels]
    if unknown or not panels or len(set(panels)) != len(panels):
        raise ValueError(f"panels must be distinct names from {all_panels}, got {panels}")
    tile = keras.Input((panel_size, len(all_panels) * panel_size, 3), name="tile")
    embeddings = []
    for k, panel in enumerate(panels):
        branch = build_embedding_model(name, (panel_size, panel_size, 3), embedding_dim, model_name=f"branch_{k}",
                                       **kwargs)
        branch.trainable = k not in frozen
        view = Panel(all_panels.index(panel), len(all_panels), name=panel)(tile)
        embeddings.append(branch(view))
    if len(embeddings) == 1:
        return keras.Model(tile, embeddings[0], name=EMBEDDING_LAYER)
    fused = keras.layers.Concatenate(name="fusion_concat")(embeddings)
    return keras.Model(tile, _projection(fused, embedding_dim, "fusion"), name=EMBEDDING_LAYER)


def load_embedding_model(source, input_shape, embedding_dim: int) -> keras.Model:
    """The embedding model of ``source`` (a ``.keras`` file, e.g. from kerasface-import-model, or
    an earlier run's folder) to train further; it must take ``input_shape`` images and give
    ``embedding_dim``-d embeddings."""
    from kerasface.errors import BadInputError
    from kerasface.saving import load_model, run_model_file

    path = run_model_file(source)
    model = load_model(path, compile=False)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise BadInputError(f"{path}: {len(model.inputs)} inputs and {len(model.outputs)} outputs; an embedding "
                            "model takes one image and gives one embedding")
    if tuple(model.input_shape[1:]) != tuple(input_shape):
        raise BadInputError(f"{path}: takes {model.input_shape[1:]} images, this run {tuple(input_shape)}; pass "
                            f"--image-size {model.input_shape[1]}")
    if model.output_shape[-1] != embedding_dim:
        raise BadInputError(f"{path}: gives {model.output_shape[-1]}-d embeddings, this run {embedding_dim}-d; pass "
                            f"--embedding-dim {model.output_shape[-1]}")
    if model.name != EMBEDDING_LAYER:
        model = keras.Model(model.inputs, model.outputs, name=EMBEDDING_LAYER)
    model.trainable = True  # a model saved while frozen (--freeze-backbone-epochs) trains again
    return model


def build_margin_model(embedding_model: keras.Model, head: keras.layers.Layer, name: str | None = None) -> keras.Model:
    """``(images, labels) -> head(embedding_model(images), labels)``: the training model of a
    margin head (ArcFace and kin), whose logits go to softmax cross-entropy."""
    images = keras.Input(embedding_model.input_shape[1:], name="image")
    labels = keras.Input((), dtype="int32", name="identity")
    logits = head(embedding_model(images), labels)
    return keras.Model([images, labels], logits, name=name or f"{embedding_model.name}_{head.name}")
