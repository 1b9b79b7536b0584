"""kiln.regularizers: weight and activity penalties (as keras.regularizers)."""

from kiln.frontends.keras.regularizers import *  # noqa: F403
from kiln.frontends.keras.regularizers import __all__  # noqa: F401
