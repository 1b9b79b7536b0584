"""Tensor types of the IR: a shape whose dimensions are ints or symbols, and a dtype.

A symbol (a string such as "N") stands for a size known only at run time, typically the batch,
so one compiled graph serves every batch size. The runtime binds symbols from the arrays given.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from kiln.ir.errors import KilnTypeError, KilnValueError

Dim = int | str

# IR name -> (short name used in the text format, numpy dtype)
DTYPES: dict[str, tuple[str, np.dtype]] = {
    "float32": ("f32", np.dtype(np.float32)),
    "float64": ("f64", np.dtype(np.float64)),
    "int32": ("i32", np.dtype(np.int32)),
    "int64": ("i64", np.dtype(np.int64)),
    "bool": ("bool", np.dtype(np.bool_)),
}
SHORT_TO_DTYPE = {short: name for name, (short, _) in DTYPES.items()}
FLOAT_DTYPES = frozenset({"float32", "float64"})
INT_DTYPES = frozenset({"int32", "int64"})

_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def canonical_dtype(dtype: object) -> str:
    """Return kiln's name for a dtype given as a kiln name, short name or numpy dtype."""
    if isinstance(dtype, str):
        if dtype in DTYPES:
            return dtype
        if dtype in SHORT_TO_DTYPE:
            return SHORT_TO_DTYPE[dtype]
    np_dtype = None
    if dtype is not None:  # np.dtype(None) is float64: None is no dtype here
        try:
            np_dtype = np.dtype(dtype)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            np_dtype = None
    if np_dtype is not None:
        for name, (_, candidate) in DTYPES.items():
            if np_dtype == candidate:
                return name
    raise KilnTypeError(
        f"Expected a dtype among {sorted(DTYPES)}. Received: dtype={dtype!r}"
    )


def numpy_dtype(dtype: str) -> np.dtype:
    return DTYPES[dtype][1]


def check_dim(dim: object) -> Dim:
    if isinstance(dim, (bool, np.bool_)):
        raise KilnTypeError(f"Expected a dimension (int >= 0 or symbol). Received: {dim!r}")
    if isinstance(dim, (int, np.integer)):
        if dim < 0:
            raise KilnValueError(f"Expected a dimension >= 0. Received: {dim}")
        return int(dim)
    if isinstance(dim, str) and _SYMBOL.match(dim):
        return dim
    raise KilnTypeError(f"Expected a dimension (int >= 0 or symbol name). Received: {dim!r}")


@dataclass(frozen=True)
class TensorType:
    """The static type of a value: its shape (ints and symbols) and dtype."""

    shape: tuple[Dim, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(check_dim(d) for d in self.shape))
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(d for d in self.shape if isinstance(d, str))

    @property
    def is_static(self) -> bool:
        return not self.symbols

    def with_shape(self, shape: Iterable[Dim]) -> TensorType:
        return TensorType(tuple(shape), self.dtype)

    def with_dtype(self, dtype: str) -> TensorType:
        return TensorType(self.shape, dtype)

    def resolve(self, dims: dict[str, int]) -> tuple[int, ...]:
        """The concrete shape once every symbol has a size."""
        try:
            return tuple(d if isinstance(d, int) else dims[d] for d in self.shape)
        except KeyError as missing:
            raise KilnValueError(
                f"Expected a size for symbol {missing.args[0]} of type {self}. "
                f"Received bindings: {dims}"
            ) from None

    def __str__(self) -> str:
        return f"{DTYPES[self.dtype][0]}[{','.join(str(d) for d in self.shape)}]"

    __repr__ = __str__


class _DTypeSugar:
    """`f32["N", 784]` builds TensorType(("N", 784), "float32")."""

    def __init__(self, dtype: str):
        self.dtype = dtype

    def __getitem__(self, dims: object) -> TensorType:
        if dims == ():
            return TensorType((), self.dtype)
        if not isinstance(dims, tuple):
            dims = (dims,)
        return TensorType(dims, self.dtype)


f32 = _DTypeSugar("float32")
f64 = _DTypeSugar("float64")
i32 = _DTypeSugar("int32")
i64 = _DTypeSugar("int64")
boolean = _DTypeSugar("bool")


def broadcast_shapes(*shapes: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """NumPy broadcasting over shapes that may hold symbols; None when incompatible.

    A symbol broadcasts with 1 and with itself; two different symbols or a symbol and an int
    other than 1 do not broadcast (their sizes are unknown until run time).
    """
    rank = max((len(s) for s in shapes), default=0)
    result: list[Dim] = []
    for axis in range(rank):
        dim: Dim = 1
        for shape in shapes:
            offset = axis - (rank - len(shape))
            if offset < 0:
                continue
            d = shape[offset]
            if d == 1:
                continue
            if dim == 1:
                dim = d
            elif dim != d:
                return None  # type: ignore[return-value]
        result.append(dim)
    return tuple(result)


def normalize_axes(axes: object, rank: int, what: str) -> tuple[int, ...]:
    """Axes as sorted non-negative ints; None means every axis."""
    if axes is None:
        return tuple(range(rank))
    if isinstance(axes, (int, np.integer)):
        axes = (axes,)
    result = []
    for axis in axes:  # type: ignore[union-attr]
        if not isinstance(axis, (int, np.integer)) or not -rank <= axis < rank:
            raise KilnValueError(
                f"{what}: expected axes in [{-rank}, {rank}). Received: axes={axes!r}"
            )
        result.append(int(axis) % rank)
    if len(set(result)) != len(result):
        raise KilnValueError(f"{what}: expected distinct axes. Received: axes={axes!r}")
    return tuple(sorted(result))


def dims_product(dims: Iterable[Dim]) -> tuple[int, tuple[str, ...]]:
    """The product of dims as (integer factor, sorted symbols)."""
    factor = 1
    symbols: list[str] = []
    for d in dims:
        if isinstance(d, int):
            factor *= d
        else:
            symbols.append(d)
    return factor, tuple(sorted(symbols))


def static_size(shape: Iterable[Dim]) -> int | None:
    shape = tuple(shape)
    if any(isinstance(d, str) for d in shape):
        return None
    return math.prod(shape)  # type: ignore[arg-type]
