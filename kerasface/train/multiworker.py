"""Several worker processes (on one or several machines) training one model, with the engines
that exist: TensorFlow's ``MultiWorkerMirroredStrategy`` configured by ``TF_CONFIG``, and on
JAX ``keras.distribution.initialize`` (``jax.distributed``) configured by Keras's variables
``KERAS_DISTRIBUTION_JOB_ADDRESSES`` (the coordinator's host:port first),
``KERAS_DISTRIBUTION_NUM_PROCESSES`` and ``KERAS_DISTRIBUTION_PROCESS_ID``, followed by
``keras.distribution.DataParallel`` over every process's devices.

Every worker runs the same command. The dataset is sharded per worker by the engine
(``tf.distribute`` auto-sharding: each global batch is split across the workers; Keras's
``DataParallel.distribute_dataset`` on JAX: the same), so with the same seed and global batch
the workers train on exactly the batches one process would. The chief (TF: task ``chief``, or
worker 0 without one; JAX: process 0) writes the run folder; the others write theirs to a
temporary folder that is removed at the end (as TensorFlow's multi-worker guide recommends:
every worker saves, so the collective ops that saving may run stay in step).

Keras 3 (up to 3.15 at least) does not run ``fit`` under ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585, open): before the first step ``_maybe_symbolic_build`` all-reduces a
whole input batch just to learn its shapes (a nested ``PerReplica`` the collective reduce
cannot take), and ``reduce_per_replica`` averages the step's scalar logs over ``axis=0``.
:func:`patch_keras_for_multiworker` replaces the first, for the model it is given, by a
symbolic build from the dataset's element spec (no batch drawn, no collective), and the
second by a mean over replicas with ``axis=None``; both only take effect under a multi-worker
``CollectiveAllReduceStrategy``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import types
from pathlib import Path

JAX_ADDRESSES = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
JAX_PROCESSES = "KERAS_DISTRIBUTION_NUM_PROCESSES"
JAX_PROCESS_ID = "KERAS_DISTRIBUTION_PROCESS_ID"


def tf_config() -> dict | None:
    """The parsed ``TF_CONFIG``, or None when it is not set."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return None
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ValueError(f"TF_CONFIG is not JSON ({error}): {text!r}") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise ValueError(f"TF_CONFIG needs a 'cluster' object, e.g. {{\"cluster\": {{\"worker\": [\"host1:port\", "
                         f"\"host2:port\"]}}, \"task\": {{\"type\": \"worker\", \"index\": 0}}}}; got {text!r}")
    return config


def tf_config_workers(config: dict | None = None) -> int:
    """How many training processes ``TF_CONFIG`` names (workers and a chief); 0 without it."""
    config = tf_config() if config is None else config
    if not config:
        return 0
    cluster = config["cluster"]
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def tf_task(config: dict | None = None) -> tuple[str, int]:
    config = tf_config() if config is None else config
    task = (config or {}).get("task", {})
    return str(task.get("type", "worker")), int(task.get("index", 0))


def tf_is_chief(config: dict | None = None) -> bool:
    """TensorFlow's rule: task ``chief``, or worker 0 in a cluster without a chief."""
    config = tf_config() if config is None else config
    if not config:
        return True
    kind, index = tf_task(config)
    return kind == "chief" or (kind == "worker" and index == 0 and not config["cluster"].get("chief"))


def tf_worker_index(config: dict | None = None) -> int:
    """This process's place among the cluster's training processes: the chief first."""
    config = tf_config() if config is None else config
    if not config:
        return 0
    kind, index = tf_task(config)
    return index + (1 if kind == "worker" and config["cluster"].get("chief") else 0)


def jax_processes_from_environment() -> int:
    """``KERAS_DISTRIBUTION_NUM_PROCESSES`` (1 when unset)."""
    value = os.environ.get(JAX_PROCESSES)
    if not value:
        return 1
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"{JAX_PROCESSES} must be a whole number, got {value!r}") from None
    if count > 1 and not os.environ.get(JAX_ADDRESSES):
        raise ValueError(f"{JAX_PROCESSES}={count} needs {JAX_ADDRESSES} (the coordinator's host:port) and "
                         f"{JAX_PROCESS_ID}")
    return count


def initialize_jax_distributed() -> None:
    """``keras.distribution.initialize()`` from the environment, once per process (before any
    JAX computation)."""
    import jax
    import keras

    if jax.distributed.is_initialized():
        return
    keras.distribution.initialize()


def worker_folder(run_dir: Path, worker_index: int, resume: bool) -> Path:
    """A temporary folder for a non-chief worker's writes; on resume it starts as a copy of the
    chief's checkpoints and history, so every worker continues from the same state."""
    folder = Path(tempfile.mkdtemp(prefix=f"kerasface-worker{worker_index}-"))
    if resume:
        if (run_dir / "checkpoints").is_dir():
            shutil.copytree(run_dir / "checkpoints", folder / "checkpoints")
        if (run_dir / "history.csv").is_file():
            shutil.copy2(run_dir / "history.csv", folder / "history.csv")
    return folder


def _symbolic_build_from_spec(self, iterator=None, data_batch=None):
    if iterator is not None:
        data_batch = iterator.data_adapter.get_tf_dataset().element_spec  # TensorSpecs: shape and dtype
    with self.distribute_strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def _multiworker_reduce(original):
    from keras import tree
    from keras.src.backend.tensorflow import trainer

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            def mean(value):
                if not trainer._is_per_replica_instance(value):
                    return value
                return strategy.reduce("MEAN", value, axis=None)

            return tree.map_structure(mean, values)
        return original(values, strategy, reduction)

    reduce_per_replica.kerasface_multiworker = True
    return reduce_per_replica


def patch_keras_for_multiworker(model) -> None:
    """Let ``model.fit`` run under a multi-worker ``MultiWorkerMirroredStrategy`` (see the
    module docstring for the two Keras 3 defects this works around)."""
    from keras.src.backend.tensorflow import trainer

    if not getattr(trainer.reduce_per_replica, "kerasface_multiworker", False):
        trainer.reduce_per_replica = _multiworker_reduce(trainer.reduce_per_replica)
    model._maybe_symbolic_build = types.MethodType(_symbolic_build_from_spec, model)
