"""kiln.constraints: weight constraints applied after each optimizer step (as
keras.constraints)."""

from kiln.frontends.keras.constraints import *  # noqa: F403
from kiln.frontends.keras.constraints import __all__  # noqa: F401
