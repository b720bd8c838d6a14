"""Train-step time and peak memory of a margin head alone, full or Partial FC, against the number
of identities: the part of a recognition model that grows with them (the backbone's cost does
not depend on the identities, see ``kerasface.benchmarks.train_step``).

The model is ``(embeddings, labels) -> head`` with softmax cross-entropy and SGD with momentum
0.9 and weight decay 5e-4 (insightface's optimizer: its momentum doubles the centres' memory),
on one batch of random unit-scale embeddings and random labels made up front.
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np

from kerasface.losses import margin_head
from kerasface.benchmarks.train_step import peak_memory
from kerasface.train.runtime import resolve_runtime


@dataclasses.dataclass
class PartialFCBenchmark:
    num_classes: int
    loss: str = "arcface"
    sample_rate: float | None = None  # None: the full head
    batch_size: int = 128
    embedding_dim: int = 512
    steps: int = 5
    warmup_steps: int = 2
    jit_compile: str = "auto"


def run_partial_fc_benchmark(bench: PartialFCBenchmark, seed: int = 0) -> dict:
    """Median step time of ``train_on_batch`` after ``warmup_steps`` (which include tracing and
    compilation): wall-clock and the process's CPU time (all threads; the figure to compare on a
    machine shared with other work), this process's peak memory and its memory before the head
    was built."""
    runtime = resolve_runtime("auto", "off", bench.jit_compile)
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(bench.batch_size, bench.embedding_dim)).astype(np.float32)
    labels = rng.integers(0, bench.num_classes, bench.batch_size).astype(np.int32)
    targets = np.zeros_like(labels) if bench.sample_rate is not None else labels
    before = peak_memory()
    with runtime.scope():
        embeddings = keras.Input((bench.embedding_dim,), name="embedding")
        label_input = keras.Input((), dtype="int32", name="identity")
        head = margin_head(bench.loss, bench.num_classes, sample_rate=bench.sample_rate, name="margin_head")
        model = keras.Model([embeddings, label_input], head(embeddings, label_input))
        runtime.compile(model, keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=5e-4),
                        keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        start = time.perf_counter()
        for _ in range(bench.warmup_steps):
            loss = model.train_on_batch([x, labels], targets)
        warmup = time.perf_counter() - start
        times, cpu_times = [], []
        for _ in range(bench.steps):
            t, c = time.perf_counter(), time.process_time()
            loss = model.train_on_batch([x, labels], targets)
            times.append(time.perf_counter() - t)
            cpu_times.append(time.process_time() - c)
    return {
        "identities": bench.num_classes,
        "head": bench.loss,
        "sample_rate": bench.sample_rate if bench.sample_rate is not None else "full",
        "columns": head.num_sample if bench.sample_rate is not None else bench.num_classes,
        "batch_size": bench.batch_size,
        "embedding_dim": bench.embedding_dim,
        "backend": runtime.backend,
        "device": runtime.device,
        "jit_compile": runtime.jit_compile,
        "step_ms": round(float(np.median(times)) * 1000, 1),
        "step_cpu_ms": round(float(np.median(cpu_times)) * 1000, 1),
        "warmup_s": round(warmup, 2),
        "loss": round(float(loss), 4),
        "centres_mib": round(bench.embedding_dim * bench.num_classes * 4 / 2**20, 1),
        "host_mib_before": before["peak_host_mib"],
        **peak_memory(),
    }
