"""kiln.utils: set_random_seed (as keras.utils)."""

from kiln.frontends.keras.seeding import set_random_seed

__all__ = ["set_random_seed"]
