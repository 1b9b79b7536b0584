"""Random draws from an explicit key: uniform, normal, bernoulli. No global RNG is involved;
equal (key, stream, shape, attributes) give equal bits on every backend, by the spec below.

Attributes (all ops): shape (ints and symbols, resolved at run time), stream=0 (an int in
[0, 2**63) that separates independent draws from one key, e.g. one per dropout layer).
uniform {low=0.0, high=1.0, dtype="float32"}; normal {mean=0.0, stddev=1.0,
dtype="float32"}; bernoulli {p=0.5}, a bool result (True with probability p).
The key operand is an i64[] scalar.

The bit stream, exactly (all integer arithmetic in uint64, wrapping mod 2**64):

    G = 0x9E3779B97F4A7C15
    mix(z):  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
             z = (z ^ (z >> 27)) * 0x94D049BB133111EB
             return z ^ (z >> 31)
    K = the key's int64 bits read as uint64 (two's complement)
    base = mix(mix(K) + stream * G)
    bits(c) = mix(base + (c + 1) * G)     # output c of SplitMix64 seeded with base

mix(0) = 0, so key 0 with stream 0 gives SplitMix64's published sequence for seed 0
(0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, ...): a first check for a new backend.

Element i is the i-th element of the output in row-major (C) order, i = 0, 1, ...

    uniform, float32: u = (bits(i) >> 40) * 2**-24           in [0, 1 - 2**-24]
             float64: u = (bits(i) >> 11) * 2**-53           in [0, 1 - 2**-53]
             out = low + (high - low) * u, in the output dtype: low and high rounded to it
             first, then each of -, *, + rounded to nearest (no fused multiply-add). The
             result lies in [low, high]; it reaches high only through that last rounding.
    normal:  u1 = ((bits(2i) >> 11) + 1) * 2**-53              in (0, 1], so log(u1) is finite
             u2 = (bits(2i + 1) >> 11) * 2**-53               in [0, 1)
             z = sqrt(-2 * log(u1)) * cos(TWO_PI * u2), TWO_PI = 6.283185307179586
             out = mean + stddev * z, all in float64, rounded once to the output dtype
             (so a float32 draw is the float64 draw rounded). log and cos may differ by an
             ulp between math libraries; compare normal across backends with a tolerance.
    bernoulli: out = (bits(i) >> 11) * 2**-53 < p in float64; the same as the integer test
             (bits(i) >> 11) < ceil(p * 2**53), for backends without float64.

Draws that share (key, stream) share bits: bernoulli and a float64 uniform read the same
counters, normal reads counters 2i and 2i+1. Give independent draws distinct streams or keys.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from kiln.ir.registry import REQUIRED, RefContext, define, fail
from kiln.ir.types import FLOAT_DTYPES, TensorType, canonical_dtype, check_dim

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
TWO_PI = 6.283185307179586
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


# -- the bit stream ------------------------------------------------------------------------
def mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer on a uint64 array (arrays wrap silently; scalars would warn)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def random_bits(key: int | np.ndarray, stream: int, counters: np.ndarray) -> np.ndarray:
    """bits(c) of the module docstring for each counter c (a uint64 array)."""
    k = np.asarray(key, np.int64).reshape(1).view(np.uint64)
    base = mix64(mix64(k) + np.array([stream], np.uint64) * GOLDEN)
    return mix64(base + (counters.astype(np.uint64) + np.uint64(1)) * GOLDEN)


def _unit_float64(bits: np.ndarray) -> np.ndarray:
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


def uniform_draw(key: Any, stream: int, shape: tuple[int, ...], low: float, high: float,
                 dtype: str) -> np.ndarray:
    bits = random_bits(key, stream, np.arange(math.prod(shape), dtype=np.uint64))
    if dtype == "float32":
        u = (bits >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)
        low_d, high_d = np.float32(low), np.float32(high)
    else:
        u = _unit_float64(bits)
        low_d, high_d = np.float64(low), np.float64(high)
    return (low_d + (high_d - low_d) * u).reshape(shape)


def normal_draw(key: Any, stream: int, shape: tuple[int, ...], mean: float, stddev: float,
                dtype: str) -> np.ndarray:
    n = math.prod(shape)
    bits = random_bits(key, stream, np.arange(2 * n, dtype=np.uint64))
    u1 = ((bits[0::2] >> np.uint64(11)) + np.uint64(1)).astype(np.float64) * 2.0**-53
    u2 = _unit_float64(bits[1::2])
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(TWO_PI * u2)
    out = float(mean) + float(stddev) * z
    return out.astype(np.float32 if dtype == "float32" else np.float64).reshape(shape)


def bernoulli_draw(key: Any, stream: int, shape: tuple[int, ...], p: float) -> np.ndarray:
    bits = random_bits(key, stream, np.arange(math.prod(shape), dtype=np.uint64))
    return (_unit_float64(bits) < float(p)).reshape(shape)


# -- type rules ----------------------------------------------------------------------------
def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        fail(f"expected a finite number {name}. Received: {name}={value!r}")
    return float(value)


def _draw_type(types: Sequence[TensorType], attrs: Any, dtype: str) -> list[TensorType]:
    (key,) = types
    if key != TensorType((), "int64"):
        fail(f"expected an i64[] scalar key. Received: key: {key}")
    stream = attrs["stream"]
    if isinstance(stream, bool) or not isinstance(stream, int) or not 0 <= stream < 2**63:
        fail(f"expected stream to be an int in [0, 2**63). Received: stream={stream!r}")
    shape = attrs["shape"]
    if not isinstance(shape, tuple):
        fail(f"expected shape to be a list of dimensions. Received: shape={shape!r}")
    return [TensorType(tuple(check_dim(d) for d in shape), dtype)]


def _float_dtype(attrs: Any) -> str:
    dtype = canonical_dtype(attrs["dtype"])
    if dtype not in FLOAT_DTYPES:
        fail(f"expected dtype float32 or float64. Received: dtype={attrs['dtype']!r}")
    return dtype


def _uniform_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    low, high = _number("low", attrs["low"]), _number("high", attrs["high"])
    if not low <= high:
        fail(f"expected low <= high. Received: low={low!r}, high={high!r}")
    return _draw_type(types, attrs, _float_dtype(attrs))


def _normal_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    _number("mean", attrs["mean"])
    if _number("stddev", attrs["stddev"]) < 0:
        fail(f"expected stddev >= 0. Received: stddev={attrs['stddev']!r}")
    return _draw_type(types, attrs, _float_dtype(attrs))


def _bernoulli_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    if not 0.0 <= _number("p", attrs["p"]) <= 1.0:
        fail(f"expected p in [0, 1]. Received: p={attrs['p']!r}")
    return _draw_type(types, attrs, "bool")


# -- definitions ---------------------------------------------------------------------------
def _uniform_reference(ctx: RefContext, key: np.ndarray, shape: Any, low: float, high: float,
                       dtype: str, stream: int) -> np.ndarray:
    return uniform_draw(key, stream, ctx.out_shapes[0], low, high, canonical_dtype(dtype))


def _normal_reference(ctx: RefContext, key: np.ndarray, shape: Any, mean: float,
                      stddev: float, dtype: str, stream: int) -> np.ndarray:
    return normal_draw(key, stream, ctx.out_shapes[0], mean, stddev, canonical_dtype(dtype))


def _bernoulli_reference(ctx: RefContext, key: np.ndarray, shape: Any, p: float,
                         stream: int) -> np.ndarray:
    return bernoulli_draw(key, stream, ctx.out_shapes[0], p)


define("uniform", family="random", inputs=("key",), infer=_uniform_rule,
       reference=_uniform_reference, differentiable=False,
       attrs={"shape": REQUIRED, "low": 0.0, "high": 1.0, "dtype": "float32", "stream": 0},
       tags=("random",))
define("normal", family="random", inputs=("key",), infer=_normal_rule,
       reference=_normal_reference, differentiable=False,
       attrs={"shape": REQUIRED, "mean": 0.0, "stddev": 1.0, "dtype": "float32", "stream": 0},
       tags=("random",))
define("bernoulli", family="random", inputs=("key",), infer=_bernoulli_rule,
       reference=_bernoulli_reference, differentiable=False,
       attrs={"shape": REQUIRED, "p": 0.5, "stream": 0}, tags=("random",))
