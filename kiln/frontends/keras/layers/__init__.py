"""Keras layers."""

from kiln.frontends.keras.layer import Layer
from kiln.frontends.keras.layers.core import Dense, Input, InputLayer

__all__ = ["Dense", "Input", "InputLayer", "Layer"]
