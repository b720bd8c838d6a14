"""What a model expects of its input images, kept in the model itself.

Every kit model takes RGB images in [0, 255] and maps them with its ``ImagePreprocessing``
layers (``mode``: the value range a backbone was trained on). Those layers also record how
images were resized to the input (``resize_mode``) and which 5-point template faces were aligned
to (``alignment``), so a ``.keras`` file, a SavedModel, an ONNX or LiteRT export all tell their
consumers (evaluate, identify, export, serve) how to prepare an image, and none has to guess.
"""

from __future__ import annotations

import dataclasses

import keras

from kerasface.errors import BadInputError
from kerasface.models.layers import ImagePreprocessing

ALIGNMENTS = ("arcface",)
"""``arcface``: the ArcFace / insightface 5-point template scaled to the model's input size
(``kerasface.faces.align.template``)."""


@dataclasses.dataclass(frozen=True)
class InputPreprocessing:
    """``value_range``: the ImagePreprocessing mode (``tf`` is insightface's ``(x - 127.5) / 127.5``);
    ``channel_order`` of the images the model takes is always RGB."""

    image_size: tuple[int, int] | None
    resize_mode: str | None
    value_range: str
    alignment: str | None = None
    channel_order: str = "RGB"

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["image_size"] = list(self.image_size) if self.image_size else None
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "InputPreprocessing":
        size = values.get("image_size")
        return cls(image_size=tuple(size) if size else None, resize_mode=values.get("resize_mode"),
                   value_range=values.get("value_range", "none"), alignment=values.get("alignment"),
                   channel_order=values.get("channel_order", "RGB"))


def preprocessing_layers(model) -> list[ImagePreprocessing]:
    """The ``ImagePreprocessing`` layers of ``model`` and of the models nested in it."""
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, ImagePreprocessing):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(preprocessing_layers(layer))
    return found


def _image_size(model) -> tuple[int, int] | None:
    inputs = getattr(model, "inputs", None)
    if not inputs:
        return None
    shape = tuple(inputs[0].shape)
    if len(shape) == 4 and all(isinstance(s, int) for s in shape[1:3]):
        return int(shape[1]), int(shape[2])
    return None


def input_preprocessing(model, name: str | None = None) -> InputPreprocessing | None:
    """What ``model`` records of its input; None when it has no ``ImagePreprocessing`` layer.
    Layers that disagree (branches trained on differently resized images) are refused."""
    layers = preprocessing_layers(model)
    if not layers:
        return None
    settings = {(layer.mode, layer.resize_mode, layer.alignment) for layer in layers}
    if len(settings) > 1:
        raise BadInputError(
            f"{name or model.name}: its preprocessing layers disagree ({sorted(settings, key=str)}); "
            "a model must record one way of preparing its images")
    mode, resize_mode, alignment = settings.pop()
    return InputPreprocessing(_image_size(model), resize_mode, mode, alignment)


def set_input_preprocessing(model, resize_mode: str | None = None, alignment: str | None = None):
    """Record ``resize_mode`` and ``alignment`` in every ``ImagePreprocessing`` layer of ``model``
    (saved with it from then on); a field given as None keeps what the model records (a
    fine-tuned imported model stays aligned to its template). Returns ``model``."""
    from kerasface.data.decode import RESIZE_MODES

    if resize_mode is not None and resize_mode not in RESIZE_MODES:
        raise ValueError(f"resize mode {resize_mode!r}; choose one of {RESIZE_MODES}")
    if alignment is not None and alignment not in ALIGNMENTS:
        raise ValueError(f"alignment {alignment!r}; choose one of {ALIGNMENTS} or None")
    for layer in preprocessing_layers(model):
        if resize_mode is not None:
            layer.resize_mode = resize_mode
        if alignment is not None:
            layer.alignment = alignment
    return model
