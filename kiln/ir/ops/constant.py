"""The constant op: a scalar (filled to a shape that may hold symbols) or an array attribute."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kiln.ir.graph import ArrayAttr
from kiln.ir.registry import REQUIRED, define, fail
from kiln.ir.types import TensorType, canonical_dtype, numpy_dtype


def _constant_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    value, dtype, shape = attrs["value"], canonical_dtype(attrs["dtype"]), tuple(attrs["shape"])
    if isinstance(value, ArrayAttr):
        if canonical_dtype(value.array.dtype) != dtype or value.array.shape != shape:
            fail(f"array value {value.array.dtype}{list(value.array.shape)} does not match "
                 f"dtype={dtype}, shape={list(shape)}")
    elif not isinstance(value, (bool, int, float)):
        fail(f"expected a number or an array as value. Received: value={value!r}")
    return [TensorType(shape, dtype)]


def _constant_reference(ctx: Any, value: Any, dtype: str, shape: Any) -> np.ndarray:
    if isinstance(value, ArrayAttr):
        return np.array(value.array)
    return np.full(ctx.out_shapes[0], value, dtype=numpy_dtype(canonical_dtype(dtype)))


define("constant", family="constant", inputs=(), infer=_constant_rule,
       reference=_constant_reference, differentiable=False,
       attrs={"value": REQUIRED, "dtype": "float32", "shape": ()}, tags=("constant",))
