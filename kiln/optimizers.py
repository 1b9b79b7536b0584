"""kiln.optimizers: SGD, RMSprop, Adam, AdamW, Adagrad, Adamax, Adadelta, Lion and get (as
keras.optimizers)."""

from kiln.frontends.keras.optimizers import (
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Lion,
    Optimizer,
    RMSprop,
    get,
)

__all__ = ["SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "Lion", "Optimizer",
           "RMSprop", "get"]
