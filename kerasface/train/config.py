"""A run's configuration, in sections: data, model, optimisation, runtime, and the task's own.

    config = TrainConfig.from_dict({"task": "attributes", "model": {"backbone": "resnet50"}})
    config = TrainConfig.from_dict({"backbone": "resnet50", "epochs": 10})   # flat keys work too
    config = TrainConfig.from_dict({"task": "recognition", "recognition": {"loss": "cosface"}})

Every run has the shared sections ``data``, ``model`` (the network), ``optim`` and ``runtime``.
A task with settings of its own (``Task.config_cls``: the recognition task's loss, the multitask
task's adversaries) adds a section named as the task, ``config.task_config``; a run's
``config.json`` holds these sections and nothing of other tasks.

Settings come from the defaults, then a YAML/JSON file, then command-line flags (flags win). A
name is unique across the shared sections and the run's task section, so a flat key
(``--image-size``, ``image_size:``) names exactly one field; ``data`` is the flat name of
``data.path``. A setting of another task's section is refused, naming its section.

The config files of older runs kept every task's settings in ``model`` (and ``data.val_pairs``,
``optim.monitor``: ``OLD_LOCATIONS``); they still load: each such key moves to the run's task
section, or is left out when the run's task has no such setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kerasface.data.crops import VIEW_MODES
from kerasface.data.pipeline import InputConfig
from kerasface.settings_file import json_object, read_settings_file
from kerasface.train.runtime import JIT_CHOICES, PRECISIONS, STRATEGIES

SPLITS = ("sample", "identity")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine", "step")
SAMPLERS = ("shuffle", "pk")
FLIPS = ("auto", "off")
CACHES = ("auto", "memory", "off")
VERIFY = ("auto", "full", "header", "none")
INPUT_ORDERS = ("deterministic", "fast")
PRESETS = ("paper",)
CONFIG_FILE = "config.json"
# old values of a setting, still accepted and mapped to the new name
DEPRECATED_VALUES = {"undersample": {"seed": "paper"}, "preset": {"seed": "paper"}}


def _renamed(name: str, value):
    """``value``, or the current name of a deprecated value of setting ``name``."""
    new = DEPRECATED_VALUES[name].get(value) if isinstance(value, str) else None
    if new is None:
        return value
    warnings.warn(f"{name} {value!r} is deprecated; use {new!r}", DeprecationWarning, stacklevel=3)
    return new


def _choice(section, name: str, allowed) -> None:
    if getattr(section, name) not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {getattr(section, name)!r}")


@dataclasses.dataclass
class DataConfig:
    """What is read and how it becomes batches."""

    path: str | None = None
    skip_bad: bool = False
    verify: str = "auto"
    missing_labels: bool = False
    undersample: str | None = None
    exclude_identities: list[str] = dataclasses.field(default_factory=list)
    min_images_per_identity: int = 1
    split: str = "sample"
    test_fraction: float = 0.5
    validation_fraction: float = 0.1
    image_size: int = 48
    views: str = "crops-horizontal"
    crop_fraction: float = 0.875
    resize_mode: str = "pad"
    augment: bool = True
    flip: str = "auto"
    max_rotation: float = 15.0
    noise_sigma: float = 0.05
    cache: str = "auto"
    input_order: str = "deterministic"
    sampler: str = "shuffle"
    pk_identities: int = 8
    pk_images: int = 4
    demo_identities: int = 40
    demo_images_per_identity: int = 20

    def __post_init__(self):
        self.undersample = _renamed("undersample", self.undersample)
        if isinstance(self.cache, bool):
            self.cache = "memory" if self.cache else "off"
        for name, allowed in (("views", VIEW_MODES), ("split", SPLITS), ("flip", FLIPS), ("cache", CACHES),
                              ("verify", VERIFY), ("sampler", SAMPLERS), ("input_order", INPUT_ORDERS)):
            _choice(self, name, allowed)
        for name in ("image_size", "pk_identities", "pk_images", "demo_identities", "demo_images_per_identity",
                     "min_images_per_identity"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.test_fraction < 1:
            raise ValueError(f"test_fraction must lie in [0, 1), got {self.test_fraction}")
        if not 0 <= self.validation_fraction < 1 - self.test_fraction:
            raise ValueError(
                f"validation_fraction must lie in [0, {1 - self.test_fraction}), got {self.validation_fraction}"
            )

    def input_config(self) -> InputConfig:
        return InputConfig(self.image_size, self.views, self.crop_fraction, self.resize_mode)

    @property
    def num_views(self) -> int:
        return self.input_config().num_views

    def resolved_path(self) -> str:
        """``path``, or the demo dataset (generated into the cache on first use)."""
        if self.path:
            return self.path
        from kerasface.datasets.demo import DemoConfig, ensure_demo_dataset

        demo = DemoConfig(identities=self.demo_identities, images_per_identity=self.demo_images_per_identity)
        return str(ensure_demo_dataset(config=demo))


@dataclasses.dataclass
class ModelConfig:
    """The network: backbone per branch, how branches are joined, what is frozen or initialised
    (what a task's own network adds, such as an embedding size, is in the task's section)."""

    backbone: str = "densenet121"
    backbone_kwargs: dict = dataclasses.field(default_factory=dict)
    preset: str | None = None
    head: str = "concat"
    vote: str = "mean"
    shared_weights: bool = False
    freeze_branches: list[int] = dataclasses.field(default_factory=list)
    init_branches: str | list[str] | None = None
    bn_momentum: float | None = 0.9

    def __post_init__(self):
        self.preset = _renamed("preset", self.preset)
        if self.preset is not None:
            _choice(self, "preset", PRESETS)


@dataclasses.dataclass
class OptimConfig:
    """How long and how fast: epochs, batches, optimizer and learning-rate schedule."""

    epochs: int = 6
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 3e-4
    lr_schedule: str = "constant"
    weight_decay: float | None = None
    early_stopping: int | None = None
    max_steps_per_epoch: int | None = None

    def __post_init__(self):
        _choice(self, "optimizer", OPTIMIZERS)
        _choice(self, "lr_schedule", LR_SCHEDULES)
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")


@dataclasses.dataclass
class RuntimeConfig:
    """Where it runs: distribution strategy, mixed precision, XLA, determinism, logs."""

    strategy: str = "auto"
    mixed_precision: str = "auto"
    jit_compile: str = "auto"
    deterministic: bool = False
    tensorboard: bool = True

    def __post_init__(self):
        _choice(self, "strategy", STRATEGIES)
        _choice(self, "mixed_precision", PRECISIONS)
        _choice(self, "jit_compile", JIT_CHOICES)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "runtime": RuntimeConfig}
TOP_LEVEL = ("task", "seed", "out", "run_id")
FLAT_ALIASES = {"data": "path"}
DEFAULT_TASK = "attributes"
BUILTIN_TASKS = ("attributes", "identity", "recognition", "multitask")
# where the settings now in a task's section were kept by the config files of older runs (every task's in one place)
OLD_LOCATIONS = {
    "data": ("val_pairs",),
    "model": ("modalities", "init", "freeze_backbone_epochs", "loss", "loss_kwargs", "paper_settings", "embedding_dim",
              "attributes", "head_units", "adversarial", "reversal_lambda", "reversal_warmup", "adversary_speed",
              "loss_weights"),
    "optim": ("monitor",),
}


def _field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)] if cls is not None else []


def task_config_class(task: str):
    """The dataclass of the settings of task ``task`` (its ``config_cls``), or None when it has none."""
    from kerasface.train.tasks import task_class

    return task_class(task).config_cls


def task_sections() -> dict[str, type]:
    """Each registered task with settings of its own -> their dataclass (the built-in tasks loaded)."""
    from kerasface.registry import TASKS
    from kerasface.train.tasks import task_class

    for name in BUILTIN_TASKS:
        task_class(name)
    return {name: TASKS.get(name).config_cls for name in TASKS.names() if TASKS.get(name).config_cls is not None}


def setting_names() -> set[str]:
    """Every flat settings name: top-level, shared sections' (and their aliases) and the registered tasks' own."""
    from kerasface.registry import TASKS

    names = set(TOP_LEVEL) | set(FLAT_ALIASES) | {n for cls in SECTIONS.values() for n in _field_names(cls)}
    for task in TASKS.names():
        names.update(_field_names(TASKS.get(task).config_cls))
    return names


def _owners(task: str) -> dict[str, str]:
    """Field name -> its section in a run of ``task``: the shared sections' fields, then the task's own."""
    owner = {name: section for section, cls in SECTIONS.items() for name in _field_names(cls)}
    owner.update({name: task for name in _field_names(task_config_class(task))})
    return owner


def _sectioned(values: dict, task: str, source: str, other_tasks: str = "refuse") -> dict:
    """``values`` (sections, flat keys, or both) in config.json's shape for a run of ``task``: the
    top-level settings, and a dict per section. A setting of another task's section is refused,
    naming that section (``other_tasks="drop"``: left out, as a command's defaults are when the run
    is another task's); an unknown one is refused with the known ones listed. A key where the config
    files of older runs kept it (``OLD_LOCATIONS``) moves to the task's section, or is left out when
    the task has no such setting (those files held every task's settings)."""
    owner = _owners(task)
    out: dict = {}
    unknown, foreign, moved, dropped = [], [], [], []

    def another_tasks(key: str, name: str) -> None:
        others = [f"{other!r}" for other, cls in task_sections().items() if name in _field_names(cls)]
        if not others:
            unknown.append(key)
        elif other_tasks == "refuse":
            foreign.append(f"{key!r} is a setting of section {' or '.join(others)} (that task's own)")

    for key, value in values.items():
        key = key.replace("-", "_")
        if key in TOP_LEVEL:
            out[key] = value
        elif isinstance(value, dict) and (key in SECTIONS or key == task):
            for name, inner in value.items():
                name = name.replace("-", "_")
                if owner.get(name) == key:
                    out.setdefault(key, {})[name] = inner
                elif name in OLD_LOCATIONS.get(key, ()) and owner.get(name) == task:
                    out.setdefault(task, {})[name] = inner
                    moved.append(f"{key}.{name}")
                elif name in OLD_LOCATIONS.get(key, ()):
                    dropped.append(f"{key}.{name}")
                else:
                    another_tasks(f"{key}.{name}", name)
        elif isinstance(value, dict) and key in task_sections():
            foreign.append(f"section {key!r} holds the {key} task's settings")
        elif FLAT_ALIASES.get(key, key) in owner:
            name = FLAT_ALIASES.get(key, key)
            out.setdefault(owner[name], {})[name] = value
        else:
            another_tasks(key, key)
    if foreign:
        raise ValueError(f"{source}: {'; '.join(foreign)}; this run's task is {task!r}")
    if unknown:
        known = sorted(set(TOP_LEVEL) | set(owner) | set(FLAT_ALIASES) - {"path"})
        raise ValueError(f"{source}: unknown setting(s) {sorted(unknown)}; known: {known}")
    if moved or dropped:
        warnings.warn(f"{source}: an older run's config: " + "; ".join(
            ([f"{', '.join(moved)} now in section {task!r}"] if moved else [])
            + ([f"{', '.join(dropped)} left out (not settings of the {task} task)"] if dropped else [])),
            DeprecationWarning, stacklevel=3)
    return out


def _merge(*layers: dict) -> dict:
    """Layers of ``_sectioned`` settings, each section merged key by key; later layers win."""
    merged: dict = {}
    for layer in layers:
        for key, value in layer.items():
            merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    return merged


@dataclasses.dataclass
class TrainConfig:
    """One run: the task (``kerasface.train.tasks.TASKS``), the shared sections, the task's own
    settings (``task_config``: an instance of the task's ``config_cls``, its defaults unless given;
    None for a task without), seed and run folder."""

    task: str = DEFAULT_TASK
    seed: int = 0
    out: str = "reports"
    run_id: str | None = None
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    task_config: Any = None
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)

    def __post_init__(self):
        own = task_config_class(self.task)
        if self.task_config is None and own is not None:
            self.task_config = own()
        elif (self.task_config is not None) if own is None else not isinstance(self.task_config, own):
            expected = own.__name__ if own is not None else "None (the task has no settings of its own)"
            raise TypeError(f"task_config of a {self.task} run must be {expected}, got {self.task_config!r}")

    def to_dict(self) -> dict:
        """config.json's shape: top-level settings, then the sections (the task's named as the task)."""
        values = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "task_config":
                if value is not None:
                    values[self.task] = dataclasses.asdict(value)
            else:
                values[field.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        return values

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "TrainConfig":
        """From sections (``{"data": {...}, "recognition": {...}}``), flat keys, or both; an unknown
        key, or one of another task's section, is refused by name."""
        task = values.get("task", DEFAULT_TASK)
        return cls.from_sections(_sectioned(values, task, source))

    @classmethod
    def from_sections(cls, values: dict) -> "TrainConfig":
        """From settings in config.json's shape, every key known (``_sectioned``'s output)."""
        task = values.get("task", DEFAULT_TASK)
        own = task_config_class(task)
        kwargs = {key: values[key] for key in TOP_LEVEL if key in values}
        kwargs.update({name: section(**values.get(name, {})) for name, section in SECTIONS.items()})
        return cls(**kwargs, task_config=own(**values.get(task, {})) if own is not None else None)

    def replace(self, **flat) -> "TrainConfig":
        """A copy with flat settings changed (``config.replace(epochs=12)``); with another ``task``,
        the task's own settings start from that task's defaults."""
        task = flat.get("task", self.task)
        values = self.to_dict()
        if task != self.task:
            values.pop(self.task, None)
        return TrainConfig.from_sections(_merge(_sectioned(values, task, "config"), _sectioned(flat, task, "replace")))


def load_config_file(path) -> dict:
    """Settings from a YAML or JSON file (nested sections or flat keys as the long flags)."""
    return read_settings_file(path, "config file")


def load_run_config(run_dir) -> TrainConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no run configuration; is {run_dir} a run folder?")
    return TrainConfig.from_dict(json.loads(path.read_text()), source=str(path))


def add_config_arguments(parser: argparse.ArgumentParser, task_names=()) -> None:
    """One flag per setting of the shared sections, and ``--task`` among ``task_names`` (the first
    is the default shown); defaults are None so that a config file can fill them. A task's own
    flags come from its ``add_arguments``."""
    from kerasface.train.tasks import task_class

    d = TrainConfig()
    data, model, optim = d.data, d.model, d.optim
    a = parser.add_argument
    a("--config", help="YAML or JSON file of settings (sections data/model/optim/runtime and one named as the task, "
      "or flat keys named as these flags); flags override it")
    tasks = "; ".join(f"{name} = {task_class(name).summary}" for name in task_names)
    a("--task", choices=list(task_names) or None,
      help=f"what the run learns (default {task_names[0] if task_names else d.task})" + (f": {tasks}" if tasks else ""))
    g = parser.add_argument_group("data")
    a = g.add_argument
    a("--data", help="image folder (identity sub-folders), CSV (path + label columns) or TFRecord "
      "folder; default: the embedded demo dataset, generated once into the cache")
    a("--skip-bad", action="store_true", default=None, help="leave out unusable files (listed) instead of failing")
    a("--verify", choices=VERIFY, help="image check before training: auto (full decode up to 20,000 "
      "images, header check above), full, header, none")
    a("--undersample", help="'paper' for fixed per-label factors (gender 3, emotion 1.5, pose 2, facial_hair "
      "2.25, occlusion 1.75, spectacles 2.5; 'seed' is its deprecated name), or a JSON/YAML undersampling config")
    a("--split", choices=SPLITS, help="sample: stratified by identity; identity: disjoint identities")
    a("--test-fraction", type=float, help=f"share of data held out for test (default {data.test_fraction}); 0: no "
      "test split, for a recognition run scored on its --val-pairs")
    a("--validation-fraction", type=float,
      help=f"share held out for validation (default {data.validation_fraction})")
    a("--image-size", type=int, help=f"side of each model input view in pixels (default {data.image_size})")
    a("--views", choices=VIEW_MODES,
      help="model inputs: three crops (left/center/right or top/center/bottom), three modality panels "
           f"of a photometric-stereo tile (see photometric_stereo.py), or one image (default {data.views})")
    a("--crop-fraction", type=float, help=f"crop side / image side for crop views (default {data.crop_fraction})")
    a("--resize-mode", choices=["pad", "stretch", "crop"], help="aspect handling (default pad)")
    a("--no-augment", action="store_false", dest="augment", default=None, help="switch augmentation off")
    a("--flip", choices=FLIPS, help="horizontal flip: auto (on; labels that name a side, such as "
      "pose=left/right, are swapped with the image), off")
    a("--max-rotation", type=float, help=f"augmentation rotation range in degrees (default {data.max_rotation})")
    a("--noise-sigma", type=float, help="gaussian noise std as a fraction of the value range (default 0.05)")
    a("--cache", choices=CACHES, help="keep decoded images in memory: auto (when they fit in 2 GiB), "
      "memory, off")
    a("--input-order", choices=INPUT_ORDERS, help="deterministic (default: batches reproducible under the seed) or "
      "fast (parallel reads and maps hand out elements as they finish; one replica only, and not with "
      "--deterministic)")
    a("--sampler", choices=SAMPLERS, help="training batches: shuffle, or pk (P identities x K images)")
    a("--pk-identities", type=int, help=f"P of P x K batches (default {data.pk_identities})")
    a("--pk-images", type=int, help=f"K of P x K batches (default {data.pk_images})")
    a("--demo-identities", type=int, help=f"identities used from the demo data (default {data.demo_identities})")
    a("--demo-images-per-identity", type=int,
      help=f"images per identity in the demo data (default {data.demo_images_per_identity})")
    g = parser.add_argument_group("model")
    a = g.add_argument
    a("--backbone", help=f"branch backbone by name (default {model.backbone}); see --list-backbones")
    a("--backbone-kwargs", type=json_object, metavar="JSON",
      help='extra backbone options as a JSON object, e.g. \'{"patch_size": 16, "dim": 256}\' for vit')
    a("--preset", choices=[*PRESETS, "seed"], help="paper: the reference layout (include_top "
      "backbones, concat -> Dense 256 ReLU -> Dense N sigmoid; 'seed' is its deprecated name); "
      "default: pooled features")
    a("--head", help=f"how branches are joined: concat, vote, embedding (default {model.head})")
    a("--vote", choices=["mean", "sum", "learned"], help="vote head combination (default mean)")
    a("--shared-weights", action="store_true", default=None, help="one backbone for every branch")
    a("--freeze-branches", type=int, nargs="*", help="indices of branches whose weights stay fixed")
    a("--init-branches", help="a run folder or .keras file of an earlier run to initialise branches from "
      "(a config file may give a list: one source per branch)")
    a("--bn-momentum", type=float, help="batch-norm moving-average momentum (default 0.9, PyTorch's; "
      "Keras's 0.99 needs hundreds of steps before evaluation statistics settle)")
    g = parser.add_argument_group("optimisation")
    a = g.add_argument
    a("--epochs", type=int, help=f"epochs (default {optim.epochs})")
    a("--batch-size", type=int, help=f"batch size per replica (default {optim.batch_size})")
    a("--optimizer", choices=OPTIMIZERS, help=f"optimizer (default {optim.optimizer})")
    a("--learning-rate", "--lr", type=float, dest="learning_rate",
      help=f"learning rate (default {optim.learning_rate})")
    a("--lr-schedule", choices=LR_SCHEDULES, help="constant, cosine decay to 0 over the run, or x0.1 "
      "steps at 1/2 and 3/4 of it")
    a("--weight-decay", type=float, help="weight decay (default: 1e-4 for adamw, none for sgd and adam; "
      "0 means none)")
    a("--early-stopping", type=int, help="stop after this many epochs without validation improvement")
    a("--max-steps-per-epoch", type=int, help="cap on training steps per epoch (quick checks)")
    g = parser.add_argument_group("runtime")
    a = g.add_argument
    a("--strategy", choices=STRATEGIES, help="distribution strategy (default auto)")
    a("--mixed-precision", choices=PRECISIONS, help="auto (bf16 TPU, fp16 GPU, off CPU), off, float16, bfloat16")
    a("--jit-compile", choices=JIT_CHOICES, help="XLA: auto (see docs/benchmarks.md: on for GPU, TPU and JAX, off for "
      "TensorFlow on CPU), on, off")
    a("--deterministic", action="store_true", default=None,
      help="deterministic ops (TensorFlow op determinism): two runs with one seed give identical figures")
    a("--no-tensorboard", action="store_false", dest="tensorboard", default=None, help="no TensorBoard logs")
    g = parser.add_argument_group("run")
    a = g.add_argument
    a("--seed", type=int, help="seed for splits, shuffling, augmentation and weights (default 0)")
    a("--out", help="folder that receives the run folder (default reports)")
    a("--run-id", help="name of the run folder (default: backbone, views and time)")


def config_from_args(args: argparse.Namespace, defaults: dict | None = None,
                     demo_defaults: dict | Callable[[TrainConfig], dict] | None = None, tasks=None) -> TrainConfig:
    """Defaults (flat keys; a front end's own, under the file), the ``--config`` file, then flags;
    ``demo_defaults`` go over the defaults (under file and flags) when neither file nor flags
    name a dataset (the run trains on the demo data): a dict, or a function of the config
    without them that returns one (for defaults that depend on other settings, e.g. the loss).
    Defaults of settings that the run's task does not have are left out; ``tasks``: the tasks
    the front end trains, another is refused."""
    path = getattr(args, "config", None)
    file = load_config_file(path) if path else {}
    names = setting_names()
    flags = {k: v for k, v in vars(args).items() if v is not None and k in names}
    defaults = dict(defaults or {})
    task = flags.get("task") or file.get("task") or defaults.get("task") or DEFAULT_TASK
    if tasks and task not in tasks:
        raise ValueError(f"{path or 'flags'}: a run of the {task} task; this command trains the "
                         f"{' or '.join(tasks)} task")
    given = _merge(_sectioned(file, task, str(path)), _sectioned(flags, task, "flags"))

    def settings(base: dict) -> TrainConfig:
        return TrainConfig.from_sections(_merge(_sectioned(base, task, "defaults", other_tasks="drop"), given))

    config = settings(defaults)
    if demo_defaults and config.data.path is None:
        demo = demo_defaults(config) if callable(demo_defaults) else demo_defaults
        config = settings({**defaults, **demo})
    return config
