"""kiln.losses: loss classes, functions and get (as keras.losses)."""

from kiln.frontends.keras.losses import *  # noqa: F403
from kiln.frontends.keras.losses import __all__  # noqa: F401
