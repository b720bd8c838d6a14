"""The input pipeline: samples -> decoded, resized, augmented views -> batches.

    source -> [shuffle] -> parallel decode + resize -> [cache -> shuffle] -> [repeat]
           -> [draw augmentation parameters] -> batch -> parallel augment + views -> prefetch(AUTOTUNE)

Shuffling happens on paths (cheap) unless the decoded images are cached, in which case it
happens after the cache. Augmentation parameters are drawn per element under seeds of their
own and applied per batch (see ``augment``), computing only the pixels the views cut
(``view_window``), so a pipeline is reproducible under its seed and differs between epochs.
``deterministic=False`` lets parallel reads and maps hand out elements as they finish.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from kerasface.data.augment import AugmentConfig, augment_batch, draw_parameters, mirror_labels
from kerasface.data.crops import VIEW_MODES, crop_offsets, make_views
from kerasface.data.decode import base_size, decode_image, resize_image
from kerasface.data.readers import samples_dataset
from kerasface.data.spec import DatasetSpec, LabelMirror, Samples

TARGETS = ("labels", "identity", "identity_labels", None)


@dataclasses.dataclass
class InputConfig:
    """How images become model inputs (the part of a pipeline a served model must repeat)."""

    image_size: int = 64
    views: str = "single"
    crop_fraction: float = 0.875
    resize_mode: str = "pad"

    def __post_init__(self):
        if self.views not in VIEW_MODES:
            raise ValueError(f"unknown views {self.views!r}; choose one of {VIEW_MODES}")

    @property
    def base_shape(self) -> tuple[int, int]:
        """(height, width) every image is resized to before its views are cut."""
        if self.views == "modalities":
            return self.image_size, 3 * self.image_size
        side = self.image_size if self.views == "single" else base_size(self.image_size, self.crop_fraction)
        return side, side

    @property
    def num_views(self) -> int:
        return 1 if self.views == "single" else 3


def preprocess_encoded(data: tf.Tensor, config: InputConfig) -> tf.Tensor:
    """Encoded image bytes -> float32 (*base_shape, 3) image, ready for augmentation and views."""
    image = decode_image(data, tf.uint8)
    image = tf.cast(resize_image(image, config.base_shape, config.resize_mode), tf.float32)
    image.set_shape([*config.base_shape, 3])
    return image


def view_window(config: InputConfig) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the part of the base image the views cut."""
    height, width = config.base_shape
    if config.views == "crops-horizontal":
        top = crop_offsets(height, config.image_size)[1]
        return top, 0, config.image_size, width
    if config.views == "crops-vertical":
        left = crop_offsets(width, config.image_size)[1]
        return 0, left, height, config.image_size
    return 0, 0, height, width


def modality_safe(augment: AugmentConfig | None, views: str) -> AugmentConfig | None:
    """``augment`` without the transforms that would corrupt a modality tile: rotation and flip
    would move pixels across panels and leave the normal vectors unrotated, and brightness or
    contrast would change what a normal or depth value means. Noise stays."""
    if augment is None or views != "modalities":
        return augment
    return dataclasses.replace(augment, max_rotation=0.0, flip=False, brightness=0.0, contrast=0.0)


def source_dataset(spec: DatasetSpec, samples: Samples | None = None, deterministic: bool = True) -> tf.data.Dataset:
    """Records ``{"image": encoded bytes, "identity", "labels"}`` for ``samples`` (default all),
    read in parallel (TFRecord shards interleaved)."""
    samples = samples if samples is not None else spec.samples
    if spec.storage == "tfrecord":
        from kerasface.data.tfrecord import select_samples, shard_files, tfrecord_dataset

        dataset = tfrecord_dataset(shard_files(spec.source), spec.num_labels, deterministic)
        if len(samples) != len(spec.samples):
            dataset = select_samples(dataset, samples)
        return dataset
    if spec.storage == "recordio":
        from kerasface.data.recordio import recordio_dataset

        return recordio_dataset(spec, samples, deterministic=deterministic)
    return samples_dataset(samples).map(
        lambda r: {"image": tf.io.read_file(r["path"]), "identity": r["identity"], "labels": r["labels"]},
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic,
    )


MEMORY_CACHE_BUDGET = 2 * 2**30


def decoded_bytes(num_samples: int, config: InputConfig) -> int:
    """Memory that ``num_samples`` decoded float32 images at ``config.base_shape`` take."""
    height, width = config.base_shape
    return num_samples * height * width * 3 * 4


