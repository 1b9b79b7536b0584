"""The frontend's one source of randomness: weight initialization, shuffling, dropout seeds.
`kiln.utils.set_random_seed(seed)` makes all of them reproducible."""

from __future__ import annotations

import numpy as np

_state = {"rng": np.random.default_rng()}


def set_random_seed(seed: int) -> None:
    """Seed weight initializers, data shuffling and the dropout key of new models."""
    from kiln.ir import KilnValueError

    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise KilnValueError(f"Expected a seed as a non-negative int. Received: seed={seed!r}")
    _state["rng"] = np.random.default_rng(int(seed))


def rng() -> np.random.Generator:
    return _state["rng"]
