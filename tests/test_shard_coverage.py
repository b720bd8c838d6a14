"""Across workers, one epoch of the trainer's training batches covers every example exactly
once: the batches of ``make_pipelines`` go through the rebatch and auto-shard that
``MultiWorkerMirroredStrategy.experimental_distribute_dataset`` (what ``fit`` calls) applies on
each worker, here in one process: each worker builds its own pipeline, as each process does,
and reads its epochs in step with the others."""

import cv2
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.data.experimental.ops import distribute
from tensorflow.python.distribute import input_ops

from kerasface.train.config import TrainConfig
from kerasface.train.data import load_run_data, make_pipelines
from kerasface.train.tasks import create_task

WORKERS, GLOBAL_BATCH, IMAGES = 2, 8, 24


def worker_dataset(dataset: tf.data.Dataset, worker: int) -> tf.data.Dataset:
    """What worker ``worker`` of ``WORKERS`` (one replica each) reads, as TensorFlow's
    ``input_lib`` builds it: rebatch to per-replica batches, then ``auto_shard_dataset``."""
    sizes = distribute.batch_sizes_for_worker(GLOBAL_BATCH, WORKERS, 1, worker)
    return input_ops.auto_shard_dataset(dataset.rebatch(sizes), WORKERS, worker, WORKERS)


@pytest.mark.parametrize("order", ["deterministic", "fast"])
def test_workers_see_every_training_example_once_per_epoch(tmp_path, order):
    rng = np.random.default_rng(0)
    for i in range(IMAGES):  # one identity per image: an identity index names its example
        (tmp_path / f"person_{i:02d}").mkdir()
        assert cv2.imwrite(str(tmp_path / f"person_{i:02d}" / "0.png"), rng.integers(0, 256, (20, 20, 3), np.uint8))
    config = TrainConfig.from_dict(dict(task="recognition", data=str(tmp_path), split="sample", test_fraction=0.25,
                                        validation_fraction=0.0, image_size=16, views="single",
                                        batch_size=GLOBAL_BATCH // WORKERS, input_order=order, verify="none"))
    data = load_run_data(config, progress=False)
    task = create_task(config, data.spec)

    def build():
        pipelines, steps = make_pipelines(config, data, task, GLOBAL_BATCH, replicas=WORKERS)
        return pipelines["train"], steps

    (single, steps), *built = [build() for _ in range(WORKERS + 1)]
    workers = [worker_dataset(train, w) for w, (train, _) in enumerate(built)]
    expected = sorted(data.splits["train"].identity.tolist())
    assert len(expected) == steps * GLOBAL_BATCH

    def identities(dataset):
        return [np.asarray(batch[-1]).reshape(-1).tolist() for batch in dataset]

    epochs = []
    for _ in range(2):
        whole, seen = identities(single), [identities(w) for w in workers]
        assert [len(s) for s in seen] == [steps] * WORKERS
        assert all(len(b) == GLOBAL_BATCH // WORKERS for s in seen for b in s)
        assert sorted(i for s in seen for b in s for i in b) == expected  # every example, none twice
        # each step's global batch is the one a single process reads ("fast" stays deterministic
        # with several replicas: every worker must read the same order)
        assert [seen[0][k] + seen[1][k] for k in range(steps)] == whole
        epochs.append(seen)
    assert epochs[0] != epochs[1]  # a new epoch, a new shuffle
