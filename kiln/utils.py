"""kiln.utils: set_random_seed, to_categorical (as keras.utils)."""

from kiln.frontends.keras.datasets.encoding import to_categorical
from kiln.frontends.keras.seeding import set_random_seed

__all__ = ["set_random_seed", "to_categorical"]
