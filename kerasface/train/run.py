"""The one trainer: config + task -> run folder.

    run_dir = train(TrainConfig.from_dict({"task": "attributes", "backbone": "densenet121"}))
    train(resume=run_dir, epochs=12)

What every task shares lives here: runtime (strategy, precision, XLA), checkpoints, resume,
history and report; the task (``kerasface.train.tasks``) brings its model, sampler, loss,
metrics, evaluation and callbacks. A run lives in ``<out>/<run-id>/``: ``config.json``,
``checkpoints/`` (``last.keras`` every epoch, ``best.keras`` on improvement, ``state.json``),
``history.csv``, ``tensorboard/``, ``model.keras`` (the best checkpoint) and the report
(``report.md``, ``report.json``, plots).

Multi-worker (``kerasface.train.multiworker``): every worker runs the same command; the chief
writes the run folder (which must be shared storage for ``--resume``: every worker reads the
chief's checkpoints), the others write to a temporary folder removed at the end.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np

from kerasface.data.readers import read_dataset
from kerasface.fileio import link_or_copy_atomic, write_json_atomic
from kerasface.models.preprocessing import set_input_preprocessing
from kerasface.saving import load_model
from kerasface.train.callbacks import read_run_state, save_model_atomic, standard_callbacks
from kerasface.train.config import CONFIG_FILE, TrainConfig, load_run_config
from kerasface.train.data import load_run_data, make_pipelines
from kerasface.train.multiworker import worker_folder
from kerasface.train.optimizers import make_optimizer, rebuild_schedule
from kerasface.train.runtime import enable_determinism, resolve_runtime
from kerasface.train.tasks import create_task, task_class


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite before any epoch could be checkpointed."""


def parameter_counts(model: keras.Model) -> dict[str, int]:
    count = lambda weights: int(sum(np.prod(w.shape) for w in weights))
    return {"trainable_params": count(model.trainable_weights),
            "non_trainable_params": count(model.non_trainable_weights)}


