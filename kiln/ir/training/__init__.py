"""Training as IR: optimizer update rules, losses, metrics, and the train/eval step graphs."""

from kiln.ir.training.losses import LOSSES
from kiln.ir.training.metrics import METRICS
from kiln.ir.training.optimizers import (
    RULES,
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    Lion,
    Nadam,
    RMSprop,
    UpdateRule,
    clip_gradients,
)
from kiln.ir.training.train_step import (
    ITERATIONS,
    LEARNING_RATE,
    LossSpec,
    MetricSpec,
    TrainStep,
    build_eval_step,
    build_train_step,
)

__all__ = [
    "ITERATIONS", "LEARNING_RATE", "LOSSES", "METRICS", "RULES", "SGD", "Adadelta", "Adagrad",
    "Adam", "Adamax", "Lion", "LossSpec", "MetricSpec", "Nadam", "RMSprop", "TrainStep",
    "UpdateRule", "build_eval_step", "build_train_step", "clip_gradients",
]
