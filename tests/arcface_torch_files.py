"""arcface_torch files written without torch, for the import tests: random state dicts under
torch's names, their eval-mode ONNX export (conv batch norms folded, PRelu slopes (C, 1, 1),
Gemm, a final BatchNormalization) and ``torch.save``'s zip format."""

from __future__ import annotations

import collections
import contextlib
import io
import pickle
import sys
import types
import zipfile

import numpy as np
import onnx
from onnx import helper, numpy_helper

EPS = 1e-5


class StateDict:
    """Random weights of an arcface_torch module, filled in forward order."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.values = collections.OrderedDict()

    def conv(self, name, out_c, in_c, k, groups=1):
        fan_in = in_c // groups * k * k
        self.values[f"{name}.weight"] = self.rng.normal(0, 0.7 / np.sqrt(fan_in), (out_c, in_c // groups, k, k))

    def bn(self, name, c, scale=True):
        v = self.values
        v[f"{name}.weight"] = self.rng.uniform(0.5, 1.0, c) if scale else np.ones(c)
        v[f"{name}.bias"] = self.rng.normal(0, 0.1, c)
        v[f"{name}.running_mean"] = self.rng.normal(0, 0.1, c)
        v[f"{name}.running_var"] = self.rng.uniform(0.5, 1.5, c)
        v[f"{name}.num_batches_tracked"] = np.array(1000, np.int64)

    def prelu(self, name, c):
        self.values[f"{name}.weight"] = self.rng.uniform(0.1, 0.4, c)

    def linear(self, name, out_f, in_f, bias=True):
        self.values[f"{name}.weight"] = self.rng.normal(0, 1 / np.sqrt(in_f), (out_f, in_f))
        if bias:
            self.values[f"{name}.bias"] = self.rng.normal(0, 0.1, out_f)


class Graph:
    """An ONNX graph in torch's eval-mode export of a state dict."""

    def __init__(self, state, size):
        self.state, self.nodes, self.inits, self.n = state, [], [], 0
        self.input = helper.make_tensor_value_info("data", onnx.TensorProto.FLOAT, ["None", 3, size, size])

    def const(self, value):
        name = f"onnx::{self.n}"
        self.n += 1
        self.inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def node(self, op, inputs, **attrs):
        out = f"{op}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv_bn(self, x, conv, bn, stride=1, groups=1, pad=None):
        w = self.state[f"{conv}.weight"]
        scale = self.state[f"{bn}.weight"] / np.sqrt(self.state[f"{bn}.running_var"] + EPS)
        bias = self.state[f"{bn}.bias"] - self.state[f"{bn}.running_mean"] * scale
        k = w.shape[-1]
        pad = k // 2 if pad is None else pad
        return self.node("Conv", [x, self.const(w * scale[:, None, None, None]), self.const(bias)],
                         kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=groups,
                         dilations=[1, 1])

    def bn(self, x, name):
        s = self.state
        return self.node("BatchNormalization", [x] + [self.const(s[f"{name}.{f}"]) for f in
                                                      ("weight", "bias", "running_mean", "running_var")],
                         epsilon=EPS)

    def prelu(self, x, name):
        return self.node("PRelu", [x, self.const(self.state[f"{name}.weight"].reshape(-1, 1, 1))])

    def head(self, x, fc, features, bias=True):
        x = self.node("Flatten", [x], axis=1)
        if bias:
            x = self.node("Gemm", [x, self.const(self.state[f"{fc}.weight"]), self.const(self.state[f"{fc}.bias"])],
                          alpha=1.0, beta=1.0, transB=1)
        else:
            x = self.node("MatMul", [x, self.const(self.state[f"{fc}.weight"].T)])
        return self.bn(x, features)

    def save(self, out, path):
        output = helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, ["None", None])
        graph = helper.make_graph(self.nodes, "arcface", [self.input], [output], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], ir_version=7)
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
        return path


def iresnet(blocks=(2, 2, 2, 2), width=8, size=32, dim=16, seed=0):
    """(state dict, a function writing its ONNX export) of an arcface_torch IResNet."""
    s = StateDict(seed)
    s.conv("conv1", width, 3, 3), s.bn("bn1", width), s.prelu("prelu", width)
    inplanes = width
    for stage, n in enumerate(blocks, start=1):
        planes = width * 2 ** (stage - 1)
        for b in range(n):
            p = f"layer{stage}.{b}"
            s.bn(f"{p}.bn1", inplanes), s.conv(f"{p}.conv1", planes, inplanes, 3), s.bn(f"{p}.bn2", planes)
            s.prelu(f"{p}.prelu", planes), s.conv(f"{p}.conv2", planes, planes, 3), s.bn(f"{p}.bn3", planes)
            if b == 0:
                s.conv(f"{p}.downsample.0", planes, inplanes, 1), s.bn(f"{p}.downsample.1", planes)
            inplanes = planes
    side = size
    for _ in range(4):
        side = (side + 1) // 2
    s.bn("bn2", inplanes), s.linear("fc", dim, inplanes * side * side), s.bn("features", dim, scale=False)
    state = s.values

    def write_onnx(path):
        g = Graph(state, size)
        x = g.prelu(g.conv_bn("data", "conv1", "bn1"), "prelu")
        for stage, n in enumerate(blocks, start=1):
            for b in range(n):
                p = f"layer{stage}.{b}"
                y = g.conv_bn(g.bn(x, f"{p}.bn1"), f"{p}.conv1", f"{p}.bn2")
                y = g.conv_bn(g.prelu(y, f"{p}.prelu"), f"{p}.conv2", f"{p}.bn3", stride=2 if b == 0 else 1)
                shortcut = g.conv_bn(x, f"{p}.downsample.0", f"{p}.downsample.1", stride=2) if b == 0 else x
                x = g.node("Add", [y, shortcut])
        return g.save(g.head(g.bn(x, "bn2"), "fc", "features"), path)

    return state, write_onnx


