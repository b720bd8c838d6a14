"""Where and how a model trains: distribution strategy, mixed precision and XLA.

auto choices: TPU (through ``TPUClusterResolver``, as on Kaggle and Colab) when one answers,
``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names several workers, ``MirroredStrategy``
for several GPUs, the default strategy otherwise; on JAX, ``keras.distribution.DataParallel``
over several devices, after ``keras.distribution.initialize`` when
``KERAS_DISTRIBUTION_NUM_PROCESSES`` names several processes (``kerasface.train.multiworker``).
Mixed precision: bfloat16 on TPU, float16 on GPU, off on CPU. XLA (``jit_compile``), per
backend: on JAX always (without ``jax.jit`` every step runs op by op, far slower; see
docs/benchmarks.md, "JAX jit"); on TensorFlow on for GPU and TPU and off on CPU, where it buys
little and costs warm-up and memory, or slows the step down (docs/benchmarks.md, "Train step").

TensorFlow's graph optimizer (Grappler) is off inside the scope on CPU without XLA: it lengthens
the warm-up and does not speed up the steps (docs/benchmarks.md, "Graph optimizer").

The dtype policy, the graph-optimizer switch and the JAX distribution are set only inside ``Runtime.scope()`` and restored
on exit, so models built afterwards in the same process are not affected: build, compile,
``fit`` and predict all inside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import os
import platform

import keras

STRATEGIES = ("auto", "default", "mirrored", "tpu", "multiworker")
PRECISIONS = ("auto", "off", "float16", "bfloat16")
JIT_CHOICES = ("auto", "on", "off")


@dataclasses.dataclass
class Runtime:
    backend: str
    strategy_name: str
    device: str
    accelerator: str  # "cpu", "gpu" or "tpu"
    num_replicas: int
    precision: str  # a Keras dtype policy name
    jit_compile: bool
    strategy: object = None  # tf.distribute.Strategy on TensorFlow
    distribution: object = None  # keras.distribution.Distribution on JAX
    graph_optimizer: bool = True  # TensorFlow's Grappler passes on traced functions
    num_workers: int = 1  # processes training together (multi-worker)
    worker_index: int = 0
    is_chief: bool = True  # the worker that writes the run folder

    def global_batch_size(self, per_replica: int) -> int:
        return per_replica * self.num_replicas

    @contextlib.contextmanager
    def scope(self):
        """Build and compile models in here: strategy scope plus the dtype policy."""
        previous_policy = keras.config.dtype_policy()
        previous_distribution = previous_options = None
        keras.config.set_dtype_policy(self.precision)
        try:
            if self.backend == "tensorflow" and not self.graph_optimizer:
                import tensorflow as tf

                previous_options = tf.config.optimizer.get_experimental_options()
                tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
            if self.distribution is not None:
                previous_distribution = keras.distribution.distribution()
                keras.distribution.set_distribution(self.distribution)
            if self.strategy is not None:
                with self.strategy.scope():
                    yield self
            else:
                yield self
        finally:
            keras.config.set_dtype_policy(previous_policy)
            if previous_options is not None:
                import tensorflow as tf

                tf.config.optimizer.set_experimental_options(
                    {"disable_meta_optimizer": previous_options.get("disable_meta_optimizer", False)})
            if self.distribution is not None:
                keras.distribution.set_distribution(previous_distribution)

    def compile(self, model: keras.Model, optimizer, loss, metrics=(), loss_weights=None) -> keras.Model:
        """Compile ``model`` (inside ``scope()``) with this runtime's XLA setting, and create the
        optimizer's slot variables now: a variable created while the train step is being traced
        makes ``tf.function`` trace it a second time (for 3x DenseNet121 about a minute on CPU).
        Metrics must be objects, not strings, for the same reason (a list, or per output a dict of
        lists, as ``loss`` and ``loss_weights`` may be)."""
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics if isinstance(metrics, dict) else list(metrics),
                      loss_weights=loss_weights, jit_compile=self.jit_compile)
        model.optimizer.build(model.trainable_variables)
        return self.prepare(model)

    def prepare(self, model: keras.Model) -> keras.Model:
        """Ready a compiled (or loaded) model to ``fit`` here: under TensorFlow's multi-worker
        strategy, the workaround of ``kerasface.train.multiworker`` for Keras 3."""
        if self.strategy_name == "multiworker" and self.backend == "tensorflow":
            from kerasface.train.multiworker import patch_keras_for_multiworker

            patch_keras_for_multiworker(model)
        return model

    def describe(self) -> dict:
        return {
            "backend": self.backend,
            "strategy": self.strategy_name,
            "device": self.device,
            "replicas": self.num_replicas,
            "mixed_precision": self.precision,
            "jit_compile": self.jit_compile,
            "graph_optimizer": self.graph_optimizer,
            **({"onednn": tensorflow_onednn_enabled()} if self.backend == "tensorflow" else {}),
            **({"workers": self.num_workers, "worker": self.worker_index} if self.num_workers > 1 else {}),
        }


def tensorflow_onednn_enabled() -> bool | None:
    """Whether TensorFlow runs its CPU ops with oneDNN kernels (``TF_ENABLE_ONEDNN_OPTS``, which
    kerasface sets to 1 on x86 when imported before TensorFlow); None where TensorFlow cannot say."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


