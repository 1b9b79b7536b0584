"""Keras 3's initializers: the same names, arguments and distributions (fans computed as
Keras computes them), drawn from kiln's seeded generator."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from kiln.frontends.keras.seeding import rng
from kiln.ir import KilnValueError
from kiln.ir.types import numpy_dtype


def compute_fans(shape: tuple[int, ...], input_axes: Any = None,
                 output_axes: Any = None) -> tuple[int, int]:
    """(fan_in, fan_out): with both axis lists, the products of the shape over them (an
    EinsumDense kernel's); else Keras's rule by rank (convolution kernels: the receptive
    field times the last two axes)."""
    if input_axes is not None and output_axes is not None:
        return (math.prod(shape[a] for a in input_axes),
                math.prod(shape[a] for a in output_axes))
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer:
    def __call__(self, shape: tuple[int, ...], dtype: str = "float32") -> np.ndarray:
        return self.sample(tuple(shape)).astype(numpy_dtype(dtype))

    def sample(self, shape: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments (what `type(self)(**config)` needs)."""
        return dict(vars(self))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Initializer:
        return cls(**config)


class Zeros(Initializer):
    def sample(self, shape):  # noqa: ANN001, ANN201
        return np.zeros(shape)


class Ones(Initializer):
    def sample(self, shape):  # noqa: ANN001, ANN201
        return np.ones(shape)


class Constant(Initializer):
    def __init__(self, value: float = 0.0):
        self.value = value

    def sample(self, shape):  # noqa: ANN001, ANN201
        return np.full(shape, self.value)


class RandomUniform(Initializer):
    def __init__(self, minval: float = -0.05, maxval: float = 0.05):
        self.minval, self.maxval = minval, maxval

    def sample(self, shape):  # noqa: ANN001, ANN201
        return rng().uniform(self.minval, self.maxval, shape)


class RandomNormal(Initializer):
    def __init__(self, mean: float = 0.0, stddev: float = 0.05):
        self.mean, self.stddev = mean, stddev

    def sample(self, shape):  # noqa: ANN001, ANN201
        return rng().normal(self.mean, self.stddev, shape)


def _truncated_normal(shape: tuple[int, ...], mean: float, stddev: float) -> np.ndarray:
    """Normal draws redrawn until within two standard deviations, as Keras's truncated normal."""
    out = rng().normal(0.0, 1.0, shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng().normal(0.0, 1.0, int(bad.sum()))
        bad = np.abs(out) > 2
    return mean + stddev * out


class TruncatedNormal(Initializer):
    def __init__(self, mean: float = 0.0, stddev: float = 0.05):
        self.mean, self.stddev = mean, stddev

    def sample(self, shape):  # noqa: ANN001, ANN201
        return _truncated_normal(shape, self.mean, self.stddev)


class VarianceScaling(Initializer):
    """scale / fan (fan_in, fan_out or their average), uniform or truncated normal."""

    def __init__(self, scale: float = 1.0, mode: str = "fan_in",
                 distribution: str = "truncated_normal", input_axes: Any = None,
                 output_axes: Any = None):
        if scale <= 0:
            raise KilnValueError(f"Expected scale > 0. Received: scale={scale}")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise KilnValueError(
                f"Expected mode in fan_in, fan_out, fan_avg. Received: mode={mode!r}")
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise KilnValueError(f"Expected distribution in truncated_normal, untruncated_normal, "
                                 f"uniform. Received: distribution={distribution!r}")
        self.scale, self.mode, self.distribution = scale, mode, distribution
        # The kernel axes that count as its inputs and outputs (EinsumDense sets them).
        self.input_axes = None if input_axes is None else list(input_axes)
        self.output_axes = None if output_axes is None else list(output_axes)

    def get_config(self) -> dict[str, Any]:
        config = dict(vars(self))
        if type(self) is not VarianceScaling:
            # The named variants (GlorotUniform, HeNormal, ...) fix the other arguments.
            config = {"input_axes": self.input_axes, "output_axes": self.output_axes}
        return {k: v for k, v in config.items() if not k.endswith("_axes") or v is not None}

    def sample(self, shape):  # noqa: ANN001, ANN201
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, fan)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return rng().uniform(-limit, limit, shape)
        if self.distribution == "untruncated_normal":
            return rng().normal(0.0, math.sqrt(variance), shape)
        # 0.8796... is the stddev of a unit normal truncated at two standard deviations.
        return _truncated_normal(shape, 0.0, math.sqrt(variance) / 0.87962566103423978)


class GlorotUniform(VarianceScaling):
    def __init__(self, input_axes: Any = None, output_axes: Any = None) -> None:
        super().__init__(1.0, "fan_avg", "uniform", input_axes, output_axes)


class GlorotNormal(VarianceScaling):
    def __init__(self, input_axes: Any = None, output_axes: Any = None) -> None:
        super().__init__(1.0, "fan_avg", "truncated_normal", input_axes, output_axes)


class HeUniform(VarianceScaling):
    def __init__(self, input_axes: Any = None, output_axes: Any = None) -> None:
        super().__init__(2.0, "fan_in", "uniform", input_axes, output_axes)


class HeNormal(VarianceScaling):
    def __init__(self, input_axes: Any = None, output_axes: Any = None) -> None:
        super().__init__(2.0, "fan_in", "truncated_normal", input_axes, output_axes)


class LecunUniform(VarianceScaling):
    def __init__(self, input_axes: Any = None, output_axes: Any = None) -> None:
        super().__init__(1.0, "fan_in", "uniform", input_axes, output_axes)


class LecunNormal(VarianceScaling):
    def __init__(self, input_axes: Any = None, output_axes: Any = None) -> None:
        super().__init__(1.0, "fan_in", "truncated_normal", input_axes, output_axes)


class Orthogonal(Initializer):
    """An orthogonal matrix from the QR decomposition of a normal one (rows x columns over the
    flattened leading dims), signs fixed by R's diagonal, times `gain`."""

    def __init__(self, gain: float = 1.0):
        self.gain = gain

    def sample(self, shape):  # noqa: ANN001, ANN201
        if len(shape) < 2:
            raise KilnValueError(f"orthogonal: expected a shape of rank >= 2. Received: {shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        flat = rng().normal(0.0, 1.0, (max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(flat)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return self.gain * q.reshape(shape)


class Identity(Initializer):
    def __init__(self, gain: float = 1.0):
        self.gain = gain

    def sample(self, shape):  # noqa: ANN001, ANN201
        if len(shape) != 2:
            raise KilnValueError(f"identity: expected a 2-D shape. Received: {shape}")
        return self.gain * np.eye(*shape)


def with_fan_axes(initializer: Any, input_axes: list[int], output_axes: list[int]) -> Any:
    """A VarianceScaling initializer without fan axes, copied with these (what Keras's
    EinsumDense does to its kernel's); any other initializer as it is."""
    if not isinstance(initializer, VarianceScaling) or (
            initializer.input_axes is not None and initializer.output_axes is not None):
        return initializer
    fixed = copy.copy(initializer)
    fixed.input_axes, fixed.output_axes = list(input_axes), list(output_axes)
    return fixed


ALL: dict[str, type[Initializer]] = {
    "zeros": Zeros, "ones": Ones, "constant": Constant, "random_uniform": RandomUniform,
    "random_normal": RandomNormal, "truncated_normal": TruncatedNormal,
    "variance_scaling": VarianceScaling, "glorot_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal, "he_uniform": HeUniform, "he_normal": HeNormal,
    "lecun_uniform": LecunUniform, "lecun_normal": LecunNormal, "orthogonal": Orthogonal,
    "identity": Identity, "uniform": RandomUniform, "normal": RandomNormal,
}


_BY_CLASS = {cls.__name__: cls for cls in ALL.values()}


def serialize(initializer: Any) -> Any:
    """What a layer's get_config holds for an initializer: its name as given, or for an
    Initializer {"class_name": ..., "config": ...} (Keras's form); other callables as they
    are (a saved model refuses them, naming the layer)."""
    if isinstance(initializer, Initializer):
        return {"class_name": type(initializer).__name__, "config": initializer.get_config()}
    return initializer


def get(identifier: Any) -> Callable[[tuple[int, ...], str], np.ndarray]:
    """An initializer from a name ("glorot_uniform"), an Initializer, a callable, or a
    serialized {"class_name": ..., "config": ...} (as get_config writes it)."""
    if isinstance(identifier, dict) and isinstance(identifier.get("class_name"), str):
        cls = _BY_CLASS.get(identifier["class_name"])
        if cls is None:
            raise KilnValueError(f"Unknown initializer class {identifier['class_name']!r}; "
                                 f"expected one of {sorted(_BY_CLASS)}. "
                                 f"Received: initializer={identifier!r}")
        return cls.from_config(dict(identifier.get("config") or {}))
    if isinstance(identifier, str):
        key = identifier if identifier in ALL else \
            "".join("_" + c.lower() if c.isupper() else c for c in identifier).lstrip("_")
        if key not in ALL:
            raise KilnValueError(f"Unknown initializer {identifier!r}; expected one of "
                                 f"{sorted(ALL)}. Received: initializer={identifier!r}")
        return ALL[key]()
    if callable(identifier):
        return identifier
    raise KilnValueError(f"Expected an initializer name or callable. "
                         f"Received: initializer={identifier!r}")


__all__ = ["Constant", "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "Identity",
           "Initializer", "LecunNormal", "LecunUniform", "Ones", "Orthogonal", "RandomNormal",
           "RandomUniform", "TruncatedNormal", "VarianceScaling", "Zeros", "get", "serialize"]
