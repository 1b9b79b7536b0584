"""kiln.utils: set_random_seed, to_categorical, pad_sequences (as keras.utils)."""

from kiln.frontends.keras.datasets.encoding import pad_sequences, to_categorical
from kiln.frontends.keras.seeding import set_random_seed

__all__ = ["pad_sequences", "set_random_seed", "to_categorical"]
