"""Input-pipeline throughput: how many images per second each stage can deliver."""

from __future__ import annotations

import time

import tensorflow as tf

from kerasface.data.augment import AugmentConfig
from kerasface.data.crops import make_views
from kerasface.data.decode import decode_image
from kerasface.data.pipeline import InputConfig, build_pipeline, preprocess_encoded, source_dataset
from kerasface.data.spec import DatasetSpec


def _with_threads(dataset: tf.data.Dataset, threads: int | None) -> tf.data.Dataset:
    options = tf.data.Options()
    if threads:
        options.threading.private_threadpool_size = threads
    return dataset.with_options(options)


def stage_datasets(spec: DatasetSpec, config: InputConfig, batch_size: int, threads: int | None,
                   seed: int = 0) -> dict[str, tf.data.Dataset]:
    auto = tf.data.AUTOTUNE
    source = source_dataset(spec).repeat()
    decode = source.map(lambda r: tf.shape(decode_image(r["image"])), num_parallel_calls=auto)
    crops = source.map(lambda r: make_views(preprocess_encoded(r["image"], config), config.image_size,
                                            config.views), num_parallel_calls=auto)
    full = build_pipeline(spec, input_config=config, batch_size=batch_size, training=True,
                          augment=AugmentConfig(), repeat=True, seed=seed, threads=threads)
    return {
        "decode": _with_threads(decode.batch(batch_size).prefetch(auto), threads),
        "decode+resize+crops": _with_threads(crops.batch(batch_size).prefetch(auto), threads),
        "full training pipeline": full,
    }


def _batch_images(batch) -> int:
    x = batch[0] if isinstance(batch, tuple) and len(batch) == 2 else batch
    return int((x[0] if isinstance(x, tuple) else x).shape[0])


def time_dataset(dataset: tf.data.Dataset, batch_size: int, seconds: float, warmup_batches: int = 5) -> dict:
    """Batches and images (counted from the batches themselves) read in about ``seconds``."""
    iterator = iter(dataset)
    for _ in range(warmup_batches):
        next(iterator)
    batches, images, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        images += _batch_images(next(iterator))
        batches += 1
    elapsed = time.perf_counter() - start
    return {"images_per_s": images / elapsed, "batches_per_s": batches / elapsed,
            "batches": batches, "images": images, "seconds": elapsed}


def benchmark_input(spec: DatasetSpec, config: InputConfig, batch_size: int = 32, seconds: float = 5.0,
                    threads: int | None = None) -> list[dict]:
    results = []
    for stage, dataset in stage_datasets(spec, config, batch_size, threads).items():
        row = {"stage": stage, "batch_size": batch_size, "threads": threads or "auto",
               "image_size": config.image_size, "views": config.views}
        row.update(time_dataset(dataset, batch_size, seconds))
        results.append(row)
    return results
