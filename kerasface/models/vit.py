"""Vision Transformer after lucidrains' vit-pytorch ``ViT``
(Dosovitskiy et al., 2021, arXiv:2010.11929)."""

from __future__ import annotations

import keras
from keras import layers, ops

from kerasface.models.layers import ImagePreprocessing

LAYER_NORM_EPSILON = 1e-5  # torch.nn.LayerNorm's default


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


@keras.saving.register_keras_serializable(package="kerasface")
class PatchExtract(layers.Layer):
    """``(B, H, W, C) -> (B, (H/ph)(W/pw), ph*pw*C)``: patches in row-major order, each flattened
    as ``(p1 p2 c)`` like einops ``'b (h p1) (w p2) c -> b (h w) (p1 p2 c)'``. No weights."""

    def __init__(self, patch_size, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = _pair(patch_size)

    def _grid(self, input_shape):
        _, height, width, channels = input_shape
        patch_height, patch_width = self.patch_size
        if height % patch_height or width % patch_width:
            raise ValueError(
                f"image size {height}x{width} is not divisible by patch size "
                f"{patch_height}x{patch_width}"
            )
        return height // patch_height, width // patch_width, channels

    def call(self, images):
        rows, cols, channels = self._grid(images.shape)
        patch_height, patch_width = self.patch_size
        x = ops.reshape(images, (-1, rows, patch_height, cols, patch_width, channels))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, rows * cols, patch_height * patch_width * channels))

    def compute_output_shape(self, input_shape):
        rows, cols, channels = self._grid(input_shape)
        return (input_shape[0], rows * cols, self.patch_size[0] * self.patch_size[1] * channels)

    def get_config(self):
        return {**super().get_config(), "patch_size": list(self.patch_size)}


@keras.saving.register_keras_serializable(package="kerasface")
class ClassToken(layers.Layer):
    """Prepends one learned token (``dim`` weights) to a ``(B, N, dim)`` sequence; init N(0, 1)."""

    def build(self, input_shape):
        self.token = self.add_weight(
            shape=(1, 1, input_shape[-1]),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="token",
        )

    def call(self, tokens):
        cls = ops.zeros_like(tokens[:, :1, :]) + ops.cast(self.token, tokens.dtype)
        return ops.concatenate([cls, tokens], axis=1)

    def compute_output_shape(self, input_shape):
        length = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], length, input_shape[2])


@keras.saving.register_keras_serializable(package="kerasface")
class ClassTokenPool(layers.Layer):
    """``(B, N, dim) -> (B, dim)``: the first (class) token. No weights."""

    def call(self, tokens):
        return tokens[:, 0, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="kerasface")
class PositionEmbedding(layers.Layer):
    """Adds a learned ``(1, N, dim)`` position embedding (``N * dim`` weights); init N(0, 1)."""

    def build(self, input_shape):
        self.embedding = self.add_weight(
            shape=(1, input_shape[1], input_shape[2]),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="embedding",
        )

    def call(self, tokens):
        return tokens + ops.cast(self.embedding, tokens.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="kerasface")
class MultiHeadSelfAttention(layers.Layer):
    """vit-pytorch ``Attention`` without its pre-norm:
    ``softmax(q k^T / sqrt(dim_head)) v`` per head, ``q, k, v = x W_qkv`` (no bias),
    then ``Dense(dim)`` + dropout unless ``heads == 1 and dim_head == dim``.
    Weights: ``3 dim inner + (inner dim + dim)``, ``inner = heads * dim_head``."""

    def __init__(self, heads: int, dim_head: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.heads = heads
        self.dim_head = dim_head
        self.dropout = dropout
        self.attention_dropout = layers.Dropout(dropout)
        self.output_dropout = layers.Dropout(dropout)

    def build(self, input_shape):
        dim = input_shape[-1]
        inner_dim = self.heads * self.dim_head
        # sub-layers made here (their width needs dim) take the frozen state the layer has now,
        # as when a frozen model is loaded
        self.to_qkv = layers.Dense(3 * inner_dim, use_bias=False, name="to_qkv", trainable=self.trainable)
        self.to_qkv.build(input_shape)
        self.project_out = not (self.heads == 1 and self.dim_head == dim)
        if self.project_out:
            self.to_out = layers.Dense(dim, name="to_out", trainable=self.trainable)
            self.to_out.build((*input_shape[:-1], inner_dim))

    def _split_heads(self, x, length):
        x = ops.reshape(x, (-1, length, self.heads, self.dim_head))
        return ops.transpose(x, (0, 2, 1, 3))

    def call(self, tokens, training=None):
        length = tokens.shape[1]
        query, key, value = ops.split(self.to_qkv(tokens), 3, axis=-1)
        query, key, value = (self._split_heads(t, length) for t in (query, key, value))
        scores = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2))) * (self.dim_head**-0.5)
        weights = self.attention_dropout(ops.softmax(scores, axis=-1), training=training)
        out = ops.transpose(ops.matmul(weights, value), (0, 2, 1, 3))
        out = ops.reshape(out, (-1, length, self.heads * self.dim_head))
        if self.project_out:
            out = self.output_dropout(self.to_out(out), training=training)
        return out

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "heads": self.heads,
            "dim_head": self.dim_head,
            "dropout": self.dropout,
        }