def _cpu_name() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU {name} ({os.cpu_count()} cores)"


def tpu_hint() -> str | None:
    """The ``tpu`` argument for ``TPUClusterResolver`` when this machine shows signs of a TPU
    (a TPU VM's /dev/accel* devices, or the variables Colab and Kaggle set), else None, so that
    machines without one never wait on a cloud metadata lookup."""
    if glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"):
        return "local"
    for variable in ("TPU_NAME", "COLAB_TPU_ADDR", "TPU_ACCELERATOR_TYPE", "KAGGLE_TPU"):
        if os.environ.get(variable):
            return os.environ.get("TPU_NAME") or None
    return None


@functools.cache
def _multiworker_strategy(tf_config: str):
    """The process's one ``MultiWorkerMirroredStrategy`` for this ``TF_CONFIG`` text. The first
    one configures the collective ops and starts the worker's server (before anything else runs);
    a second one in the same process (a run resumed after a run) enables the collective ops again
    on the live context, and a peer's transfer already under way is dropped ("Delete called on
    non-empty BufRendezvous": the collective aborts, 1 run in 3 here), so every run of the
    process shares the first."""
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()


def _tf_strategy(name: str):
    import tensorflow as tf

    from kerasface.train.multiworker import tf_config_workers

    workers = tf_config_workers()
    if name == "multiworker" or (name == "auto" and workers > 1):
        strategy = _multiworker_strategy(os.environ.get("TF_CONFIG", ""))
        gpus = tf.config.list_physical_devices("GPU")
        local = f"{len(gpus)}x GPU" if gpus else _cpu_name()
        return strategy, "multiworker", f"{max(workers, 1)} workers x {local}", "gpu" if gpus else "cpu"
    hint = tpu_hint()
    if name == "tpu" or (name == "auto" and hint is not None):
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=hint)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            strategy = tf.distribute.TPUStrategy(resolver)
            return strategy, "tpu", f"TPU ({strategy.num_replicas_in_sync} cores)", "tpu"
        except (ValueError, RuntimeError, tf.errors.OpError) as error:
            if name == "tpu":
                raise RuntimeError(f"--strategy tpu: no TPU could be reached ({error})") from error
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        device = f"{len(gpus)}x GPU {details.get('device_name', '')}".strip()
    else:
        device = _cpu_name()
    accelerator = "gpu" if gpus else "cpu"
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy(), "mirrored", device, accelerator
    return tf.distribute.get_strategy(), "default", device, accelerator


