"""insightface arcface_torch's backbones as the kit's networks: which torch parameter goes to which
Keras layer, the backbone a state dict is of, and the weights copied across.

A state dict here is ``torch name -> NumPy array`` as ``module.state_dict()`` names them
(``layer1.0.conv1.weight``, ``features.running_var``). A convolution whose batch norm was folded
into it (an eval-mode ONNX export) has a ``.bias`` and no batch-norm entries; the kit's conv has
no bias, so its batch norm becomes ``x + bias`` (``identity_with_offset``).
"""

from __future__ import annotations

import dataclasses
import math
import re

import keras
import numpy as np

from kerasface.errors import BadInputError
from kerasface.models.iresnet import IRESNET_LAYERS, STAGE_CHANNELS
from kerasface.models.mobilefacenet import BOTTLENECKS, STEM_GROUPS
from kerasface.models.preprocessing import set_input_preprocessing

BACKBONES = (*IRESNET_LAYERS, "mobilefacenet")
ARCFACE_INPUT_SIZE = 112
ARCFACE_FEATURE_SIDE = 7
BN_FIELDS = ("weight", "bias", "running_mean", "running_var")


@dataclasses.dataclass(frozen=True)
class Layout:
    """A kit backbone with the options and input size that reproduce an arcface_torch network."""

    backbone: str
    input_size: int
    embedding_dim: int
    options: tuple = ()

    def build(self) -> keras.Model:
        """The kit's embedding model (random weights), recorded as insightface preprocesses:
        ``(x - 127.5) / 127.5`` RGB, stretched to the input, faces aligned to the ArcFace template."""
        from kerasface.models.embedding import build_embedding_model

        model = build_embedding_model(self.backbone, (self.input_size, self.input_size, 3),
                                      embedding_dim=self.embedding_dim, **dict(self.options))
        return set_input_preprocessing(model, resize_mode="stretch", alignment="arcface")


# --- which backbone ---------------------------------------------------------------------------


def input_size_for(feature_side: int) -> int:
    """The input side whose last feature map (four halvings, rounded up) is ``feature_side``:
    112 for arcface_torch's 7."""
    return ARCFACE_INPUT_SIZE if feature_side == ARCFACE_FEATURE_SIDE else 16 * feature_side


def _shape(state, key, source):
    if key not in state:
        raise BadInputError(f"{source}: no {key!r}; not an arcface_torch iresnet or mobilefacenet")
    return state[key].shape


