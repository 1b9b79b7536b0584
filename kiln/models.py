"""kiln.models: Sequential, Model, load_model (as keras.models)."""

from kiln.frontends.keras.model import Model
from kiln.frontends.keras.saving import load_model
from kiln.frontends.keras.sequential import Sequential

__all__ = ["Model", "Sequential", "load_model"]
