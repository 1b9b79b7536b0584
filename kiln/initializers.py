"""kiln.initializers: the weight initializers (as keras.initializers)."""

from kiln.frontends.keras.initializers import *  # noqa: F403
from kiln.frontends.keras.initializers import __all__  # noqa: F401
