"""Keras layers."""

from kiln.frontends.keras.layer import Layer
from kiln.frontends.keras.layers.conv import (
    AveragePooling1D,
    AveragePooling2D,
    Conv1D,
    Conv2D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    MaxPooling1D,
    MaxPooling2D,
)
from kiln.frontends.keras.layers.core import (
    Activation,
    Dense,
    Dropout,
    Flatten,
    Input,
    InputLayer,
    Reshape,
)
from kiln.frontends.keras.layers.embedding import Embedding
from kiln.frontends.keras.layers.merge import (
    Add,
    Concatenate,
    Multiply,
    add,
    concatenate,
    multiply,
)
from kiln.frontends.keras.layers.normalization import BatchNormalization, LayerNormalization
from kiln.frontends.keras.layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN

__all__ = [
    "Activation",
    "Add",
    "AveragePooling1D",
    "AveragePooling2D",
    "BatchNormalization",
    "Bidirectional",
    "Concatenate",
    "Conv1D",
    "Conv2D",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "GRU",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "Input",
    "InputLayer",
    "LSTM",
    "LayerNormalization",
    "Layer",
    "MaxPooling1D",
    "MaxPooling2D",
    "Multiply",
    "Reshape",
    "SimpleRNN",
    "add",
    "concatenate",
    "multiply",
]
