"""Compiled train-step timing on synthetic batches, for any backbone, backend and device:
a multi-branch attribute model (binary cross-entropy, Adam), or with ``loss`` a recognition
model (embedding backbone + margin head over ``num_classes`` identities, softmax
cross-entropy, SGD with momentum 0.9 and weight decay 5e-4 as insightface trains)."""

from __future__ import annotations

import dataclasses
import resource
import time

import keras
import numpy as np

from kerasface.losses import margin_head
from kerasface.models import build_branch_model
from kerasface.models.embedding import build_embedding_model, build_margin_model
from kerasface.train.runtime import resolve_runtime


@dataclasses.dataclass
class TrainBenchmark:
    backbone: str
    branches: int = 3
    image_size: int = 48
    batch_size: int = 32
    steps: int = 10
    warmup_steps: int = 2
    jit_compile: str = "auto"
    mixed_precision: str = "auto"
    num_outputs: int = 10
    loss: str | None = None
    num_classes: int = 1000
    embedding_dim: int = 512
    backbone_kwargs: dict = dataclasses.field(default_factory=dict)


def peak_memory() -> dict:
    """Peak resident host memory of this process (MiB) and, on a GPU, the device's peak."""
    out = {"peak_host_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            info = tf.config.experimental.get_memory_info("GPU:0")
            out["peak_device_mib"] = round(info["peak"] / 2**20, 1)
    elif backend == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            out["peak_device_mib"] = round(stats["peak_bytes_in_use"] / 2**20, 1)
    return out


def run_train_benchmark(bench: TrainBenchmark, seed: int = 0) -> dict:
    """Samples/s and step time of ``model.train_on_batch`` after ``warmup_steps`` (which include
    compilation); the batches are random images and labels made once up front.
    ``optimizer_steps`` is the optimizer's own count of the steps that ran."""
    runtime = resolve_runtime("auto", bench.mixed_precision, bench.jit_compile)
    keras.utils.set_random_seed(seed)
    shape = (bench.image_size, bench.image_size, 3)
    rng = np.random.default_rng(seed)
    views = [rng.uniform(0, 255, (bench.batch_size, *shape)).astype(np.float32) for _ in range(bench.branches)]
    with runtime.scope():  # training runs inside it too, as in kerasface.train.run
        if bench.loss:
            if bench.branches != 1:
                raise ValueError(f"--loss {bench.loss} benchmarks a recognition model of one branch; "
                                 f"use --branches 1 (got {bench.branches})")
            labels = rng.integers(0, bench.num_classes, bench.batch_size).astype(np.int32)
            x, y = [views[0], labels], labels
            head = margin_head(bench.loss, bench.num_classes, name="margin_head")
            model = build_margin_model(build_embedding_model(bench.backbone, shape, bench.embedding_dim,
                                                             **bench.backbone_kwargs), head)
            optimizer = keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=5e-4)
            runtime.compile(model, optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        else:
            x = views if bench.branches > 1 else views[0]
            y = (rng.uniform(size=(bench.batch_size, bench.num_outputs)) < 0.3).astype(np.float32)
            model = build_branch_model(bench.backbone, num_branches=bench.branches, num_outputs=bench.num_outputs,
                                       input_shape=shape, backbone_kwargs=bench.backbone_kwargs)
            runtime.compile(model, keras.optimizers.Adam(3e-4), keras.losses.BinaryCrossentropy())
        start = time.perf_counter()
        for _ in range(bench.warmup_steps):
            model.train_on_batch(x, y)
        warmup = time.perf_counter() - start
        times = []
        for _ in range(bench.steps):
            t = time.perf_counter()
            model.train_on_batch(x, y)
            times.append(time.perf_counter() - t)
    times = np.array(times)
    return {
        **dataclasses.asdict(bench),
        "backend": runtime.backend,
        "device": runtime.device,
        "jit_compile": runtime.jit_compile,
        "mixed_precision": runtime.precision,
        "params": int(model.count_params()),
        "warmup_s": round(warmup, 2),
        "step_ms_median": round(float(np.median(times)) * 1000, 1),
        "step_ms_mean": round(float(times.mean()) * 1000, 1),
        "samples_per_s": round(bench.batch_size / float(np.median(times)), 2),
        "optimizer_steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        **peak_memory(),
    }
