"""Input-pipeline throughput: how many images per second each stage can deliver, from image
folders, TFRecord shards and RecordIO packs, beside a PyTorch DataLoader peer and the train step."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from kerasface.data.augment import AugmentConfig
from kerasface.data.crops import make_views
from kerasface.data.decode import decode_image
from kerasface.data.pipeline import InputConfig, build_pipeline, preprocess_encoded, source_dataset
from kerasface.data.spec import DatasetSpec
from kerasface.processes import child_environment

STORAGES = ("files", "tfrecord", "recordio")
STAGES = ("decode", "decode+resize+crops", "full training pipeline")
# What ../shared/peers/torch_loader.py does to each image: three horizontal crops of 0.75 of the
# width (here of both sides: the kit's crops are square cuts of one resized image), 96 px,
# rotation uniform in +-50 degrees with a reflected border, flip p=0.5, noise sigma 0.05.
PEER_INPUT = InputConfig(96, "crops-horizontal", 0.75)
PEER_AUGMENT = AugmentConfig(max_rotation=50.0, flip=True, noise_sigma=0.05, brightness=0.0, contrast=0.0)


def _with_threads(dataset: tf.data.Dataset, threads: int | None) -> tf.data.Dataset:
    options = tf.data.Options()
    if threads:
        options.threading.private_threadpool_size = threads
    return dataset.with_options(options)


def prefetch_device() -> str | None:
    """The first GPU, where batches are prefetched to (as a strategy's distributed dataset does
    in training); None without one: on CPU the batches stay on the host."""
    gpus = tf.config.list_logical_devices("GPU")
    return gpus[0].name if gpus else None


def to_device(dataset: tf.data.Dataset) -> tf.data.Dataset:
    device = prefetch_device()
    return dataset if device is None else dataset.apply(tf.data.experimental.prefetch_to_device(device))


def stage_datasets(spec: DatasetSpec, config: InputConfig, batch_size: int, threads: int | None, seed: int = 0,
                   augment: AugmentConfig | None = None, deterministic: bool = True,
                   stages=STAGES) -> dict[str, tf.data.Dataset]:
    auto = tf.data.AUTOTUNE
    source = source_dataset(spec, deterministic=deterministic).repeat()
    made = {}
    if "decode" in stages:
        decode = source.map(lambda r: tf.shape(decode_image(r["image"], tf.uint8)),
                            num_parallel_calls=auto, deterministic=deterministic)
        made["decode"] = _with_threads(decode.batch(batch_size).prefetch(auto), threads)
    if "decode+resize+crops" in stages:
        crops = source.map(lambda r: make_views(preprocess_encoded(r["image"], config), config.image_size,
                                                config.views), num_parallel_calls=auto, deterministic=deterministic)
        made["decode+resize+crops"] = _with_threads(crops.batch(batch_size).prefetch(auto), threads)
    if "full training pipeline" in stages:
        made["full training pipeline"] = build_pipeline(
            spec, input_config=config, batch_size=batch_size, training=True, augment=augment or AugmentConfig(),
            repeat=True, seed=seed, threads=threads, deterministic=deterministic)
    return {name: to_device(dataset) for name, dataset in made.items()}


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
                    threads: int | None = None, augment: AugmentConfig | None = None, deterministic: bool = True,
                    stages=STAGES) -> list[dict]:
    results = []
    datasets = stage_datasets(spec, config, batch_size, threads, augment=augment, deterministic=deterministic,
                              stages=stages)
    for stage, dataset in datasets.items():
        row = {"stage": stage, "storage": spec.storage, "batch_size": batch_size, "threads": threads or "auto",
               "image_size": config.image_size, "views": config.views, "crop_fraction": config.crop_fraction,
               "deterministic": deterministic}
        row.update(time_dataset(dataset, batch_size, seconds))
        results.append(row)
    return results


def store_as(spec: DatasetSpec, storage: str, folder) -> DatasetSpec:
    """``spec`` (image files) written as ``storage`` under ``folder`` (TFRecord shards with
    ``write_tfrecords``, an insightface pack with ``spec_to_recordio``) and read back."""
    from kerasface.data.readers import read_dataset

    if storage == "files":
        return spec
    folder = Path(folder) / storage
    if storage == "tfrecord":
        from kerasface.data.tfrecord import write_tfrecords

        write_tfrecords(spec, folder, num_shards=8, progress=False)
    elif storage == "recordio":
        from kerasface.data.recordio import spec_to_recordio

        spec_to_recordio(spec, folder, progress=False)
    else:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    return read_dataset(folder, verify="none")[1]


def link_folder(spec: DatasetSpec, folder) -> Path:
    """An image folder of symbolic links to ``spec``'s files, one sub-folder per identity, so a
    peer reads exactly these images."""
    folder = Path(folder)
    for i, path in enumerate(spec.samples.paths.tolist()):
        target = folder / f"{spec.samples.identity[i]:06d}" / f"{i:07d}{Path(path).suffix.lower()}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(Path(path).resolve())
    return folder


def run_peer(python: str, script: str, folder, batch_size: int, workers: int, image_size: int,
             seconds: float) -> dict:
    """The peer's own JSON line (``images_per_s``) from ``python script FOLDER batch workers size seconds``."""
    command = [python, str(script), str(folder), str(batch_size), str(workers), str(image_size), str(round(seconds))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


def train_step_rate(backbone: str, branches: int, image_size: int, batch_size: int, steps: int = 3) -> dict:
    """``kerasface-benchmark-train``'s JSON line (samples/s of the compiled train step) for one
    configuration, run in a process of its own."""
    command = [sys.executable, "-m", "kerasface.cli.benchmark_train", "--backbone", backbone, "--branches",
               str(branches), "--image-size", str(image_size), "--batch-size", str(batch_size), "--steps",
               str(steps), "--warmup-steps", "1"]
    done = subprocess.run(command, capture_output=True, text=True, env=child_environment())
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines or "samples_per_s" not in lines[-1]:
        raise RuntimeError(f"{' '.join(command)} failed: {(lines or [done.stderr.strip()[-2000:]])[-1]}")
    return lines[-1]


def bottleneck(input_rate: float, step_rate: float) -> str:
    """Which of the two limits training: the input pipeline when it delivers fewer images/s
    than the train step consumes."""
    if input_rate < step_rate:
        return f"the input pipeline ({input_rate / step_rate:.2f}x what the step consumes)"
    return f"the train step (the input pipeline delivers {input_rate / step_rate:.1f}x what it consumes)"


def subset(spec: DatasetSpec, limit: int | None, seed: int = 0) -> DatasetSpec:
    """``spec`` with ``limit`` samples drawn at random (all when ``limit`` is None or larger)."""
    import dataclasses

    if not limit or limit >= len(spec.samples):
        return spec
    chosen = np.sort(np.random.default_rng(seed).choice(len(spec.samples), limit, replace=False))
    return dataclasses.replace(spec, samples=spec.samples.subset(chosen))
