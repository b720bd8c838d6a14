"""A run's configuration, in sections: data, model, optimisation and runtime.

    config = TrainConfig.from_dict({"task": "attributes", "model": {"backbone": "resnet50"}})
    config = TrainConfig.from_dict({"backbone": "resnet50", "epochs": 10})   # flat keys work too

Settings come from the defaults, then a YAML/JSON file, then command-line flags (flags win).
Every field has a unique name across the sections, so a flat key (``--image-size``,
``image_size:``) names exactly one of them; ``data`` is the flat name of ``data.path``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import warnings
from collections.abc import Callable
from pathlib import Path

from kerasface.data.crops import VIEW_MODES, VIEW_NAMES
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
    val_pairs: list[str] = dataclasses.field(default_factory=list)
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
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must lie in (0, 1), got {self.test_fraction}")
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
    """The network: backbone per branch, how branches are joined, what is frozen or initialised."""

    backbone: str = "densenet121"
    backbone_kwargs: dict = dataclasses.field(default_factory=dict)
    preset: str | None = None
    head: str = "concat"
    vote: str = "mean"
    shared_weights: bool = False
    freeze_branches: list[int] = dataclasses.field(default_factory=list)
    init_branches: str | list[str] | None = None
    modalities: list[str] = dataclasses.field(default_factory=list)
    # recognition task: an embedding model (.keras or run folder) to start from, under a new head
    init: str | None = None
    # recognition task: epochs at the start in which the embedding model stays fixed (the head trains)
    freeze_backbone_epochs: int = 0
    bn_momentum: float | None = 0.9
    loss: str = "arcface"
    loss_kwargs: dict = dataclasses.field(default_factory=dict)
    paper_settings: bool = False
    embedding_dim: int = 512
    # multitask task: attribute columns (empty: all), heads, adversaries and loss weights
    attributes: list[str] = dataclasses.field(default_factory=list)
    head_units: int = 128
    adversarial: bool = True
    reversal_lambda: float = 1.0
    reversal_warmup: float = 0.0
    adversary_speed: float = 1.0
    loss_weights: dict = dataclasses.field(default_factory=dict)

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
    monitor: str = "validation"
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
FLAT_ALIASES = {"data": "path"}


def _section_of() -> dict[str, str]:
    owner = {}
    for section, cls in SECTIONS.items():
        for field in dataclasses.fields(cls):
            owner[field.name] = section
    return owner


@dataclasses.dataclass
class TrainConfig:
    """One run: the task (``kerasface.train.tasks.TASKS``), its sections, seed and run folder."""

    task: str = "attributes"
    seed: int = 0
    out: str = "reports"
    run_id: str | None = None
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "TrainConfig":
        """From nested sections (``{"data": {...}}``), flat keys, or both; an unknown key is
        refused with the known ones listed."""
        top = {f.name for f in dataclasses.fields(cls)} - set(SECTIONS)
        owner = _section_of()
        kwargs: dict = {}
        sections: dict[str, dict] = {name: {} for name in SECTIONS}
        unknown = []
        for key, value in values.items():
            key = key.replace("-", "_")
            if key in SECTIONS and isinstance(value, dict):
                for name, inner in value.items():
                    name = name.replace("-", "_")
                    if owner.get(name) != key:
                        unknown.append(f"{key}.{name}")
                    sections[key][name] = inner
            elif key in top:
                kwargs[key] = value
            elif FLAT_ALIASES.get(key, key) in owner:
                name = FLAT_ALIASES.get(key, key)
                sections[owner[name]][name] = value
            else:
                unknown.append(key)
        if unknown:
            known = sorted(top | set(owner) | set(FLAT_ALIASES) - {"path"})
            raise ValueError(f"{source}: unknown setting(s) {sorted(unknown)}; known: {known}")
        for name, cls_ in SECTIONS.items():
            kwargs[name] = cls_(**sections[name])
        return cls(**kwargs)

    def replace(self, **flat) -> "TrainConfig":
        """A copy with flat settings changed (``config.replace(epochs=12)``)."""
        values = self.to_dict()
        merged = {k: v for k, v in values.items() if k not in SECTIONS}
        for section in SECTIONS:
            merged.update(values[section])
        merged.update({FLAT_ALIASES.get(k, k): v for k, v in flat.items()})
        return TrainConfig.from_dict(merged)


def load_config_file(path) -> dict:
    """Settings from a YAML or JSON file (nested sections or flat keys as the long flags)."""
    return read_settings_file(path, "config file")


def load_run_config(run_dir) -> TrainConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no run configuration; is {run_dir} a run folder?")
    return TrainConfig.from_dict(json.loads(path.read_text()), source=str(path))


def add_config_arguments(parser: argparse.ArgumentParser, task_names=()) -> None:
    """One flag per setting; defaults are None so that a config file can fill them."""
    from kerasface.train.recognition import loss_choices

    d = TrainConfig()
    data, model, optim = d.data, d.model, d.optim
    a = parser.add_argument
    a("--config", help="YAML or JSON file of settings (sections data/model/optim/runtime, or flat keys "
      "named as these flags); flags override it")
    a("--task", choices=list(task_names) or None,
      help=f"what the run learns (default {d.task}): attributes = multi-label attribute classification "
           "from CSV label columns; identity = closed-set identity classification")
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
    a("--test-fraction", type=float, help=f"share of data held out for test (default {data.test_fraction})")
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
    a("--modalities", nargs="+", choices=VIEW_NAMES["modalities"],
      help="recognition task with --views modalities: the tile panels the embedding reads, one branch each, "
           "fused by concatenation when several (default all three)")
    a("--loss", help=f"recognition task: {loss_choices()} (default arcface)")
    a("--loss-kwargs", type=json_object, metavar="JSON", help='options of the head or loss, e.g. \'{"margin": 0.4}\'')
    a("--embedding-dim", type=int, help="recognition task: embedding size (default 512)")
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
                     demo_defaults: dict | Callable[[TrainConfig], dict] | None = None) -> TrainConfig:
    """Defaults (flat keys; a front end's own, under the file), the ``--config`` file, then flags;
    ``demo_defaults`` go over the defaults (under file and flags) when neither file nor flags
    name a dataset (the run trains on the demo data): a dict, or a function of the config
    without them that returns one (for defaults that depend on other settings, e.g. the loss)."""
    file = load_config_file(args.config) if getattr(args, "config", None) else {}
    known = set(_section_of()) | set(FLAT_ALIASES) | {f.name for f in dataclasses.fields(TrainConfig)}
    flat = {k: v for k, v in vars(args).items() if v is not None and k in known}
    source = getattr(args, "config", None) or "flags"

    def settings(base: dict) -> TrainConfig:
        merged = {**base, **file}
        for key, value in flat.items():
            name = FLAT_ALIASES.get(key, key)
            section = _section_of().get(name)
            if section and isinstance(merged.get(section), dict):
                merged[section] = {**merged[section], name: value}
            else:
                merged[key] = value
        return TrainConfig.from_dict(merged, source=source)

    config = settings(dict(defaults or {}))
    if demo_defaults and config.data.path is None:
        demo = demo_defaults(config) if callable(demo_defaults) else demo_defaults
        config = settings({**(defaults or {}), **demo})
    return config


LOSS_WEIGHT_GROUPS = ("id", "attributes", "adversarial")


def resolve_loss_weights(weights: dict, attributes, adversarial: bool) -> dict[str, float]:
    """The multitask task's ``model.loss_weights`` (keys ``id``, ``attributes``, ``adversarial``,
    or one attribute ``a`` / ``da_a``; 1 by default) as its weight per output in the total loss."""
    from kerasface.models.multitask import ID_OUTPUT

    known = set(LOSS_WEIGHT_GROUPS) | set(attributes) | {f"da_{a}" for a in attributes}
    unknown = sorted(set(weights) - known)
    if unknown:
        raise ValueError(f"unknown loss weight(s) {unknown}; known: {sorted(known)}")
    for key, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"loss weight {key!r} must be a number >= 0, got {value!r}")
    out = {ID_OUTPUT: float(weights.get("id", 1.0))}
    for a in attributes:
        out[a] = float(weights.get(a, weights.get("attributes", 1.0)))
        if adversarial:
            out[f"da_{a}"] = float(weights.get(f"da_{a}", weights.get("adversarial", 1.0)))
    return out
