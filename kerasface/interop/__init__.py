"""Pretrained face-recognition models in: insightface arcface_torch backbones as the kit's own.

    from kerasface.interop import import_model
    model = import_model("w600k_r50.onnx")          # an ONNX export (torch2onnx.py, model zoo)
    model = import_model("backbone.pt")             # a torch.save'd state dict, read without torch

The result is the kit's ``iresnet18/34/50/100/200`` or ``mobilefacenet`` embedding model with the
source's weights, recording insightface's input (``ImagePreprocessing("tf")``, stretched to
112x112, ArcFace-aligned faces). Reading ONNX files needs the ``interop`` extra.
"""

from __future__ import annotations

from pathlib import Path

import keras

from kerasface.errors import BadInputError

SOURCE_FORMATS = {".onnx": "onnx", ".pt": "torch", ".pth": "torch"}


def import_model(path, backbone: str | None = None) -> keras.Model:
    """The kit's embedding model holding the weights of an arcface_torch ``.onnx`` or ``.pt``
    file; ``backbone`` (e.g. ``iresnet50``), when given, must be what the file holds."""
    return import_with_layout(path, backbone)[0]


def import_with_layout(path, backbone: str | None = None):
    """``(model, layout)``: ``import_model``'s model and the ``Layout`` (kit backbone, options,
    input size) recognised in the file."""
    from kerasface.interop.arcface_torch import BACKBONES, import_state_dict

    path = Path(path)
    if backbone is not None and backbone not in BACKBONES:
        raise BadInputError(f"backbone {backbone!r}: import knows {', '.join(BACKBONES)}")
    kind = SOURCE_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise BadInputError(f"{path}: unknown format {path.suffix!r}; expected one of {', '.join(SOURCE_FORMATS)}")
    if kind == "onnx":
        from kerasface.interop.onnx_graph import read_onnx

        state, origin, size = read_onnx(path)
        return import_state_dict(state, str(path), backbone, size, origin)
    from kerasface.interop.torch_zip import load_state_dict

    return import_state_dict(load_state_dict(path), str(path), backbone)


__all__ = ["import_model", "import_with_layout"]
