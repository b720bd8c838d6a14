"""Optimizers and learning-rate schedules from a run's ``OptimConfig``."""

from __future__ import annotations

import keras

from kerasface.train.config import OptimConfig

ADAMW_WEIGHT_DECAY = 1e-4


def learning_rate_schedule(optim: OptimConfig, steps_per_epoch: int):
    """The learning rate over the run's ``epochs * steps_per_epoch`` steps: a constant, cosine
    decay to 0 at the last step, or x0.1 steps at 1/2 and 3/4 of the run."""
    total = max(1, steps_per_epoch * optim.epochs)
    lr = optim.learning_rate
    if optim.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=total)
    if optim.lr_schedule == "step":
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            [total // 2, (3 * total) // 4], [lr, lr * 0.1, lr * 0.01])
    return lr


def make_optimizer(optim: OptimConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """``weight_decay`` None is 1e-4 for adamw and none for sgd and adam; 0 is none."""
    lr = learning_rate_schedule(optim, steps_per_epoch)
    decay = optim.weight_decay
    if optim.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=ADAMW_WEIGHT_DECAY if decay is None else decay)
    if optim.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, weight_decay=decay or None)
    return keras.optimizers.Adam(lr, weight_decay=decay or None)


def rebuild_schedule(optimizer: keras.optimizers.Optimizer, optim: OptimConfig, steps_per_epoch: int) -> bool:
    """Give a resumed run's optimizer the schedule for its (new) length; the step count and
    slot variables stay. True when the learning rate depends on the length (cosine, step)."""
    if optim.lr_schedule == "constant":
        return False
    optimizer.learning_rate = learning_rate_schedule(optim, steps_per_epoch)
    return True
