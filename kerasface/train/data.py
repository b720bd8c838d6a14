"""A run's data: read the dataset, split it, undersample the training part, build the batches."""

from __future__ import annotations

import dataclasses
import math

from kerasface.data.augment import AugmentConfig
from kerasface.data.balance import SEED_UNDERSAMPLING, load_undersampling_config, undersample, undersample_table
from kerasface.data.identities import filter_identities, read_identity_names
from kerasface.data.pipeline import build_pipeline, choose_cache
from kerasface.data.readers import read_dataset
from kerasface.data.spec import DatasetSpec, Samples
from kerasface.data.splits import split_samples
from kerasface.train.config import TrainConfig


@dataclasses.dataclass
class RunData:
    spec: DatasetSpec
    splits: dict[str, Samples]
    notes: list[str]
    removed_from_training: str = ""


def load_run_data(config: TrainConfig, progress: bool = True) -> RunData:
    """Read the dataset (the demo data when ``config.data.path`` is None), split it, leave the
    excluded identities and those with too few images out of the training part
    (``kerasface.data.identities``) and undersample it."""
    data, notes = config.data, []
    _, spec = read_dataset(data.resolved_path(), skip_bad=data.skip_bad, verify=data.verify, progress=progress,
                           missing_labels=data.missing_labels)
    if spec.skipped:
        notes.append(f"skipped {len(spec.skipped)} unusable input(s); see the dataset summary")
    parts = split_samples(spec, mode=data.split, test_fraction=data.test_fraction,
                          validation_fraction=data.validation_fraction, seed=config.seed)
    names = ("train", "validation", "test") if len(parts) == 3 else ("train", "test")
    splits = dict(zip(names, parts))
    if data.test_fraction == 0:
        del splits["test"]
    removed = ""
    if data.exclude_identities or data.min_images_per_identity > 1:
        excluded = set().union(*(read_identity_names(path) for path in data.exclude_identities))
        splits["train"], left_out = filter_identities(spec, splits["train"], excluded, data.min_images_per_identity)
        removed = left_out.describe(data.exclude_identities, data.min_images_per_identity)
        notes.append(f"left out of training: {removed}")
        if len(splits["train"]) == 0:
            raise ValueError(f"{spec.source}: no training samples are left once these are out of training: "
                             f"{removed}")
    if data.undersample:
        settings = ({"factors": SEED_UNDERSAMPLING} if data.undersample == "paper"
                    else load_undersampling_config(data.undersample))
        settings.setdefault("seed", config.seed)
        before = splits["train"]
        splits["train"] = undersample(spec, before, **settings)
        notes.append("undersampled the training split:\n" + undersample_table(before, splits["train"], spec))
        if len(splits["train"]) == 0:
            raise ValueError(f"--undersample {data.undersample} left no training samples")
        if len(splits["train"]) < len(before) / 4:
            notes.append(f"warning: undersampling kept {len(splits['train'])} of {len(before)} training samples; "
                         "factors compound, each column acting on what the columns before it kept; "
                         "give factors for fewer columns, or a target_ratio")
    return RunData(spec, splits, notes, removed)


def make_pipelines(config: TrainConfig, data: RunData, task, global_batch: int, replicas: int = 1,
                   first_epoch: int = 0) -> tuple[dict, int]:
    """Batched pipelines per split and the training steps per epoch. A resumed run
    (``first_epoch`` > 0) shuffles and augments under a seed of its own, not the first epochs'
    again. With several replicas the training batches all have the global size, and their order
    stays deterministic whatever ``input_order``: each worker runs the whole pipeline and keeps
    its share of every global batch, so the workers must read the same order."""
    settings = config.data
    pk = task.sampler()
    deterministic = settings.input_order == "deterministic" or config.runtime.deterministic or replicas > 1
    pipelines = {}
    for name, samples in data.splits.items():
        training = name == "train"
        dataset = split_pipeline(
            config, data.spec, samples, task.target, training=training, batch_size=global_batch,
            cache=choose_cache(settings.cache, len(samples), settings.input_config()), pk=pk if training else None,
            drop_remainder=training and replicas > 1, first_epoch=first_epoch, deterministic=deterministic,
        )
        pipelines[name] = dataset.map(task.model_io)
    steps = steps_per_epoch(config, data.splits["train"], pk, global_batch, replicas)
    if config.optim.max_steps_per_epoch and pk is None:
        pipelines["train"] = pipelines["train"].take(steps)
    return pipelines, steps


def split_pipeline(config: TrainConfig, spec: DatasetSpec, samples: Samples, target: str | None, *,
                   training: bool = False, batch_size: int | None = None, cache: bool = False,
                   pk: tuple[int, int] | None = None, drop_remainder: bool = False, first_epoch: int = 0,
                   deterministic: bool = True):
    """Batches of ``samples`` under the run's input settings and seed (``build_pipeline``), of
    ``config.optim.batch_size`` unless ``batch_size`` is given; a training pipeline is shuffled and
    augmented as ``config.data`` says."""
    settings = config.data
    augment = None
    if training and settings.augment:
        augment = AugmentConfig(max_rotation=settings.max_rotation, noise_sigma=settings.noise_sigma,
                                flip=settings.flip != "off")
    return build_pipeline(spec, samples, input_config=settings.input_config(), target=target,
                          batch_size=batch_size or config.optim.batch_size, training=training, augment=augment,
                          cache=cache, pk=pk, drop_remainder=drop_remainder, seed=config.seed + first_epoch,
                          deterministic=deterministic)


def steps_per_epoch(config: TrainConfig, train: Samples, pk: tuple[int, int] | None, global_batch: int,
                    replicas: int = 1) -> int:
    """Training steps of an epoch, for every task: the P x K batches of the training identities,
    or batches of the global size (full ones only on several replicas), at most
    ``max_steps_per_epoch``."""
    if pk is not None:
        from kerasface.data.identity_batches import pk_num_batches

        steps = pk_num_batches(train.identity, *pk)
    elif replicas > 1:
        steps = len(train) // global_batch
    else:
        steps = math.ceil(len(train) / global_batch)
    if steps < 1:
        raise ValueError(f"{len(train)} training samples make no full batch of {global_batch} "
                         f"across {replicas} replicas; lower --batch-size")
    cap = config.optim.max_steps_per_epoch
    return min(steps, cap) if cap else steps
