"""An arcface_torch ONNX graph (``torch2onnx.py``, the insightface model zoo) read back into the
state dict of the torch module it was exported from.

The graph is followed from its input along the data flow, block by block; each Conv, PRelu,
BatchNormalization and Gemm/MatMul gets the torch name it had. Batch norms folded into a
convolution stay folded (the conv's ``.bias``). A node that has no place in an arcface_torch
iresnet or MobileFaceNet is refused by name.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np

from kerasface.errors import BadInputError
from kerasface.models.iresnet import BN_EPSILON

# nodes that only compute shapes (x.view(x.size(0), -1) exports Shape -> Gather -> ... -> Reshape)
SHAPE_OPS = {"Shape", "Gather", "Unsqueeze", "Concat", "Constant", "Cast", "Slice", "Squeeze"}
PASS_THROUGH = {"Identity", "Dropout"}
FLATTEN_OPS = {"Flatten", "Reshape"}


def require_onnx():
    try:
        import onnx
    except ImportError:
        raise RuntimeError("reading ONNX files needs the onnx package: pip install 'kerasface[interop]'") from None
    return onnx


class OnnxGraph:
    """The nodes, constant tensors and data flow of an ONNX file."""

    def __init__(self, path):
        onnx = require_onnx()
        from onnx import numpy_helper

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such file")
        try:
            model = onnx.load(str(self.path))
        except Exception as error:  # the protobuf parser raises its own DecodeError
            raise BadInputError(f"{self.path}: not an ONNX model ({type(error).__name__}: {error})") from None
        graph = model.graph
        if not graph.node:
            raise BadInputError(f"{self.path}: not an ONNX model (no graph nodes)")
        self.values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant":
                self.values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.nodes = list(graph.node)
        self.producer = {out: node for node in self.nodes for out in node.output}
        self.consumers = collections.defaultdict(list)
        for node in self.nodes:
            for name in node.input:
                self.consumers[name].append(node)
        inputs = [i for i in graph.input if i.name not in self.values]
        if len(inputs) != 1:
            raise BadInputError(f"{self.path}: {len(inputs)} graph inputs; an embedding model has one image input")
        self.input = inputs[0]
        self.outputs = [o.name for o in graph.output]
        self.visited: set[int] = set()

    def input_size(self) -> int | None:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in self.input.type.tensor_type.shape.dim]
        if len(dims) != 4 or dims[1] not in (3, None):
            raise BadInputError(f"{self.path}: input {self.input.name!r} has shape {dims}; expected N x 3 x H x W")
        if dims[2] and dims[3] and dims[2] != dims[3]:
            raise BadInputError(f"{self.path}: input {self.input.name!r} is {dims[2]}x{dims[3]}; only square faces")
        return dims[2] or None

    def describe(self, node) -> str:
        return f"{node.name or '(unnamed)'!r} ({node.op_type})"

    def next(self, tensor: str, op_types, what: str, pick: bool = False):
        """The one node that consumes ``tensor`` (shape computations and Identity skipped); it must
        be one of ``op_types``. ``pick``: the one of ``op_types`` among several consumers."""
        nodes = self.users(tensor)
        if pick:
            nodes = [n for n in nodes if n.op_type in op_types]
        if len(nodes) == 1 and nodes[0].op_type in PASS_THROUGH:
            self.visited.add(id(nodes[0]))
            return self.next(nodes[0].output[0], op_types, what)
        if len(nodes) != 1 or nodes[0].op_type not in op_types:
            found = ", ".join(self.describe(n) for n in nodes) or "nothing"
            raise BadInputError(f"{self.path}: {what}: expected {'/'.join(sorted(op_types))} after tensor "
                                f"{tensor!r}, found {found}; this graph does not map to the kit's network")
        self.visited.add(id(nodes[0]))
        return nodes[0]

    def users(self, tensor: str) -> list:
        return [n for n in self.consumers.get(tensor, []) if n.op_type not in SHAPE_OPS]

    def constant(self, node, index: int) -> np.ndarray:
        if index >= len(node.input) or node.input[index] not in self.values:
            raise BadInputError(f"{self.path}: node {self.describe(node)}: input {index} is not a constant tensor")
        return self.values[node.input[index]]

    def attribute(self, node, name: str, default=None):
        import onnx

        for attribute in node.attribute:
            if attribute.name == name:
                return onnx.helper.get_attribute_value(attribute)
        return default

    def unvisited(self) -> list:
        return [n for n in self.nodes if id(n) not in self.visited and n.op_type not in SHAPE_OPS]


class _Reader:
    """Walks an arcface_torch graph, filling ``state`` (torch names) and ``origin`` (node names)."""

    def __init__(self, graph: OnnxGraph):
        self.graph = graph
        self.state: dict[str, np.ndarray] = {}
        self.origin: dict[str, str] = {}

    def put(self, key: str, value: np.ndarray, node) -> None:
        self.state[key], self.origin[key] = np.asarray(value), node.name

    def conv(self, tensor: str, torch_conv: str, torch_bn: str, what: str, pick: bool = False):
        """A Conv (its batch norm folded in, or as the next node) at ``torch_conv``; returns the
        output and the conv's stride."""
        g = self.graph
        node = g.next(tensor, {"Conv"}, what, pick)
        weight = g.constant(node, 1)
        kernel = weight.shape[2:]
        strides = tuple(g.attribute(node, "strides", [1, 1]))
        pads = tuple(g.attribute(node, "pads", [0, 0, 0, 0]))
        dilations = tuple(g.attribute(node, "dilations", [1, 1]))
        if dilations != (1, 1) or strides[0] != strides[1] or kernel[0] != kernel[1]:
            raise BadInputError(f"{g.path}: node {g.describe(node)}: kernel {kernel}, strides {strides}, "
                                f"dilations {dilations}; the kit's convs are square, undilated")
        if what != "global depthwise conv" and pads != (kernel[0] // 2,) * 4:
            raise BadInputError(f"{g.path}: node {g.describe(node)}: pads {pads}; the kit pads a {kernel[0]}x"
                                f"{kernel[0]} conv by {kernel[0] // 2} on every side")
        self.put(f"{torch_conv}.weight", weight, node)
        if len(node.input) > 2 and node.input[2]:
            self.put(f"{torch_conv}.bias", g.constant(node, 2), node)
        out = node.output[0]
        users = g.users(out)
        if len(users) == 1 and users[0].op_type == "BatchNormalization":
            out = self.batch_norm(out, torch_bn, what)
        return out, strides[0]

    def batch_norm(self, tensor: str, torch_bn: str, what: str, pick: bool = False) -> str:
        g = self.graph
        node = g.next(tensor, {"BatchNormalization"}, what, pick)
        gamma, beta, mean, variance = (g.constant(node, i).astype(np.float64) for i in range(1, 5))
        epsilon = float(g.attribute(node, "epsilon", 1e-5))
        for field, value in zip(("weight", "bias", "running_mean", "running_var"),
                                (gamma, beta, mean, variance + epsilon - BN_EPSILON)):
            self.put(f"{torch_bn}.{field}", value, node)
        return node.output[0]

    def prelu(self, tensor: str, torch_prelu: str, what: str) -> str:
        node = self.graph.next(tensor, {"PRelu"}, what)
        self.put(f"{torch_prelu}.weight", self.graph.constant(node, 1).reshape(-1), node)
        return node.output[0]

    def add(self, tensor: str, shortcut: str, what: str) -> str:
        g = self.graph
        node = g.next(tensor, {"Add"}, what)
        other = [i for i in node.input if i != tensor]
        if other != [shortcut]:
            raise BadInputError(f"{g.path}: node {g.describe(node)}: adds {node.input}, not the block's "
                                f"shortcut {shortcut!r}")
        return node.output[0]

    def head(self, tensor: str, torch_fc: str, torch_features: str) -> str:
        """Flatten -> Gemm (or MatMul [+ Add]) -> BatchNormalization, the graph's output."""
        g = self.graph
        node = g.next(tensor, FLATTEN_OPS, "flatten before the embedding layer")
        linear = g.next(node.output[0], {"Gemm", "MatMul"}, "embedding layer")
        weight = g.constant(linear, 1)
        if linear.op_type == "Gemm":
            if g.attribute(linear, "transA", 0) or g.attribute(linear, "alpha", 1.0) != 1.0 or \
                    g.attribute(linear, "beta", 1.0) != 1.0:
                raise BadInputError(f"{g.path}: node {g.describe(linear)}: only transB, alpha = beta = 1 map to Dense")
            weight = weight if g.attribute(linear, "transB", 0) else weight.T
            self.put(f"{torch_fc}.weight", weight, linear)
            if len(linear.input) > 2 and linear.input[2]:
                self.put(f"{torch_fc}.bias", g.constant(linear, 2), linear)
            out = linear.output[0]
        else:
            self.put(f"{torch_fc}.weight", weight.T, linear)
            out = linear.output[0]
            users = g.users(out)
            if len(users) == 1 and users[0].op_type == "Add":
                bias = g.next(out, {"Add"}, "embedding layer bias")
                self.put(f"{torch_fc}.bias", g.values[[i for i in bias.input if i != out][0]], bias)
                out = bias.output[0]
        out = self.batch_norm(out, torch_features, "final BatchNorm1d")
        while out not in g.outputs and len(g.users(out)) == 1 and g.users(out)[0].op_type in PASS_THROUGH:
            out = g.next(out, PASS_THROUGH, "output")
        if out not in g.outputs or len(g.outputs) != 1:
            raise BadInputError(f"{g.path}: the final batch norm's output {out!r} is not the graph's one output "
                                f"(outputs: {g.outputs})")
        return out

    def iresnet(self) -> None:
        g = self.graph
        x, _ = self.conv(g.input.name, "conv1", "bn1", "stem conv")
        x = self.prelu(x, "prelu", "stem PReLU")
        stage, block = 0, 0
        while len(g.users(x)) > 1:
            downsample = any(u.op_type == "Conv" for u in g.users(x))
            if downsample:
                stage, block = stage + 1, 0
            if stage == 0:
                raise BadInputError(f"{g.path}: the first block has no downsample conv; not an iresnet")
            prefix = f"layer{stage}.{block}"
            y = self.batch_norm(x, f"{prefix}.bn1", "block batch norm", pick=True)
            y, _ = self.conv(y, f"{prefix}.conv1", f"{prefix}.bn2", "block conv1")
            y = self.prelu(y, f"{prefix}.prelu", "block PReLU")
            y, _ = self.conv(y, f"{prefix}.conv2", f"{prefix}.bn3", "block conv2")
            shortcut = x
            if downsample:
                shortcut, _ = self.conv(x, f"{prefix}.downsample.0", f"{prefix}.downsample.1", "downsample conv",
                                        pick=True)
            x = self.add(y, shortcut, "residual add")
            block += 1
        x = self.batch_norm(x, "bn2", "output batch norm")
        self.head(x, "fc", "features")

    def mobilefacenet(self) -> None:
        g = self.graph
        x, _ = self.conv(g.input.name, "layers.0.layers.0", "layers.0.layers.1", "stem conv")
        x = self.prelu(x, "layers.0.layers.2", "stem PReLU")
        x, _ = self.conv(x, "layers.1.layers.0", "layers.1.layers.1", "stem grouped conv")
        x = self.prelu(x, "layers.1.layers.2", "stem PReLU")
        module, residual, index = 2, None, 0
        while not self._is_conv_sep(x):
            shortcut = any(u.op_type == "Add" for u in g.users(x))
            if shortcut:
                if residual is None:
                    residual, index, module = module, 0, module + 1
                prefix = f"layers.{residual}.layers.{index}"
                index += 1
            else:
                residual, prefix, module = None, f"layers.{module}", module + 1
            y = x
            for part, what in ((0, "block expand conv"), (1, "block depthwise conv")):
                y, _ = self.conv(y, f"{prefix}.layers.{part}.layers.0", f"{prefix}.layers.{part}.layers.1", what,
                                 pick=part == 0)
                y = self.prelu(y, f"{prefix}.layers.{part}.layers.2", what + " PReLU")
            y, _ = self.conv(y, f"{prefix}.layers.2.layers.0", f"{prefix}.layers.2.layers.1", "block project conv")
            x = self.add(y, x, "residual add") if shortcut else y
        x, _ = self.conv(x, "conv_sep.layers.0", "conv_sep.layers.1", "conv_sep")
        x = self.prelu(x, "conv_sep.layers.2", "conv_sep PReLU")
        x, _ = self.conv(x, "features.layers.0.layers.0", "features.layers.0.layers.1", "global depthwise conv")
        self.head(x, "features.layers.2", "features.layers.3")

    def _after_conv(self, conv) -> list:
        users = self.graph.users(conv.output[0])
        if len(users) == 1 and users[0].op_type == "BatchNormalization":
            users = self.graph.users(users[0].output[0])
        return users

    def _is_conv_sep(self, tensor: str) -> bool:
        """Whether ``tensor`` feeds conv1x1 -> PReLU -> the global depthwise conv (its output flattened)."""
        convs = [u for u in self.graph.users(tensor) if u.op_type == "Conv"]
        if len(convs) != 1:
            return False
        prelu = self._after_conv(convs[0])
        if len(prelu) != 1 or prelu[0].op_type != "PRelu":
            return False
        gdc = self.graph.users(prelu[0].output[0])
        return len(gdc) == 1 and gdc[0].op_type == "Conv" and self._is_head(gdc[0])

    def _is_head(self, conv) -> bool:
        """A depthwise conv whose output is flattened: the global depthwise conv (GDC)."""
        users = self._after_conv(conv)
        return len(users) == 1 and users[0].op_type in FLATTEN_OPS


def read_onnx(path) -> tuple[dict, dict, int | None]:
    """(state dict, ONNX node of each entry, input size) of an arcface_torch ONNX graph."""
    graph = OnnxGraph(path)
    size = graph.input_size()
    reader = _Reader(graph)
    stem = graph.users(graph.input.name)
    if len(stem) != 1 or stem[0].op_type != "Conv":
        found = ", ".join(graph.describe(n) for n in stem) or "nothing"
        raise BadInputError(f"{graph.path}: the input feeds {found}; an arcface_torch graph starts with a Conv "
                            "(its input already scaled (x - 127.5) / 127.5)")
    stride = tuple(graph.attribute(stem[0], "strides", [1, 1]))
    if stride == (1, 1):
        reader.iresnet()
    elif stride == (2, 2):
        reader.mobilefacenet()
    else:
        raise BadInputError(f"{graph.path}: stem conv {graph.describe(stem[0])} has strides {stride}; neither "
                            "an iresnet (1) nor a MobileFaceNet (2)")
    left = graph.unvisited()
    if left:
        raise BadInputError(f"{graph.path}: node {graph.describe(left[0])} does not map to the kit's network"
                            + (f" ({len(left) - 1} more)" if len(left) > 1 else ""))
    return reader.state, reader.origin, size