def build_vit(
    input_shape,
    patch_size=32,
    dim=1024,
    depth=6,
    heads=16,
    mlp_dim=2048,
    dropout=0.1,
    emb_dropout=0.1,
    dim_head=64,
    num_classes=None,
    pool="cls",
    name="vit",
    classifier_activation=None,
    preprocessing=None,
) -> keras.Model:
    """vit-pytorch ``ViT`` as a functional Keras model on ``(H, W, C)`` channels-last images.

    patches (LayerNorm(P), Dense(dim), LayerNorm(dim)) -> [class token if pool="cls"] ->
    + position embedding -> dropout -> depth x (x + Attn(LN(x)), x + MLP(LN(x))) -> LayerNorm ->
    class token (pool="cls") or token mean (pool="mean") -> [Dense(num_classes)].
    ``preprocessing`` (an ``ImagePreprocessing`` mode) puts that weight-free layer first.

    With ``P = ph*pw*C``, ``N = (H/ph)(W/pw)``, ``T = N + [pool == "cls"]``, ``I = heads*dim_head``,
    ``o = 1`` unless ``heads == 1 and dim_head == dim``, ``K = num_classes or 0``, parameters are::

        2P + (P*dim + dim) + 2dim                         patch embedding
        + [pool == "cls"]*dim + T*dim                     class token, position embedding
        + depth * (2dim + 3*dim*I + o*(I*dim + dim)       attention
                   + 2dim + (dim*mlp_dim + mlp_dim) + (mlp_dim*dim + dim))   MLP
        + 2dim + (dim*K + K)                              final LayerNorm, classifier

    The research seed (224x224, patch 32, dim 1024, depth 6, 16 heads, mlp 2048, 1000 classes)
    has 54,615,016 parameters.
    """
    if pool not in ("cls", "mean"):
        raise ValueError(f"ViT pool must be 'cls' or 'mean', got {pool!r}")
    images = keras.Input(shape=tuple(input_shape), name="images")
    x = images
    if preprocessing is not None:
        x = ImagePreprocessing(preprocessing, name="preprocessing")(x)
    x = PatchExtract(patch_size, name="patches")(x)
    x = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="patch_norm")(x)
    x = layers.Dense(dim, name="patch_embedding")(x)
    x = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="embedding_norm")(x)
    if pool == "cls":
        x = ClassToken(name="class_token")(x)
    x = PositionEmbedding(name="position_embedding")(x)
    x = layers.Dropout(emb_dropout, name="embedding_dropout")(x)
    for block in range(depth):
        prefix = f"block{block}_"
        y = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=prefix + "attention_norm")(x)
        y = MultiHeadSelfAttention(heads, dim_head, dropout, name=prefix + "attention")(y)
        x = layers.Add(name=prefix + "attention_residual")([x, y])
        y = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=prefix + "mlp_norm")(x)
        y = layers.Dense(mlp_dim, activation="gelu", name=prefix + "mlp_dense1")(y)
        y = layers.Dropout(dropout, name=prefix + "mlp_dropout1")(y)
        y = layers.Dense(dim, name=prefix + "mlp_dense2")(y)
        y = layers.Dropout(dropout, name=prefix + "mlp_dropout2")(y)
        x = layers.Add(name=prefix + "mlp_residual")([x, y])
    x = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="final_norm")(x)
    if pool == "cls":
        x = ClassTokenPool(name="cls_pool")(x)
    else:
        x = layers.GlobalAveragePooling1D(name="mean_pool")(x)
    if num_classes:
        x = layers.Dense(num_classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(images, x, name=name)
