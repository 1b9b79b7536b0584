"""kiln.optimizers: SGD, RMSprop, Adam, AdamW, Adagrad, Adamax, Adadelta, Lion, Nadam and get
(as keras.optimizers)."""

from kiln.frontends.keras.optimizers import (
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Lion,
    Nadam,
    Optimizer,
    RMSprop,
    get,
)

__all__ = ["SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "Lion", "Nadam",
           "Optimizer", "RMSprop", "get"]