def recognise(state: dict, source: str, backbone: str | None = None, input_size: int | None = None) -> Layout:
    """The kit backbone of an arcface_torch state dict, from its depth and widths; ``backbone``
    (a name the caller gave) must agree."""
    if "layer1.0.bn1.weight" in state:
        blocks = tuple(len({m.group(1) for k in state if (m := re.match(rf"layer{s}\.(\d+)\.", k))})
                       for s in range(1, 5))
        found = next((name for name, layers in IRESNET_LAYERS.items() if layers == blocks), None)
        if found is None:
            raise BadInputError(f"{source}: an iresnet with {list(blocks)} blocks per stage, which is none of "
                                + ", ".join(f"{n} {list(b)}" for n, b in IRESNET_LAYERS.items()))
        width = _shape(state, "conv1.weight", source)[0]
        out_features, in_features = _shape(state, "fc.weight", source)
        side = math.isqrt(in_features // (width * 8))
        options = (("width", int(width)),) if width != STAGE_CHANNELS[0] else ()
    elif "layers.0.layers.0.weight" in state:
        found = "mobilefacenet"
        stem = _shape(state, "layers.0.layers.0.weight", source)[0]
        out_features = _shape(state, "features.layers.2.weight", source)[0]
        side = _shape(state, "features.layers.0.layers.0.weight", source)[-1]
        options = (("scale", int(stem // STEM_GROUPS)),) if stem != STEM_GROUPS else ()
    else:
        raise BadInputError(f"{source}: neither an arcface_torch iresnet (layer1.0.bn1.weight) nor a "
                            "mobilefacenet (layers.0.layers.0.weight)")
    if backbone is not None and backbone != found:
        raise BadInputError(f"{source}: holds a {found}, not the {backbone} asked for (--backbone)")
    return Layout(found, input_size or input_size_for(int(side)), int(out_features), options)


# --- torch names of each kit layer -----------------------------------------------------------


def _conv_bn(torch_conv, torch_bn, keras_conv, keras_bn):
    return ("conv_bn", torch_conv, torch_bn, keras_conv, keras_bn)


def iresnet_units(model: keras.Model) -> list[tuple]:
    """(kind, torch names..., Keras layer names...) of every weighted layer of a kit iresnet."""
    units = [_conv_bn("conv1", "bn1", "stem_conv", "stem_bn"), ("prelu", "prelu", "stem_act")]
    names = {layer.name for layer in model.layers}
    for stage in range(1, 5):
        block = 0
        while f"stage{stage}_block{block}_bn1" in names:
            torch, kit = f"layer{stage}.{block}", f"stage{stage}_block{block}"
            units += [("bn", f"{torch}.bn1", f"{kit}_bn1"),
                      _conv_bn(f"{torch}.conv1", f"{torch}.bn2", f"{kit}_conv1", f"{kit}_bn2"),
                      ("prelu", f"{torch}.prelu", f"{kit}_act"),
                      _conv_bn(f"{torch}.conv2", f"{torch}.bn3", f"{kit}_conv2", f"{kit}_bn3")]
            if f"{kit}_downsample_conv" in names:
                units.append(_conv_bn(f"{torch}.downsample.0", f"{torch}.downsample.1",
                                      f"{kit}_downsample_conv", f"{kit}_downsample_bn"))
            block += 1
    return units + [("bn", "bn2", "head_bn"), ("linear", "fc", "fc"), ("bn", "features", "embedding")]


def _conv_block(torch, kit, activation=True):
    units = [_conv_bn(f"{torch}.layers.0", f"{torch}.layers.1", f"{kit}_conv", f"{kit}_bn")]
    return units + ([("prelu", f"{torch}.layers.2", f"{kit}_act")] if activation else [])


def mobilefacenet_blocks() -> list[tuple[str, str]]:
    """(torch module, kit block) of each inverted residual, in order: a stride-2 (or widening)
    block is a ``DepthWise`` at ``layers.N``, the repeats after it a ``Residual`` at ``layers.N+1``."""
    blocks, module = [], 2
    for stage, (_, _, repeats, _) in enumerate(BOTTLENECKS, start=1):
        for block in range(repeats):
            if block == 0 and stage in (1, 2, 4):
                blocks.append((f"layers.{module}", f"stage{stage}_block{block}"))
                module += 1
                continue
            first = 1 if stage == 1 else 0
            blocks.append((f"layers.{module}.layers.{block - first}", f"stage{stage}_block{block}"))
        if stage in (1, 3, 5):
            module += 1
    return blocks


def mobilefacenet_units(model: keras.Model) -> list[tuple]:
    units = _conv_block("layers.0", "stem") + _conv_block("layers.1", "stem_depthwise")
    for torch, kit in mobilefacenet_blocks():
        units += (_conv_block(f"{torch}.layers.0", f"{kit}_expand")
                  + _conv_block(f"{torch}.layers.1", f"{kit}_depthwise")
                  + [_conv_bn(f"{torch}.layers.2.layers.0", f"{torch}.layers.2.layers.1",
                              f"{kit}_project_conv", f"{kit}_project_bn")])
    return units + _conv_block("conv_sep", "conv_sep") + [
        _conv_bn("features.layers.0.layers.0", "features.layers.0.layers.1", "gdc_conv", "gdc_bn"),
        ("linear", "features.layers.2", "fc"), ("bn", "features.layers.3", "embedding")]


# --- copying the weights ---------------------------------------------------------------------


def identity_with_offset(offset: np.ndarray, epsilon: float) -> list[np.ndarray]:
    """Batch-norm weights (gamma, beta, mean, variance) computing exactly ``x + offset`` in
    float32: the variance is the float32 below 1 whose sum with ``epsilon`` rounds to 1."""
    variance, eps = np.float32(1.0 - epsilon), np.float32(epsilon)
    while variance + eps > np.float32(1.0):
        variance = np.nextafter(variance, np.float32(0.0))
    while variance + eps < np.float32(1.0):
        variance = np.nextafter(variance, np.float32(2.0))
    channels = offset.shape[0]
    return [np.ones(channels), offset, np.zeros(channels), np.full(channels, variance)]


class _Source:
    """A state dict whose entries are taken one by one, every mismatch named."""

    def __init__(self, state: dict, source: str, origin: dict | None = None):
        self.state, self.source, self.origin = dict(state), source, origin or {}
        self.missing: list[str] = []

    def where(self, key):
        node = self.origin.get(key)
        return f"{key} (node {node!r})" if node else key

    def has(self, prefix: str) -> bool:
        return any(k.startswith(prefix + ".") for k in self.state)

    def take(self, key: str, shape=None) -> np.ndarray | None:
        if key not in self.state:
            self.missing.append(key)
            return None
        value = np.asarray(self.state.pop(key), np.float64)
        if shape is not None and value.size == int(np.prod(shape)) and value.shape != tuple(shape):
            value = value.reshape(shape)
        if shape is not None and value.shape != tuple(shape):
            raise BadInputError(f"{self.source}: {self.where(key)} has shape {value.shape}, the kit's "
                                f"layer needs {tuple(shape)}")
        return value

    def finish(self) -> None:
        if self.missing:
            raise BadInputError(f"{self.source}: missing {len(self.missing)} entries: "
                                + ", ".join(self.missing[:6]) + (" ..." if len(self.missing) > 6 else ""))
        extra = [k for k in self.state if not k.endswith("num_batches_tracked")]
        if extra:
            raise BadInputError(f"{self.source}: {len(extra)} entries map to no layer of the kit's network: "
                                + ", ".join(self.where(k) for k in extra[:6]) + (" ..." if len(extra) > 6 else ""))


def _kernel(torch_kernel: np.ndarray, layer) -> np.ndarray:
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return torch_kernel.transpose(2, 3, 0, 1)
    return torch_kernel.transpose(2, 3, 1, 0)


def _torch_kernel_shape(layer) -> tuple:
    kh, kw, a, b = layer.kernel.shape
    return (a, b, kh, kw) if isinstance(layer, keras.layers.DepthwiseConv2D) else (b, a, kh, kw)


def _batch_norm(src: _Source, prefix: str, layer) -> list[np.ndarray] | None:
    channels = layer.moving_mean.shape[0]
    gamma, beta, mean, variance = (src.take(f"{prefix}.{field}", (channels,)) for field in BN_FIELDS)
    if any(v is None for v in (gamma, beta, mean, variance)):
        return None
    if layer.gamma is None:
        # a batch norm with a fixed scale of 1: a positive scale moves into the variance
        if np.any(gamma <= 0):
            raise BadInputError(f"{src.source}: {src.where(prefix + '.weight')} has non-positive values; the "
                                f"kit's {layer.name} has a fixed scale of 1")
        variance = (variance + layer.epsilon) / gamma**2 - layer.epsilon
        return [beta, mean, variance]
    return [gamma, beta, mean, variance]


def _assign(layer, values) -> None:
    layer.set_weights([np.asarray(v, dtype=w.dtype) for v, w in zip(values, layer.get_weights())])


def copy_weights(model: keras.Model, units: list[tuple], src: _Source) -> None:
    assignments = []
    for kind, *names in units:
        if kind == "conv_bn":
            torch_conv, torch_bn, keras_conv, keras_bn = names
            conv, bn = model.get_layer(keras_conv), model.get_layer(keras_bn)
            kernel = src.take(f"{torch_conv}.weight", _torch_kernel_shape(conv))
            if f"{torch_conv}.bias" in src.state and not src.has(torch_bn):
                bias = src.take(f"{torch_conv}.bias", bn.moving_mean.shape)
                bn_values = None if bias is None else identity_with_offset(bias, bn.epsilon)
            else:
                bn_values = _batch_norm(src, torch_bn, bn)
            if kernel is not None:
                assignments.append((conv, [_kernel(kernel, conv)]))
            if bn_values is not None:
                assignments.append((bn, bn_values))
        elif kind == "bn":
            layer = model.get_layer(names[1])
            values = _batch_norm(src, names[0], layer)
            if values is not None:
                assignments.append((layer, values))
        elif kind == "prelu":
            layer = model.get_layer(names[1])
            channels = layer.alpha.shape[-1]
            alpha = src.take(f"{names[0]}.weight")
            if alpha is not None:
                if alpha.size == 1:
                    alpha = np.full(channels, alpha.item())
                if alpha.size != channels:
                    raise BadInputError(f"{src.source}: {src.where(names[0] + '.weight')} has {alpha.size} "
                                        f"slopes, the kit's {layer.name} needs {channels}")
                assignments.append((layer, [alpha.reshape(layer.alpha.shape)]))
        else:
            layer = model.get_layer(names[1])
            units_in, units_out = layer.kernel.shape
            values = [src.take(f"{names[0]}.weight", (units_out, units_in))]
            if layer.use_bias:
                values.append(src.take(f"{names[0]}.bias", (units_out,)))
            if all(v is not None for v in values):
                assignments.append((layer, [_dense_kernel(values[0], model), *values[1:]]))
    src.finish()
    for layer, values in assignments:
        _assign(layer, values)


def _dense_kernel(weight: np.ndarray, model: keras.Model) -> np.ndarray:
    """torch flattens the last feature map (C, H, W), Keras (H, W, C): the rows are reordered."""
    flatten = model.get_layer("flatten")
    height, width, channels = flatten.input.shape[1:]
    out = weight.shape[0]
    return weight.reshape(out, channels, height, width).transpose(2, 3, 1, 0).reshape(-1, out)


def units_for(layout: Layout, model: keras.Model) -> list[tuple]:
    return mobilefacenet_units(model) if layout.backbone == "mobilefacenet" else iresnet_units(model)


def import_state_dict(state: dict, source: str, backbone: str | None = None, input_size: int | None = None,
                      origin: dict | None = None) -> tuple[keras.Model, Layout]:
    """The kit's embedding model holding the weights of an arcface_torch state dict, and its
    layout (``origin``: the ONNX node each entry came from, for the error messages)."""
    layout = recognise(state, source, backbone, input_size)
    model = layout.build()
    copy_weights(model, units_for(layout, model), _Source(state, source, origin))
    return model, layout
