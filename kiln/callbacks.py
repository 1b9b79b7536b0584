"""kiln.callbacks: Callback, History, EarlyStopping, ModelCheckpoint, ... (as keras.callbacks)."""

from kiln.frontends.keras.callbacks import *  # noqa: F403
from kiln.frontends.keras.callbacks import __all__  # noqa: F401
