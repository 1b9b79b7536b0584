"""kiln.optimizers: SGD, RMSprop, Adam, Adagrad and get (as keras.optimizers)."""

from kiln.frontends.keras.optimizers import SGD, Adagrad, Adam, Optimizer, RMSprop, get

__all__ = ["SGD", "Adagrad", "Adam", "Optimizer", "RMSprop", "get"]