def history_from_csv(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    keys = [k for k in (rows[0].keys() if rows else []) if k != "epoch"]
    missing = ("", "NA", None)  # CSVLogger writes "NA" for a metric an epoch did not log
    history = {k: [math.nan if r[k] in missing else float(r[k]) for r in rows] for k in keys}
    return {k: v for k, v in history.items() if not all(math.isnan(x) for x in v)}


def resume_call(run_dir, command: str | None) -> str:
    """How a run continues: ``<command> --resume RUN_DIR``, or the Python call without a command."""
    return f"{command} --resume {run_dir}" if command else f"kerasface.train.run.train(resume={str(run_dir)!r})"


def new_run_dir(config: TrainConfig) -> Path:
    run_id = config.run_id or f"{config.model.backbone}-{config.data.views}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(config.out) / run_id
    if (run_dir / CONFIG_FILE).exists():
        raise FileExistsError(f"{run_dir} already holds a run; continue it with --resume {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def dry_run(config: TrainConfig) -> dict:
    """Build the model as a run would (outputs from the dataset's labels), print its summary
    and return its parameter counts."""
    _, spec = read_dataset(config.data.resolved_path(), verify="none", missing_labels=config.data.missing_labels)
    task = create_task(config, spec)
    if task.num_outputs == 0:
        task.check_data({})
    runtime = resolve_runtime(config.runtime.strategy, config.runtime.mixed_precision, config.runtime.jit_compile)
    with runtime.scope():
        model = task.build_model()
    model.summary()
    return {"model": model.name, "task": task.name, "layout": task.layout(), **parameter_counts(model)}


def train(config: TrainConfig | None = None, *, resume=None, epochs: int | None = None, log=print,
          callbacks=(), command: str | None = None) -> Path:
    """Train one run (or, with ``resume``, continue it, for ``epochs`` in all when given);
    returns the run folder. ``callbacks`` run after the task's and before checkpointing, CSV
    logging and early stopping. ``command``: the training command that runs it (such as
    ``kerasface-train-recognition``), recorded with the checkpoints so that an interrupted run
    is told to continue with the command that started it."""
    started = time.perf_counter()
    config, state, planned = plan_run(config, resume, epochs)
    command = state.get("command") or command
    check_task_config(config)
    runtime = start_runtime(config, state["epoch"])
    data = load_run_data(config)
    task = create_task(config, data.spec)
    task.check_data(data.splits)
    run_dir, shared_dir = open_run_folder(config, runtime, resume)
    global_batch = runtime.global_batch_size(config.optim.batch_size)
    log_start(data, task, runtime, log)

    with runtime.scope():
        pipelines, steps = make_pipelines(config, data, task, global_batch, runtime.num_replicas, state["epoch"])
        task.steps_per_epoch = steps
        model, state, notes = build_or_resume_model(config, task, runtime, run_dir, state, planned, steps, log)
        counts = parameter_counts(model)
        log(f"{model.name}: {counts['trainable_params']:,} trainable, "
            f"{counts['non_trainable_params']:,} non-trainable")
        monitoring = task.monitoring(run_dir, pipelines)
        fit_time = fit(model, task, runtime, pipelines, monitoring, run_dir, state["epoch"], callbacks, command, log)
        model, best_epoch, best = best_checkpoint(model, runtime, run_dir, notes, log)
        save_models(task, model, best, run_dir)
        history = history_from_csv(run_dir / "history.csv")
        results = history_results(history, best_epoch, task.validation_data(pipelines) is not None)
        results.update(task.best_epoch_results(history, best_epoch))
    fields = {}
    if "test" in pipelines:
        results["test"], fields = evaluate_test(task, model, pipelines["test"], runtime)

    from kerasface.report import run_card, write_run_report

    card = run_card(run_dir, config, task, runtime, data, counts=counts, global_batch=global_batch, history=history,
                    best_epoch=best_epoch, monitor=monitoring.monitor, wall_time_s=time.perf_counter() - started,
                    fit_time_s=fit_time, notes=notes)
    write_run_report(run_dir, card, history, results, fields.get("roc"), sections=task.report_sections(history))
    return close_run_folder(run_dir, shared_dir, runtime, log)


def check_task_config(config: TrainConfig) -> None:
    """The task's ``check_config``, and a test split unless the task scores the run on others."""
    task = task_class(config.task)
    task.check_config(config)
    if config.data.test_fraction == 0 and task.needs_test_split(config):
        raise ValueError(f"--test-fraction 0 leaves the {config.task} task no test split to score the run on; "
                         "give a --test-fraction > 0 (a recognition run may be scored on its --val-pairs instead)")


def plan_run(config: TrainConfig | None, resume, epochs: int | None) -> tuple[TrainConfig, dict, int]:
    """(config, checkpoint state, planned epochs): a new run's, or those of the run in ``resume``
    (for ``epochs`` in all when given)."""
    if resume is None:
        config = config or TrainConfig()
        return config, {"epoch": 0}, config.optim.epochs
    run_dir = Path(resume)
    config = load_run_config(run_dir)
    state = read_run_state(run_dir / "checkpoints") or {"epoch": 0}
    planned = config.optim.epochs
    if epochs is not None and epochs != planned:
        config = config.replace(epochs=epochs)
    if state["epoch"] >= config.optim.epochs:
        raise ValueError(f"{run_dir} has trained {state['epoch']} epoch(s) of {config.optim.epochs}; "
                         f"pass --epochs N with N > {state['epoch']} to train further")
    return config, state, planned


def start_runtime(config: TrainConfig, first_epoch: int):
    """The runtime (first: a multi-worker strategy, or jax.distributed, must start before anything
    else runs), and the random seed of the epochs to come."""
    runtime = resolve_runtime(config.runtime.strategy, config.runtime.mixed_precision, config.runtime.jit_compile)
    seed = config.seed + first_epoch
    if config.runtime.deterministic:
        enable_determinism(seed)
    else:
        keras.utils.set_random_seed(seed)
    return runtime


def open_run_folder(config: TrainConfig, runtime, resume) -> tuple[Path, Path | None]:
    """(the folder this worker writes, with ``config.json``; the shared run folder when that is
    another worker's, else None): the chief writes the run folder, the other workers a
    temporary folder of their own."""
    if runtime.num_workers > 1 and resume is None and not config.run_id:
        raise ValueError(f"a run of {runtime.num_workers} workers needs --run-id, the same on every worker")
    shared_dir = None
    if not runtime.is_chief:
        shared_dir = Path(resume) if resume is not None else Path(config.out) / config.run_id
        run_dir = worker_folder(shared_dir, runtime.worker_index, resume=resume is not None)
    elif resume is None:
        run_dir = new_run_dir(config)
    else:
        run_dir = Path(resume)
    write_json_atomic(run_dir / CONFIG_FILE, config.to_dict())
    return run_dir, shared_dir


def log_start(data, task, runtime, log) -> None:
    for note in data.notes:
        log(note)
    log(f"{data.spec.source}: {len(data.spec.samples)} images, task {task.name} "
        f"({task.num_outputs} outputs); split " + ", ".join(f"{k} {len(v)}" for k, v in data.splits.items()))
    log("runtime: " + json.dumps(runtime.describe()))


def build_or_resume_model(config: TrainConfig, task, runtime, run_dir: Path, state: dict, planned: int, steps: int,
                          log) -> tuple[keras.Model, dict, list[str]]:
    """(model, checkpoint state, notes): the last checkpoint of a resumed run (its learning-rate
    schedule rebuilt when the epochs changed), or the task's model, compiled; inside
    ``runtime.scope()``."""
    notes = []
    checkpoints = run_dir / "checkpoints"
    if state["epoch"] > 0 and (checkpoints / "last.keras").is_file():
        model = runtime.prepare(load_model(checkpoints / "last.keras"))
        log(f"resuming {run_dir} after epoch {state['epoch']}")
        if config.optim.epochs != planned and rebuild_schedule(model.optimizer, config.optim, steps):
            notes.append(f"{config.optim.lr_schedule} learning-rate schedule rebuilt at resume for "
                         f"{config.optim.epochs} epochs (it was planned for {planned})")
            log(notes[-1])
    else:
        state = {"epoch": 0}
        model = task.build_model()
        runtime.compile(model, make_optimizer(config.optim, steps), task.loss(), task.metrics(),
                        loss_weights=task.loss_weights())
    set_input_preprocessing(model, resize_mode=config.data.resize_mode)
    return model, state, notes


def fit(model: keras.Model, task, runtime, pipelines: dict, monitoring, run_dir: Path, initial_epoch: int,
        callbacks, command: str | None, log) -> float:
    """``model.fit`` with the task's callbacks, then ``callbacks``, then the standard ones
    (checkpoints, CSV log, early stopping); returns the seconds it took."""
    config = task.config
    run_callbacks = (monitoring.callbacks + list(callbacks)
                     + standard_callbacks(run_dir, monitoring.monitor, monitoring.mode, config.optim.early_stopping,
                                          tensorboard=config.runtime.tensorboard, resume=initial_epoch > 0,
                                          command=command))
    start = time.perf_counter()
    try:
        model.fit(pipelines["train"], validation_data=task.validation_data(pipelines), epochs=config.optim.epochs,
                  initial_epoch=initial_epoch,
                  steps_per_epoch=task.steps_per_epoch if task.sampler() or runtime.num_workers > 1 else None,
                  callbacks=run_callbacks, shuffle=False, verbose=1 if sys.stdout.isatty() else 2)
    except KeyboardInterrupt:
        log(f"interrupted; continue with: {resume_call(run_dir, command)}")
        raise
    return time.perf_counter() - start


def best_checkpoint(model: keras.Model, runtime, run_dir: Path, notes: list[str],
                    log) -> tuple[keras.Model, int, Path]:
    """(the model of the best epoch, that epoch, its checkpoint) once ``fit`` is done; raises ``TrainingDiverged``
    when no epoch was checkpointed, and adds why training stopped early to ``notes``."""
    checkpoints = run_dir / "checkpoints"
    final = read_run_state(checkpoints, {})
    if not final.get("epoch"):
        raise TrainingDiverged(
            f"{run_dir}: the loss became NaN or infinite in the first epoch, so no checkpoint was "
            "saved; lower --learning-rate or check the inputs")
    if final.get("stopped"):
        notes.append(final["stopped"])
        log(final["stopped"])
    best_epoch = final.get("best_epoch") or final["epoch"]
    best = checkpoints / ("best.keras" if final.get("best_epoch") else "last.keras")
    if best_epoch != final["epoch"] or model.stop_training:
        model = runtime.prepare(load_model(best))
    return model, best_epoch, best


def save_models(task, model: keras.Model, best: Path, run_dir: Path) -> None:
    """``model.keras`` (the task's inference model of the best checkpoint ``best``) and the task's
    further models."""
    inference = task.inference_model(model)
    if inference is model:
        link_or_copy_atomic(best, run_dir / "model.keras")
    else:
        save_model_atomic(inference, run_dir / "model.keras")
    for name, extra in task.extra_models(model).items():
        save_model_atomic(extra, run_dir / name)


def history_results(history: dict[str, list[float]], best_epoch: int, validated: bool) -> dict:
    """The best epoch's logged training figures, and its validation ones when ``fit`` validated."""
    results = {"train": {k: v[best_epoch - 1] for k, v in history.items()
                         if not k.startswith("val_") and len(v) >= best_epoch}}
    if validated:
        results["validation"] = {k[4:]: v[best_epoch - 1] for k, v in history.items()
                                 if k.startswith("val_") and len(v) >= best_epoch}
    return results


def evaluate_test(task, model: keras.Model, dataset, runtime) -> tuple[dict[str, float], dict]:
    """The task's evaluation of the test split. On TensorFlow outside the strategy's scope: a
    Keras loss called under a strategy of N replicas is divided by N (the scaling its train step
    undoes), which halved the test loss on 2."""
    if runtime.backend == "tensorflow":
        return task.evaluate(model, dataset)
    with runtime.scope():
        return task.evaluate(model, dataset)


def close_run_folder(run_dir: Path, shared_dir: Path | None, runtime, log) -> Path:
    """The run folder: a worker's own folder removed, the chief's report named."""
    if shared_dir is not None:
        shutil.rmtree(run_dir, ignore_errors=True)
        log(f"worker {runtime.worker_index} done; the chief writes {shared_dir}")
        return shared_dir
    log(f"report: {run_dir / 'report.md'}")
    return run_dir