def _jax_distribution(name: str):
    import jax

    from kerasface.train.multiworker import initialize_jax_distributed, jax_processes_from_environment

    processes = jax_processes_from_environment()
    if processes > 1:
        initialize_jax_distributed()  # before any JAX computation
    elif name == "multiworker":
        raise RuntimeError("--strategy multiworker on JAX: set KERAS_DISTRIBUTION_JOB_ADDRESSES (the coordinator's "
                           "host:port), KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID")
    devices = jax.devices()  # every process's
    platform_name = devices[0].platform
    accelerator = {"gpu": "gpu", "cuda": "gpu", "rocm": "gpu", "tpu": "tpu"}.get(platform_name, "cpu")
    device = _cpu_name() if accelerator == "cpu" else f"{len(devices)}x {devices[0].device_kind}"
    if processes > 1:
        return (keras.distribution.DataParallel(devices=devices), "multiworker",
                f"{processes} processes x {device}", accelerator, len(devices))
    if name in ("tpu", "mirrored") and len(devices) == 1 and accelerator == "cpu":
        raise RuntimeError(f"--strategy {name}: only one CPU device is visible to JAX")
    if len(devices) > 1 and name != "default":
        return keras.distribution.DataParallel(), "data-parallel", device, accelerator, len(devices)
    return None, "default", device, accelerator, 1


def auto_jit_compile(backend: str, accelerator: str) -> bool:
    """XLA for ``--jit-compile auto`` (see the module docstring for the measurements)."""
    if backend == "jax":
        return True
    return accelerator != "cpu"


def enable_determinism(seed: int) -> None:
    """Seed Python, NumPy and the backend, and make TensorFlow's ops deterministic (a
    process-wide switch of TensorFlow; JAX on CPU is deterministic already)."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def resolve_runtime(strategy: str = "auto", mixed_precision: str = "auto", jit_compile: str = "auto") -> Runtime:
    for value, allowed, flag in (
        (strategy, STRATEGIES, "strategy"),
        (mixed_precision, PRECISIONS, "mixed_precision"),
        (jit_compile, JIT_CHOICES, "jit_compile"),
    ):
        if value not in allowed:
            raise ValueError(f"{flag} must be one of {allowed}, got {value!r}")
    backend = keras.backend.backend()
    tf_strategy = distribution = None
    if backend == "tensorflow":
        tf_strategy, strategy_name, device, accelerator = _tf_strategy(strategy)
        replicas = tf_strategy.num_replicas_in_sync
    elif backend == "jax":
        distribution, strategy_name, device, accelerator, replicas = _jax_distribution(strategy)
    else:
        strategy_name, device, accelerator, replicas = "default", _cpu_name(), "cpu", 1
    if mixed_precision == "auto":
        precision = {"tpu": "mixed_bfloat16", "gpu": "mixed_float16"}.get(accelerator, "float32")
    else:
        precision = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}[mixed_precision]
    jit = auto_jit_compile(backend, accelerator) if jit_compile == "auto" else jit_compile == "on"
    workers, index, chief = _worker(backend, strategy_name)
    return Runtime(backend, strategy_name, device, accelerator, replicas, precision, jit,
                   strategy=tf_strategy, distribution=distribution,
                   graph_optimizer=not (backend == "tensorflow" and accelerator == "cpu" and not jit),
                   num_workers=workers, worker_index=index, is_chief=chief)


def _worker(backend: str, strategy_name: str) -> tuple[int, int, bool]:
    """(workers, this worker's index, whether it is the chief)."""
    if strategy_name != "multiworker":
        return 1, 0, True
    if backend == "jax":
        import jax

        return jax.process_count(), jax.process_index(), jax.process_index() == 0
    from kerasface.train.multiworker import tf_config_workers, tf_is_chief, tf_worker_index

    return max(tf_config_workers(), 1), tf_worker_index(), tf_is_chief()
