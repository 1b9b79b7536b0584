"""The Keras-style API (models, layers, optimizers, training loop)."""
