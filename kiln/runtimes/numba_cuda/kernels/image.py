"""affine_transform and its adjoint (kiln.ir.ops.image) for CUDA, over NHWC images.

One thread per output element (the forward) or per cotangent element (the adjoint, which adds
into the zeroed dx with atomic adds: the order of the additions, and so the last bits of a
sum, may vary between runs). fill_mode arrives as its index in kiln.ir.ops.image.FILL_MODES.
The sample coordinates and weights are computed in float64 for either dtype (the reference
computes them in the images' dtype: float32 results differ from it in the last bits).
"""

from __future__ import annotations

from numba import cuda

from kiln.ir.ops.image import fix_scalar_index
from kiln.runtimes.numba_cuda.intrinsics import floor

# A pixel index mapped into [0, size) by fill mode (constant clamps).
fix_index = cuda.jit(device=True)(fix_scalar_index)


@cuda.jit(device=True)
def round_half_even(v):
    r = floor(v)
    d = v - r
    if d > 0.5 or (d == 0.5 and r % 2 != 0):
        r += 1
    return int(r)


@cuda.jit(device=True)
def element(e, o_h, o_w, chans):
    """The (image, row, column, channel) of flat element e of an NHWC array."""
    return (e // (chans * o_w * o_h), (e // (chans * o_w)) % o_h, (e // chans) % o_w,
            e % chans)


@cuda.jit(device=True)
def coordinates(t, n, y, x):
    """Where output pixel (y, x) of image n reads the input: (row, column), in float64."""
    fy, fx = float(y), float(x)
    return (float(t[n, 3]) * fx + float(t[n, 4]) * fy + float(t[n, 5]),
            float(t[n, 0]) * fx + float(t[n, 1]) * fy + float(t[n, 2]))


@cuda.jit(device=True)
def sample_point(ys, xs, p, nearest, mode, h, w):
    """Sample point p (0..3; nearest has only 0) of the read at (ys, xs): its row and column
    fixed by fill mode, its weight, and whether the unfixed pixel lies outside the image."""
    if nearest:
        r, q, weight = round_half_even(ys), round_half_even(xs), 1.0
    else:
        low_y, low_x = floor(ys), floor(xs)
        up_y, up_x = ys - low_y, xs - low_x
        wy = up_y if p >= 2 else 1.0 - up_y
        wx = up_x if p % 2 == 1 else 1.0 - up_x
        r, q, weight = int(low_y) + p // 2, int(low_x) + p % 2, wy * wx
    outside = r < 0 or r >= h or q < 0 or q >= w
    return fix_index(r, h, mode), fix_index(q, w, mode), weight, outside


@cuda.jit
def affine_transform(x, t, out, nearest, mode, fill_value):
    h, w = x.shape[1], x.shape[2]
    o_h, o_w, chans = out.shape[1], out.shape[2], out.shape[3]
    points = 1 if nearest else 4
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n, i, j, c = element(e, o_h, o_w, chans)
        ys, xs = coordinates(t, n, i, j)
        acc = 0.0
        for p in range(points):
            r, q, weight, outside = sample_point(ys, xs, p, nearest, mode, h, w)
            acc += weight * (fill_value if mode == 0 and outside else x[n, r, q, c])
        out[n, i, j, c] = acc


@cuda.jit
def affine_transform_grad(g, t, dx, nearest, mode):
    """dx (zeroed before) += each g element at the pixels its output read."""
    h, w = dx.shape[1], dx.shape[2]
    o_h, o_w, chans = g.shape[1], g.shape[2], g.shape[3]
    points = 1 if nearest else 4
    for e in range(cuda.grid(1), g.size, cuda.gridsize(1)):
        n, i, j, c = element(e, o_h, o_w, chans)
        ys, xs = coordinates(t, n, i, j)
        for p in range(points):
            r, q, weight, outside = sample_point(ys, xs, p, nearest, mode, h, w)
            if not (mode == 0 and outside):
                cuda.atomic.add(dx, (n, r, q, c), weight * g[n, i, j, c])


def ptx_cases() -> list[tuple[str, object, str]]:
    """(name, Python function, signature) of every kernel here, for compile_ptx checks."""
    cases = []
    for name in ("float32", "float64"):
        a4, c4, a2 = f"{name}[:, :, :, :]", f"{name}[:, :, :, ::1]", f"{name}[:, :]"
        cases += [
            (f"affine_transform[{name}]", affine_transform.py_func,
             f"void({a4}, {a2}, {c4}, boolean, int64, float64)"),
            (f"affine_transform_grad[{name}]", affine_transform_grad.py_func,
             f"void({a4}, {a2}, {c4}, boolean, int64)"),
        ]
    return cases
