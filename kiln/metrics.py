"""kiln.metrics: metric classes, functions and get (as keras.metrics)."""

from kiln.frontends.keras.metrics import *  # noqa: F403
from kiln.frontends.keras.metrics import __all__  # noqa: F401
