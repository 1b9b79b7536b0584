"""kiln: a deep-learning compiler with a Keras face.

Models written the Keras way (`from kiln import models, layers, optimizers`) lower to kiln's
static-graph IR (kiln.ir), are differentiated symbolically, optimized by compiler passes and
run by a backend (kiln.runtimes).
"""

from kiln import (
    callbacks,
    constraints,
    datasets,
    initializers,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    regularizers,
    utils,
)
from kiln.ir.errors import KilnError
from kiln.models import load_model
from kiln.runtimes import get_backend, set_backend

__version__ = "0.1.0"

__all__ = [
    "KilnError", "__version__", "callbacks", "constraints", "datasets", "get_backend",
    "initializers", "layers", "losses", "load_model", "metrics", "models", "optimizers",
    "regularizers", "set_backend", "utils",
]
