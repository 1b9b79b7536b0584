"""Random draws for CUDA that reproduce kiln.ir.ops.random's counter-based SplitMix64 stream:
uniform and bernoulli bit for bit, normal up to an ulp or so of log and cos (libdevice's).

Arguments: key (an int64 array of one element), out (1-D, C-contiguous: the output in
row-major order), then uniform (low, high, stream), normal (mean, stddev, stream),
bernoulli (p, stream). One thread per element, grid-striding. All integer arithmetic is
uint64 (wrapping); uniform's products and sums use libdevice's *_rn so that the compiler
cannot contract them into a fused multiply-add, which the spec rules out.
"""

from __future__ import annotations

import math

import numpy as np
from numba import config, cuda
from numba.cuda import libdevice

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S11, _S27, _S30, _S31, _S40 = (np.uint64(s) for s in (11, 27, 30, 31, 40))
_ONE = np.uint64(1)
TWO_PI = 6.283185307179586
_TWO_M24 = np.float32(2.0**-24)
_TWO_M53 = 2.0**-53

if config.ENABLE_CUDASIM:  # the simulator's libdevice is stubs; NumPy scalars round the same
    fadd, fsub, fmul = (lambda a, b: a + b), (lambda a, b: a - b), (lambda a, b: a * b)
    dadd, dmul = fadd, fmul
else:
    fadd, fsub, fmul = libdevice.fadd_rn, libdevice.fsub_rn, libdevice.fmul_rn
    dadd, dmul = libdevice.dadd_rn, libdevice.dmul_rn


@cuda.jit(device=True)
def mix64(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@cuda.jit(device=True)
def stream_base(key, stream):
    """base = mix(mix(K) + stream * G), K the key's int64 bits as uint64."""
    return mix64(mix64(np.uint64(key[0])) + np.uint64(stream) * GOLDEN)


@cuda.jit(device=True)
def bits(base, c):
    """Output c of SplitMix64 seeded with base."""
    return mix64(base + (np.uint64(c) + _ONE) * GOLDEN)


@cuda.jit(device=True)
def unit53(b):
    return np.float64(b >> _S11) * _TWO_M53


@cuda.jit
def uniform32(key, out, low, high, stream):
    base = stream_base(key, stream)
    lo = np.float32(low)
    span = fsub(np.float32(high), lo)
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        u = fmul(np.float32(bits(base, i) >> _S40), _TWO_M24)
        out[i] = fadd(lo, fmul(span, u))


@cuda.jit
def uniform64(key, out, low, high, stream):
    base = stream_base(key, stream)
    lo = np.float64(low)
    span = dadd(np.float64(high), -lo)  # a - b, exactly
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = dadd(lo, dmul(span, unit53(bits(base, i))))


@cuda.jit
def normal(key, out, mean, stddev, stream):
    """out = mean + stddev * z (Box-Muller from counters 2i, 2i + 1) in float64, rounded
    once to out's dtype."""
    base = stream_base(key, stream)
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        u1 = np.float64((bits(base, 2 * i) >> _S11) + _ONE) * _TWO_M53
        u2 = unit53(bits(base, 2 * i + 1))
        z = math.sqrt(-2.0 * math.log(u1)) * math.cos(TWO_PI * u2)
        out[i] = dadd(mean, dmul(stddev, z))


@cuda.jit
def bernoulli(key, out, p, stream):
    """out (bool) = u < p, u the float64 uniform of the same counter."""
    base = stream_base(key, stream)
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = unit53(bits(base, i)) < p


def ptx_cases() -> list[tuple[str, object, str]]:
    """(name, Python function, signature) of every kernel here, for compile_ptx checks."""
    key = "int64[::1]"
    return [
        ("uniform32", uniform32.py_func, f"void({key}, float32[::1], float64, float64, int64)"),
        ("uniform64", uniform64.py_func, f"void({key}, float64[::1], float64, float64, int64)"),
        ("normal[float32]", normal.py_func,
         f"void({key}, float32[::1], float64, float64, int64)"),
        ("normal[float64]", normal.py_func,
         f"void({key}, float64[::1], float64, float64, int64)"),
        ("bernoulli", bernoulli.py_func, f"void({key}, boolean[::1], float64, int64)"),
    ]
