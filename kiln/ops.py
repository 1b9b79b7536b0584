"""kiln.ops: Keras 3's `keras.ops` for custom layers' `call` and Lambda functions."""

from kiln.frontends.keras.ops import *  # noqa: F403
from kiln.frontends.keras.ops import Tensor, __all__, __getattr__  # noqa: F401