def choose_cache(mode: str, num_samples: int, config: InputConfig, budget: int = MEMORY_CACHE_BUDGET) -> bool:
    """``"memory"``: keep decoded images in memory; ``"off"``: decode every epoch; ``"auto"``:
    memory when the decoded images fit in ``budget`` (2 GiB; the demo's 800 images at 55x55 take
    29 MB), else off, so that 5 million images do not try to fill the host's memory."""
    if mode not in ("auto", "memory", "off"):
        raise ValueError(f"cache must be 'auto', 'memory' or 'off', got {mode!r}")
    if mode == "auto":
        return decoded_bytes(num_samples, config) <= budget
    return mode == "memory"


def pk_source(spec: DatasetSpec, samples: Samples, p: int, k: int, seed: int) -> tf.data.Dataset:
    """Records in P x K order (``identity_batches.pk_dataset``), epoch after epoch, endlessly."""
    from kerasface.data.identity_batches import pk_dataset

    if spec.storage != "files":
        raise ValueError(f"{spec.source}: P x K batches read image files; convert the {spec.storage} "
                         "dataset to an image folder or use the shuffle sampler")
    return pk_dataset(samples, p, k, seed=seed, fields=True).map(
        lambda r: {"image": tf.io.read_file(r["path"]), "identity": tf.cast(r["identity"], tf.int32),
                   "labels": r["labels"]},
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def build_pipeline(
    spec: DatasetSpec,
    samples: Samples | None = None,
    *,
    input_config: InputConfig | None = None,
    target: str | None = "labels",
    batch_size: int = 32,
    training: bool = False,
    augment: AugmentConfig | None = None,
    mirror: LabelMirror | None | str = "auto",
    shuffle: bool | None = None,
    shuffle_buffer: int = 4096,
    cache: bool | str = False,
    repeat: bool = False,
    drop_remainder: bool = False,
    pk: tuple[int, int] | None = None,
    seed: int = 0,
    deterministic: bool = True,
    threads: int | None = None,
) -> tf.data.Dataset:
    """Batches of ``(x, y)``: x one float32 (B, S, S, 3) tensor or a tuple of three (views),
    y the label vectors (``target="labels"``), identity indices (``"identity"``), both as
    ``(identity, labels)`` (``"identity_labels"``), or no y (``None``). ``augment`` applies only when ``training``; ``shuffle`` defaults to ``training``.
    A flip exchanges the labels that name a side (``mirror``: "auto" takes ``spec.label_mirror``).
    ``cache``: True keeps decoded images in memory, a path caches them in files there.
    ``pk=(p, k)``: P x K identity batches (batch size p * k) in an endless stream instead of
    shuffled batches; give ``steps_per_epoch`` to ``fit``."""
    config = input_config or InputConfig()
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    samples = samples if samples is not None else spec.samples
    shuffle = training if shuffle is None else shuffle
    augment = modality_safe(augment, config.views) if training else None
    if mirror == "auto":
        mirror = spec.label_mirror
    if target not in ("labels", "identity_labels"):
        mirror = None
    buffer = max(1, min(shuffle_buffer, len(samples)))

    if pk is not None:
        dataset = pk_source(spec, samples, *pk, seed=seed)
        batch_size, shuffle, cache, repeat, drop_remainder = pk[0] * pk[1], False, False, False, True
    else:
        dataset = source_dataset(spec, samples, deterministic)
    if shuffle and not cache:
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)

    def load(record):
        y = {"labels": record["labels"], "identity": record["identity"]}.get(target)
        if target == "identity_labels":
            y = (record["identity"], record["labels"])
        return preprocess_encoded(record["image"], config), y

    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if cache:
        dataset = dataset.cache("" if cache is True else str(cache))
        if shuffle:
            dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()

    if augment is not None:
        def draw(xy, s):
            params = draw_parameters(s, augment)
            y = xy[1]
            if target == "labels":
                y = mirror_labels(y, params["flip"], mirror)
            elif target == "identity_labels":
                y = (y[0], mirror_labels(y[1], params["flip"], mirror))
            return xy[0], y, params

        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip(dataset, seeds).map(draw, num_parallel_calls=tf.data.AUTOTUNE,
                                                          deterministic=deterministic)
    window = view_window(config)

    def to_model_input(image, y, params=None):
        if params is not None:
            image = augment_batch(image, params, augment, window)
        x = make_views(image, config.image_size, config.views)
        return x if target is None else (x, y)

    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(to_model_input, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_optimization.parallel_batch = True
    if threads:
        options.threading.private_threadpool_size = threads
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