# DepthWise modules of arcface_torch's MobileFaceNet: (index, residual repeats, in/out at scale 1, expanded)
MBF_STAGES = ((2, 4, 64, 64, 128), (4, 6, 64, 128, 256), (6, 2, 128, 128, 512))


def mobilefacenet(scale=2, size=32, dim=16, seed=0):
    """(state dict, ONNX writer) of arcface_torch's MobileFaceNet (blocks (1, 4, 6, 2))."""
    s = StateDict(seed)

    def conv_block(name, i, o, k, groups=1, act=True):
        s.conv(f"{name}.layers.0", o, i, k, groups), s.bn(f"{name}.layers.1", o)
        if act:
            s.prelu(f"{name}.layers.2", o)

    def depthwise(name, i, o, expanded):
        conv_block(f"{name}.layers.0", i, expanded, 1)
        conv_block(f"{name}.layers.1", expanded, expanded, 3, groups=expanded)
        conv_block(f"{name}.layers.2", expanded, o, 1, act=False)

    residual_expanded = {2: 128, 4: 256, 6: 256}
    conv_block("layers.0", 3, 64 * scale, 3)
    conv_block("layers.1", 64 * scale, 64 * scale, 3, groups=64)
    for index, repeats, c_in, c_out, expanded in MBF_STAGES:
        depthwise(f"layers.{index}", c_in * scale, c_out * scale, expanded)
        for r in range(repeats):
            depthwise(f"layers.{index + 1}.layers.{r}", c_out * scale, c_out * scale, residual_expanded[index])
    side = size
    for _ in range(4):
        side = (side + 1) // 2
    conv_block("conv_sep", 128 * scale, 512, 1)
    conv_block("features.layers.0", 512, 512, side, groups=512, act=False)
    s.linear("features.layers.2", dim, 512, bias=False), s.bn("features.layers.3", dim)
    state = s.values

    def write_onnx(path):
        g = Graph(state, size)

        def block(x, name, stride=1, groups=1, act=True, pad=None):
            x = g.conv_bn(x, f"{name}.layers.0", f"{name}.layers.1", stride, groups, pad)
            return g.prelu(x, f"{name}.layers.2") if act else x

        def dw(x, name, stride):
            expanded = state[f"{name}.layers.0.layers.0.weight"].shape[0]
            y = block(x, f"{name}.layers.0")
            y = block(y, f"{name}.layers.1", stride, groups=expanded)
            return block(y, f"{name}.layers.2", act=False)

        x = block("data", "layers.0", stride=2)
        x = block(x, "layers.1", groups=64)
        for index, repeats, *_ in MBF_STAGES:
            x = dw(x, f"layers.{index}", 2)
            for r in range(repeats):
                x = g.node("Add", [dw(x, f"layers.{index + 1}.layers.{r}", 1), x])
        x = block(x, "conv_sep")
        x = block(x, "features.layers.0", groups=512, act=False, pad=0)
        return g.save(g.head(x, "features.layers.2", "features.layers.3", bias=False), path)

    return state, write_onnx


# --- torch.save's zip format ---------------------------------------------------------------------


@contextlib.contextmanager
def fake_torch():
    """Modules named ``torch`` and ``torch._utils`` holding stand-ins for the globals a state dict
    pickle names, so that pickle writes those names; removed afterwards."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    for name in ("FloatStorage", "DoubleStorage", "LongStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        yield torch
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _Tensor:
    def __init__(self, torch, array, key):
        self.torch, self.array, self.key = torch, array, key

    def __reduce__(self):
        storage = _Storage(self.torch, self.array, self.key)
        shape = self.array.shape
        stride = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
        return self.torch._utils._rebuild_tensor_v2, (storage, 0, shape, stride, False, collections.OrderedDict())


class _Storage:
    def __init__(self, torch, array, key):
        self.torch, self.array, self.key = torch, array, key


STORAGE_OF = {"float32": "FloatStorage", "float64": "DoubleStorage", "int64": "LongStorage"}


def write_state_dict(state, path, name="model", dtype="float32"):
    """``torch.save(state, path)`` as torch >= 1.6 writes it (little-endian, ``name/`` folder)."""
    blobs = {}
    with fake_torch() as torch:
        tensors = collections.OrderedDict()
        for i, (key, value) in enumerate(state.items()):
            array = np.ascontiguousarray(value, dtype=np.int64 if value.dtype.kind == "i" else dtype)
            tensors[key] = _Tensor(torch, array, str(i))

        class Pickler(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, _Storage):
                    blobs[obj.key] = obj.array.tobytes()
                    kind = getattr(torch, STORAGE_OF[str(obj.array.dtype)])
                    return ("storage", kind, obj.key, "cpu", obj.array.size)
                return None

        buffer = io.BytesIO()
        Pickler(buffer, protocol=2).dump(tensors)
    write_archive(path, name, buffer.getvalue(), blobs)
    return path


def write_archive(path, name, pickled: bytes, blobs: dict) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}/data.pkl", pickled)
        z.writestr(f"{name}/byteorder", "little")
        for key, data in blobs.items():
            z.writestr(f"{name}/data/{key}", data)
        z.writestr(f"{name}/version", "3\n")
