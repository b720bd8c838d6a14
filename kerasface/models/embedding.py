"""Any registry backbone as a face-embedding model (the model a recognition head trains)."""

from __future__ import annotations

import inspect

import keras

from kerasface.models.backbones import create_backbone
from kerasface.registry import BACKBONES

EMBEDDING_LAYER = "embedding"


def build_embedding_model(name: str, input_shape, embedding_dim: int = 512, **kwargs) -> keras.Model:
    """The backbone ``name`` as an embedding model named ``"embedding"``: a face backbone
    (iresnet, seresnet, mobilefacenet: its builder is marked ``embedding_output`` or takes
    ``embedding_dim``) gives its own embedding; any other gives pooled features, projected
    by Dense(embedding_dim) and BatchNormalization without scale, as insightface's heads end."""
    builder = BACKBONES.get(name)
    if getattr(builder, "embedding_output", False) or "embedding_dim" in inspect.signature(builder).parameters:
        return create_backbone(name, input_shape, model_name=EMBEDDING_LAYER, embedding_dim=embedding_dim, **kwargs)
    features = create_backbone(name, input_shape, **kwargs)
    x = keras.layers.Dense(embedding_dim, name="embedding_dense")(features.output)
    x = keras.layers.BatchNormalization(scale=False, epsilon=1e-5, name="embedding_bn")(x)
    return keras.Model(features.input, x, name=EMBEDDING_LAYER)


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
