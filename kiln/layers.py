"""kiln.layers: the Keras layers (as keras.layers)."""

from kiln.frontends.keras.layers import *  # noqa: F403
from kiln.frontends.keras.layers import __all__  # noqa: F401
