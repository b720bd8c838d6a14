"""Weight-free layers shared by backbones and heads: input preprocessing and L2 normalisation."""

from __future__ import annotations

import keras
from keras import ops

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

PREPROCESSING_MODES = ("torch", "caffe", "tf", "none")


@keras.saving.register_keras_serializable(package="kerasface")
class ImagePreprocessing(keras.layers.Layer):
    """Maps RGB images in [0, 255] (channels last) to what a backbone was trained on.

    Modes, as in ``keras.applications.imagenet_utils.preprocess_input``:

    - ``"torch"``: ``(x / 255 - mean) / std`` with the ImageNet RGB mean and std (DenseNet, ViT).
    - ``"caffe"``: RGB -> BGR, then ``x - [103.939, 116.779, 123.68]`` (ResNet50).
    - ``"tf"``: ``x / 127.5 - 1``.
    - ``"none"``: identity (EfficientNetV2 rescales inside the model).

    Holds no weights, so parameter counts of the model it feeds are unchanged.

    ``resize_mode`` and ``alignment`` record how images reached the model in training (how a
    photo of another shape was resized: ``pad``, ``stretch`` or ``crop``; which 5-point template
    faces were aligned to, or None), so that every consumer of a saved model prepares its input
    the same way (``kerasface.models.preprocessing``). They do not change ``call``.
    """

    def __init__(self, mode: str = "torch", resize_mode: str | None = None, alignment: str | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(
                f"ImagePreprocessing mode {mode!r} is not one of {', '.join(PREPROCESSING_MODES)}"
            )
        self.mode = mode
        self.resize_mode = resize_mode
        self.alignment = alignment

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        if self.mode == "torch":
            mean = ops.convert_to_tensor(IMAGENET_MEAN_RGB, dtype=self.compute_dtype)
            std = ops.convert_to_tensor(IMAGENET_STD_RGB, dtype=self.compute_dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "caffe":
            mean = ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=self.compute_dtype)
            return ops.flip(x, axis=-1) - mean
        if self.mode == "tf":
            return x / 127.5 - 1.0
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "resize_mode": self.resize_mode,
                "alignment": self.alignment}


@keras.saving.register_keras_serializable(package="kerasface")
class L2Normalize(keras.layers.Layer):
    """``x / sqrt(max(sum(x**2, axis), epsilon))``; a zero vector stays zero."""

    def __init__(self, axis: int = -1, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis
        self.epsilon = epsilon

    def call(self, x):
        squared_norm = ops.sum(ops.square(x), axis=self.axis, keepdims=True)
        return x * ops.rsqrt(ops.maximum(squared_norm, self.epsilon))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="kerasface")
class Panel(keras.layers.Layer):
    """Panel ``index`` of ``count`` equal side-by-side panels of (B, H, count * W, C) images."""

    def __init__(self, index: int, count: int = 3, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= index < count:
            raise ValueError(f"panel index must lie in [0, {count}), got {index}")
        self.index = index
        self.count = count

    def call(self, images):
        width = images.shape[2] // self.count
        return images[:, :, self.index * width:(self.index + 1) * width, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], input_shape[2] // self.count, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "index": self.index, "count": self.count}
