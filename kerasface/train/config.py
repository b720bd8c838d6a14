"""A branch-training run's configuration: one dataclass, filled from defaults, a YAML/JSON file
and command-line flags (in that order of precedence, flags last)."""

from __future__ import annotations

import argparse
import dataclasses
import json

from kerasface.data.crops import VIEW_MODES
from kerasface.data.pipeline import InputConfig
from kerasface.settings_file import read_settings_file
from kerasface.train.runtime import JIT_CHOICES, PRECISIONS, STRATEGIES

SPLITS = ("sample", "identity")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine", "step")


@dataclasses.dataclass
class TrainConfig:
    backbone: str = "densenet121"
    backbone_kwargs: dict = dataclasses.field(default_factory=dict)
    preset: str | None = None
    views: str = "crops-horizontal"
    head: str = "concat"
    vote: str = "mean"
    shared_weights: bool = False
    image_size: int = 48
    crop_fraction: float = 0.875
    resize_mode: str = "pad"
    data: str | None = None
    skip_bad: bool = False
    verify: str = "full"
    undersample: str | None = None
    epochs: int = 6
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 3e-4
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    bn_momentum: float | None = 0.9
    split: str = "sample"
    test_fraction: float = 0.5
    validation_fraction: float = 0.1
    augment: bool = True
    max_rotation: float = 15.0
    noise_sigma: float = 0.05
    freeze_branches: list[int] = dataclasses.field(default_factory=list)
    init_branches: str | None = None
    jit_compile: str = "auto"
    mixed_precision: str = "auto"
    strategy: str = "auto"
    early_stopping: int | None = None
    cache: bool = True
    seed: int = 0
    out: str = "reports"
    run_id: str | None = None
    demo_identities: int = 40
    demo_images_per_identity: int = 20
    max_steps_per_epoch: int | None = None
    tensorboard: bool = True

    def __post_init__(self):
        checks = [
            ("views", VIEW_MODES), ("split", SPLITS), ("optimizer", OPTIMIZERS),
            ("lr_schedule", LR_SCHEDULES), ("jit_compile", JIT_CHOICES),
            ("mixed_precision", PRECISIONS), ("strategy", STRATEGIES),
        ]
        for name, allowed in checks:
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "image_size"):
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
    def num_branches(self) -> int:
        return 1 if self.views == "single" else 3

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source}: unknown setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


def load_config_file(path) -> dict:
    """Settings from a YAML or JSON file (keys as the long flags, with underscores)."""
    values = read_settings_file(path, "config file")
    return {k.replace("-", "_"): v for k, v in values.items()}


def json_object(text: str) -> dict:
    """argparse type: a JSON object (``{...}``)."""
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {text!r} ({error})") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}}, got {text!r}")
    return value


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ``TrainConfig`` field; defaults are None so a config file can fill them."""
    d = TrainConfig()
    a = parser.add_argument
    a("--config", help="YAML or JSON file of settings (keys as these flags); flags override it")
    a("--backbone", help=f"branch backbone by name (default {d.backbone}); see --list-backbones")
    a("--backbone-kwargs", type=json_object, metavar="JSON",
      help='extra backbone options as a JSON object, e.g. \'{"patch_size": 16, "dim": 256}\' for vit')
    a("--preset", choices=["seed"], help="the research notes' exact layout (include_top "
      "backbones, concat -> Dense 256 ReLU -> Dense N sigmoid); default: pooled features")
    a("--views", choices=VIEW_MODES,
      help="model inputs: three crops (left/center/right or top/center/bottom), three modality panels "
           f"of a photometric-stereo tile (see photometric_stereo.py), or one image (default {d.views})")
    a("--head", help=f"how branches are joined: concat, vote, embedding (default {d.head})")
    a("--vote", choices=["mean", "sum", "learned"], help="vote head combination (default mean)")
    a("--shared-weights", action="store_true", default=None, help="one backbone for every branch")
    a("--image-size", type=int, help=f"side of each model input view in pixels (default {d.image_size})")
    a("--crop-fraction", type=float, help=f"crop side / image side for crop views (default {d.crop_fraction})")
    a("--resize-mode", choices=["pad", "stretch", "crop"], help="aspect handling (default pad)")
    a("--data", help="image folder (identity sub-folders), CSV (path + label columns) or TFRecord "
      "folder; default: the embedded demo dataset, generated once into the cache")
    a("--skip-bad", action="store_true", default=None, help="leave out unusable files (listed) instead of failing")
    a("--verify", choices=["full", "header", "none"], help="image check before training (default full)")
    a("--undersample", help="'seed' for the notes' per-label factors, or a JSON/YAML undersampling config")
    a("--epochs", type=int, help=f"epochs (default {d.epochs})")
    a("--batch-size", type=int, help=f"batch size per replica (default {d.batch_size})")
    a("--optimizer", choices=OPTIMIZERS, help=f"optimizer (default {d.optimizer})")
    a("--learning-rate", "--lr", type=float, dest="learning_rate", help=f"learning rate (default {d.learning_rate})")
    a("--lr-schedule", choices=LR_SCHEDULES, help="constant, cosine decay, or x0.1 steps at 1/2 and 3/4")
    a("--weight-decay", type=float, help="weight decay for adamw/sgd (default 0)")
    a("--bn-momentum", type=float, help="batch-norm moving-average momentum (default 0.9, PyTorch's; "
      "Keras's 0.99 needs hundreds of steps before evaluation statistics settle)")
    a("--split", choices=SPLITS, help="sample: stratified by identity; identity: disjoint identities")
    a("--test-fraction", type=float, help=f"share of data held out for test (default {d.test_fraction})")
    a("--validation-fraction", type=float, help=f"share held out for validation (default {d.validation_fraction})")
    a("--no-augment", action="store_false", dest="augment", default=None, help="switch augmentation off")
    a("--max-rotation", type=float, help=f"augmentation rotation range in degrees (default {d.max_rotation})")
    a("--noise-sigma", type=float, help="gaussian noise std as a fraction of the value range (default 0.05)")
    a("--freeze-branches", type=int, nargs="*", help="indices of branches whose weights stay fixed")
    a("--init-branches", help="a run folder or .keras file of an earlier run to initialise branches from")
    a("--jit-compile", choices=JIT_CHOICES, help="XLA: auto (on for GPU/TPU, off on CPU), on, off")
    a("--mixed-precision", choices=PRECISIONS, help="auto (bf16 TPU, fp16 GPU, off CPU), off, float16, bfloat16")
    a("--strategy", choices=STRATEGIES, help="distribution strategy (default auto)")
    a("--early-stopping", type=int, help="stop after this many epochs without validation improvement")
    a("--no-cache", action="store_false", dest="cache", default=None, help="do not keep decoded images in memory")
    a("--seed", type=int, help="seed for splits, shuffling, augmentation and weights (default 0)")
    a("--out", help="folder that receives the run folder (default reports)")
    a("--run-id", help="name of the run folder (default: backbone, views and time)")
    a("--demo-identities", type=int, help=f"identities used from the demo data (default {d.demo_identities})")
    a("--demo-images-per-identity", type=int, help="images per identity in the demo data (default 20)")
    a("--max-steps-per-epoch", type=int, help="cap on training steps per epoch (quick checks)")
    a("--no-tensorboard", action="store_false", dest="tensorboard", default=None, help="no TensorBoard logs")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = load_config_file(args.config) if getattr(args, "config", None) else {}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for name, value in vars(args).items():
        if name in fields and value is not None:
            values[name] = value
    return TrainConfig.from_dict(values, source=getattr(args, "config", None) or "flags")
