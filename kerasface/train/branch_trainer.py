"""The branch trainer: data -> split -> pipelines -> multi-branch model -> fit -> report.

    run_dir = train_branches(TrainConfig(backbone="densenet121"))

A run lives in ``<out>/<run-id>/``: ``config.json``, ``checkpoints/`` (resumable),
``history.csv``, ``tensorboard/``, ``model.keras`` and the report (``report.md``,
``report.json``, plots). ``train_branches(resume=run_dir)`` continues an interrupted run at
the epoch after its last checkpoint, with the optimizer state.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shlex
import sys
import time
from pathlib import Path

import keras
import numpy as np

from kerasface.data.augment import AugmentConfig
from kerasface.data.crops import VIEW_NAMES
from kerasface.data.balance import SEED_UNDERSAMPLING, load_undersampling_config, undersample, undersample_table
from kerasface.data.pipeline import build_pipeline
from kerasface.data.readers import read_dataset
from kerasface.data.spec import DatasetSpec, Samples
from kerasface.data.splits import split_samples
from kerasface.models import build_branch_model, init_branches_from, seed_preset
from kerasface.train.callbacks import (
    link_or_copy_atomic,
    read_run_state,
    save_model_atomic,
    standard_callbacks,
    write_json_atomic,
)
from kerasface.train.config import TrainConfig
from kerasface.train.runtime import Runtime, resolve_runtime
from kerasface.train.tasks import Task, task_for

CONFIG_FILE = "config.json"


@dataclasses.dataclass
class RunData:
    spec: DatasetSpec
    splits: dict[str, Samples]
    notes: list[str]


def dataset_path(config: TrainConfig) -> str:
    """``config.data``, or the demo dataset (generated into the cache on first use)."""
    if config.data:
        return config.data
    from kerasface.datasets.demo import DemoConfig, ensure_demo_dataset

    demo = DemoConfig(identities=config.demo_identities, images_per_identity=config.demo_images_per_identity)
    return str(ensure_demo_dataset(config=demo))


def load_run_data(config: TrainConfig, progress: bool = True) -> RunData:
    """Read the dataset (the demo data when ``config.data`` is None), split it and undersample
    the training part."""
    notes = []
    _, spec = read_dataset(dataset_path(config), skip_bad=config.skip_bad, verify=config.verify, progress=progress)
    if spec.skipped:
        notes.append(f"skipped {len(spec.skipped)} unusable input(s); see the dataset summary")
    parts = split_samples(spec, mode=config.split, test_fraction=config.test_fraction,
                          validation_fraction=config.validation_fraction, seed=config.seed)
    names = ("train", "validation", "test") if len(parts) == 3 else ("train", "test")
    splits = dict(zip(names, parts))
    if config.undersample:
        settings = ({"factors": SEED_UNDERSAMPLING} if config.undersample == "seed"
                    else load_undersampling_config(config.undersample))
        settings.setdefault("seed", config.seed)
        before = splits["train"]
        splits["train"] = undersample(spec, before, **settings)
        notes.append("undersampled the training split:\n" + undersample_table(before, splits["train"], spec))
        if len(splits["train"]) == 0:
            raise ValueError(f"--undersample {config.undersample} left no training samples")
        if len(splits["train"]) < len(before) / 4:
            notes.append(f"warning: undersampling kept {len(splits['train'])} of {len(before)} training samples; "
                         "factors compound, each column acting on what the columns before it kept; "
                         "give factors for fewer columns, or a target_ratio")
    return RunData(spec, splits, notes)


def make_pipelines(config: TrainConfig, data: RunData, task: Task, runtime: Runtime, first_epoch: int = 0) -> dict:
    """Batched pipelines per split; a resumed run (``first_epoch`` > 0) shuffles and augments
    under a seed of its own, not the first epochs' again."""
    batch = runtime.global_batch_size(config.batch_size)
    augment = AugmentConfig(max_rotation=config.max_rotation, noise_sigma=config.noise_sigma) if config.augment else None
    pipelines = {}
    for name, samples in data.splits.items():
        training = name == "train"
        dataset = build_pipeline(
            data.spec, samples, input_config=config.input_config(), target=task.target, batch_size=batch,
            training=training, augment=augment, cache=config.cache, seed=config.seed + first_epoch,
        )
        if training and config.max_steps_per_epoch:
            dataset = dataset.take(config.max_steps_per_epoch)
        pipelines[name] = dataset
    return pipelines


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    total = max(1, steps_per_epoch * config.epochs)
    lr = config.learning_rate
    if config.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=total)
    elif config.lr_schedule == "step":
        lr = keras.optimizers.schedules.PiecewiseConstantDecay(
            [total // 2, (3 * total) // 4], [lr, lr * 0.1, lr * 0.01])
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=config.weight_decay or 1e-4)
    return keras.optimizers.SGD(lr, momentum=0.9, weight_decay=config.weight_decay or None)


def build_model(config: TrainConfig, task: Task) -> keras.Model:
    shape = (config.image_size, config.image_size, 3)
    if config.preset == "seed":
        kwargs = seed_preset(config.backbone, shape)
        kwargs.update(num_outputs=task.num_outputs, output_activation=task.output_activation,
                      num_branches=config.num_branches)
    else:
        kwargs = dict(backbone=config.backbone, num_branches=config.num_branches, head=config.head,
                      num_outputs=task.num_outputs, input_shape=shape, backbone_kwargs=config.backbone_kwargs,
                      output_activation=task.output_activation, vote=config.vote)
    model = build_branch_model(
        **kwargs, shared_weights=config.shared_weights, frozen_branches=config.freeze_branches,
        input_names=VIEW_NAMES[config.views] if config.num_branches > 1 else None,
    )
    if config.init_branches:
        source = Path(config.init_branches)
        if source.is_dir():
            source = next((p for p in (source / "model.keras", source / "checkpoints" / "best.keras")
                           if p.is_file()), source / "model.keras")
        init_branches_from(model, str(source))
    if config.bn_momentum is not None:
        set_batchnorm_momentum(model, config.bn_momentum)
    return model


def set_batchnorm_momentum(model: keras.Model, momentum: float) -> int:
    """Set the moving-average momentum of every BatchNormalization layer, nested ones included."""
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"batch-norm momentum must lie in [0, 1), got {momentum}")
    def walk(layer):
        for child in getattr(layer, "layers", []):
            yield child
            yield from walk(child)

    layers = [l for l in walk(model) if isinstance(l, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.momentum = momentum
    return len(layers)


def parameter_counts(model: keras.Model) -> dict[str, int]:
    count = lambda weights: int(sum(np.prod(w.shape) for w in weights))
    return {"trainable_params": count(model.trainable_weights),
            "non_trainable_params": count(model.non_trainable_weights)}


def layout_text(config: TrainConfig, task: Task) -> str:
    n = config.num_branches
    inputs = f"{n} images" if n > 1 else "1 image"
    branch = f"{n}x {config.backbone}" if n > 1 else config.backbone
    branch += " (include_top)" if config.preset == "seed" else " (pooled)"
    head = {"concat": "concat -> Dense 256 ReLU", "vote": f"vote ({config.vote})",
            "embedding": "concat -> Dense -> L2"}.get(config.head, config.head)
    return f"{inputs} -> {branch} -> {head} -> Dense {task.num_outputs} {task.output_activation}"


def measure_input_pass(dataset) -> tuple[float, int]:
    """Seconds and images for one pass over ``dataset`` alone (this also fills its cache)."""
    start, images = time.perf_counter(), 0
    for x, _ in dataset:
        images += int((x[0] if isinstance(x, tuple) else x).shape[0])
    return time.perf_counter() - start, images


def _history_from_csv(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    keys = [k for k in (rows[0].keys() if rows else []) if k != "epoch"]
    missing = ("", "NA", None)  # CSVLogger writes "NA" for a metric an epoch did not log
    history = {k: [math.nan if r[k] in missing else float(r[k]) for r in rows] for k in keys}
    return {k: v for k, v in history.items() if not all(math.isnan(x) for x in v)}


def predict_split(model: keras.Model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Targets and scores of every batch; a short last batch is padded to the first batch's size
    so that the predict function is traced once."""
    ys, scores, full = [], [], None
    for x, y in dataset:
        views = [np.asarray(v) for v in (x if isinstance(x, tuple) else (x,))]
        n = int(views[0].shape[0])
        full = full or n
        if n < full:
            views = [np.concatenate([v, np.zeros((full - n, *v.shape[1:]), v.dtype)]) for v in views]
        score = model.predict_on_batch(views if len(views) > 1 else views[0])
        scores.append(np.asarray(score, np.float32)[:n])
        ys.append(np.asarray(y))
    return np.concatenate(ys), np.concatenate(scores)


def score_predictions(task: Task, y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
    """The run's loss and metrics over whole-split predictions (one predict pass instead of an
    evaluate pass, which would trace another function of the model)."""
    results = {"loss": float(task.loss()(y_true, y_score))}
    for metric in task.metrics():
        metric.update_state(y_true, y_score)
        results[metric.name] = float(metric.result())
    return results


def new_run_dir(config: TrainConfig) -> Path:
    run_id = config.run_id or f"{config.backbone}-{config.views}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(config.out) / run_id
    if (run_dir / CONFIG_FILE).exists():
        raise FileExistsError(f"{run_dir} already holds a run; continue it with --resume {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def load_run_config(run_dir) -> TrainConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no run configuration; is {run_dir} a run folder?")
    return TrainConfig.from_dict(json.loads(path.read_text()), source=str(path))


def dry_run(config: TrainConfig) -> dict:
    """Build the model as a run would, print its summary and return its parameter counts."""
    spec_outputs = 10
    task = Task("attributes", "labels", spec_outputs, "sigmoid", [], lambda: None, lambda: [])
    if config.data:
        task = task_for(read_dataset(config.data, verify="none")[1])
    runtime = resolve_runtime(config.strategy, config.mixed_precision, config.jit_compile)
    with runtime.scope():
        model = build_model(config, task)
    model.summary()
    return {"model": model.name, "layout": layout_text(config, task), **parameter_counts(model)}


def train_branches(config: TrainConfig | None = None, resume=None, log=print, callbacks=()) -> Path:
    """Train (or, with ``resume``, continue) one run; returns the run folder. ``callbacks`` are
    added to the run's own (checkpoints, CSV log, TensorBoard, early stopping, NaN guard)."""
    if resume is not None:
        run_dir = Path(resume)
        saved = load_run_config(run_dir)
        config = dataclasses.replace(saved, epochs=config.epochs) if config else saved
        state = read_run_state(run_dir / "checkpoints") or {"epoch": 0}
    else:
        config = config or TrainConfig()
        if config.head == "embedding":
            raise ValueError(
                "head 'embedding' gives L2-normalised embeddings, which train with a metric-learning "
                "loss (triplet, ArcFace, ...), not with the attribute or identity-classification task "
                "of this trainer; build it with --dry-run, or train with --head concat or vote")
        run_dir = new_run_dir(config)
        state = {"epoch": 0}
    write_json_atomic(run_dir / CONFIG_FILE, config.to_dict())
    keras.utils.set_random_seed(config.seed + state["epoch"])
    started = time.perf_counter()

    data = load_run_data(config)
    for note in data.notes:
        log(note)
    task = task_for(data.spec)
    runtime = resolve_runtime(config.strategy, config.mixed_precision, config.jit_compile)
    log(f"{data.spec.source}: {len(data.spec.samples)} images, task {task.name} "
        f"({task.num_outputs} outputs); split " + ", ".join(f"{k} {len(v)}" for k, v in data.splits.items()))
    log("runtime: " + json.dumps(runtime.describe()))
    pipelines = make_pipelines(config, data, task, runtime, first_epoch=state["epoch"])
    steps = math.ceil(len(data.splits["train"]) / runtime.global_batch_size(config.batch_size))
    if config.max_steps_per_epoch:
        steps = min(steps, config.max_steps_per_epoch)

    checkpoint = run_dir / "checkpoints" / "last.keras"
    with runtime.scope():
        if state["epoch"] > 0 and checkpoint.is_file():
            model = keras.models.load_model(checkpoint)
            log(f"resuming {run_dir} after epoch {state['epoch']}")
        else:
            state = {"epoch": 0}
            model = build_model(config, task)
            runtime.compile(model, make_optimizer(config, steps), task.loss(), task.metrics())
    counts = parameter_counts(model)
    log(f"{model.name}: {counts['trainable_params']:,} trainable, {counts['non_trainable_params']:,} non-trainable")

    data_time, images = measure_input_pass(pipelines["train"])
    log(f"input pipeline alone: {data_time:.1f} s for {images} training images ({images / max(data_time, 1e-9):.0f} img/s)")
    monitor = task.monitor if "validation" in pipelines else "loss"
    callbacks = standard_callbacks(run_dir, monitor, task.mode, config.early_stopping,
                                   tensorboard=config.tensorboard, resume=state["epoch"] > 0) + list(callbacks)
    fit_start = time.perf_counter()
    try:
        fitted = model.fit(pipelines["train"], validation_data=pipelines.get("validation"), epochs=config.epochs,
                           initial_epoch=state["epoch"], callbacks=callbacks, shuffle=False,  # the pipeline shuffles
                           verbose=1 if sys.stdout.isatty() else 2)
    except KeyboardInterrupt:
        log(f"interrupted; continue with: python pipelines/train_branches.py --resume {run_dir}")
        raise
    fit_time = time.perf_counter() - fit_start
    last_epoch = fitted.epoch[-1] + 1 if fitted.epoch else state["epoch"]
    if read_run_state(run_dir / "checkpoints", {}).get("epoch") == last_epoch:
        link_or_copy_atomic(checkpoint, run_dir / "model.keras")  # the same weights, already on disk
    else:
        save_model_atomic(model, run_dir / "model.keras")

    history = _history_from_csv(run_dir / "history.csv")
    results = {"train": {k: v[-1] for k, v in history.items() if not k.startswith("val_")}}
    if "validation" in pipelines:
        results["validation"] = {k[4:]: v[-1] for k, v in history.items() if k.startswith("val_")}
    y_true, y_score = predict_split(model, pipelines["test"])
    results["test"] = score_predictions(task, y_true, y_score)
    roc = None
    if task.name == "attributes":
        roc = {label: (y_true[:, j], y_score[:, j]) for j, label in enumerate(task.output_names)}
    card = {
        "run_id": run_dir.name,
        "task": task.name,
        "base_model": config.backbone,
        "layout": layout_text(config, task),
        **counts,
        "split": {"mode": config.split, **{k: round(len(v) / len(data.spec.samples), 4) for k, v in data.splits.items()}},
        "optimizer": config.optimizer,
        "learning_rate": config.learning_rate,
        "lr_schedule": config.lr_schedule,
        "batch_size": runtime.global_batch_size(config.batch_size),
        "epochs": len(next(iter(history.values()), [])) or config.epochs,
        "planned_epochs": config.epochs,
        "wall_time_s": round(time.perf_counter() - started, 1),
        "fit_time_s": round(fit_time, 1),
        "data_time_s": round(data_time, 1),
        "device": runtime.device,
        "backend": runtime.backend,
        "jit_compile": runtime.jit_compile,
        "mixed_precision": runtime.precision,
        "image_size": config.image_size,
        "views": config.views,
        "head": config.head if config.preset != "seed" else "concat (seed preset)",
        "seed": config.seed,
        "dataset": data.spec.source,
        "command": " ".join(shlex.quote(a) for a in sys.argv),
    }
    from kerasface.report import write_run_report

    write_run_report(run_dir, card, history, results, roc)
    log(f"report: {run_dir / 'report.md'}")
    return run_dir
