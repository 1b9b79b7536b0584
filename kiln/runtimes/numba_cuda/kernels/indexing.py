"""gather, scatter_add and one_hot for CUDA along one axis, on 3-D views the caller makes by
reshaping: the axis in the middle, the axes before it merged into `outer` and those after
it into `inner`; indices 1-D (m,) for gather and scatter_add, 2-D (outer, inner) for one_hot.

An index outside [0, size) cannot raise on the device: gather writes 0 for it and
scatter_add skips it, and both set error[0] = code (the launching node's code, see
RunContext.error_code) so that the executable can raise, naming the node, after the call.
scatter_add accumulates with atomic adds (float32, float64, int32, int64): the order of
the additions, and so the last bits of a float sum, may vary between runs.
"""

from __future__ import annotations

from numba import cuda


@cuda.jit
def gather(x, indices, out, error, code):
    """out[a, i, c] = x[a, indices[i], c]: x (outer, size, inner), out (outer, m, inner)."""
    m, inner, size = out.shape[1], out.shape[2], x.shape[1]
    for t in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        c = t % inner
        i = (t // inner) % m
        a = t // (inner * m)
        row = indices[i]
        if 0 <= row < size:
            out[a, i, c] = x[a, row, c]
        else:
            out[a, i, c] = 0
            error[0] = code


@cuda.jit
def fill_zero(out):
    """out[:] = 0 (1-D)."""
    for t in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[t] = 0


@cuda.jit
def scatter_add(updates, indices, out, error, code):
    """out[a, indices[i], c] += updates[a, i, c] (out zeroed before): updates (outer, m,
    inner), out (outer, size, inner)."""
    m, inner, size = updates.shape[1], updates.shape[2], out.shape[1]
    for t in range(cuda.grid(1), updates.size, cuda.gridsize(1)):
        c = t % inner
        i = (t // inner) % m
        a = t // (inner * m)
        row = indices[i]
        if 0 <= row < size:
            cuda.atomic.add(out, (a, row, c), updates[a, i, c])
        else:
            error[0] = code


@cuda.jit
def one_hot(indices, out):
    """out[a, d, c] = 1 if indices[a, c] == d else 0: out (outer, depth, inner), any dtype."""
    depth, inner = out.shape[1], out.shape[2]
    for t in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        c = t % inner
        d = (t // inner) % depth
        a = t // (inner * depth)
        if indices[a, c] == d:
            out[a, d, c] = 1
        else:
            out[a, d, c] = 0


def ptx_cases() -> list[tuple[str, object, str]]:
    """(name, Python function, signature) of every kernel here, for compile_ptx checks."""
    cases = []
    for value in ("float32", "float64", "int32", "int64"):
        for index in ("int32", "int64"):
            cases.append((f"gather[{value},{index}]", gather.py_func,
                          f"void({value}[:, :, :], {index}[:], {value}[:, :, ::1], "
                          f"int32[::1], int64)"))
            cases.append((f"scatter_add[{value},{index}]", scatter_add.py_func,
                          f"void({value}[:, :, :], {index}[:], {value}[:, :, ::1], "
                          f"int32[::1], int64)"))
        cases.append((f"fill_zero[{value}]", fill_zero.py_func, f"void({value}[::1])"))
    for value in ("float32", "float64", "int32", "int64", "bool"):
        for index in ("int32", "int64"):
            cases.append((f"one_hot[{value},{index}]", one_hot.py_func,
                          f"void({index}[:, :], {value}[:, :, ::1])"))
    return cases
