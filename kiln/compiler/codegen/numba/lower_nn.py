"""Lowerings that call the hand-written kernel library (kiln.runtimes.numba.kernels,
imported as K by the generated module): convolutions, pooling, random draws, and gather,
scatter_add, one_hot and last-axis softmax, whose kernels handle the axis by reshaping.

A kernel takes its inputs, then its preallocated outputs, then its static attributes as
int64 values (not literals, see _call) and floats; arrays are views of the driver's flat
storage made at the call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kiln.compiler.codegen.numba.frame import Emitter, Frame, Ref
from kiln.compiler.codegen.numba.lower_tensor import lower_softmax
from kiln.compiler.codegen.numba.source import float_literal, ir_line, product_text, tuple_text
from kiln.compiler.passes.simplify import reordered_from
from kiln.ir.graph import Node
from kiln.ir.ops.image import FILL_MODES
from kiln.ir.ops.nn import Window, conv_op_window, window
from kiln.ir.types import normalize_axes


def _call(em: Emitter, kernel: str, arrays: Sequence[str], attrs: Sequence[object]) -> None:
    """K.<kernel>(arrays..., attrs...), the int attributes as np.int64 values: a bare int
    in the call is a literal, a type of its own to Numba, so each distinct stride, pad or
    stream compiled (and cached) the kernel again, about 4 s cold for a convolution. The
    steps run as fast (convnet 8.8 ms against 9.1, separable 96 against 94, one process)."""
    em.uses_kernels = True
    args = [*arrays, *(float_literal(a) if isinstance(a, float) else f"np.int64({int(a)})"
                       for a in attrs)]
    em.w.line(f"K.{kernel}({', '.join(args)})")


def _reshaped(ref: Ref, dims: Sequence[str]) -> str:
    return f"{ref.span()}.reshape({tuple_text(list(dims))})"


def _geometry(win: Window) -> list[int]:
    (sh, sw), ((top, _), (left, _)) = win.strides, win.pads
    return [sh, sw, top, left]


def conv_max_pool_into(em: Emitter, conv: Node, pool: Node, x: Ref, w: Ref, out: Ref) -> None:
    """out = max_pool2d(conv2d(x, w)) through the kernel that pools the convolution's output
    a few images at a time (a fused kernel of kind conv)."""
    win = conv_op_window(conv)
    size = conv.output.type.shape[1:3]
    pooling = _pool_window(pool, size)
    _call(em, "k_conv2d_max_pool2d", [x.array(), w.array(), out.array()],
          [*_geometry(win), *win.dilation, *size, *pooling.kernel, *_geometry(pooling)])


def _lower_conv(kernel: str) -> Callable[[Emitter, Frame, Node], None]:
    """The lowering of a convolution op (conv2d, depthwise_conv2d and their gradients):
    K.<kernel>(a, b, out, <geometry>, dilation) over the op's window."""
    def lower(em: Emitter, frame: Frame, node: Node) -> None:
        a, b = node.inputs
        win = conv_op_window(node)
        _call(em, kernel, [frame.read(a).array(), frame.read(b).array(),
                           frame.output(node.output).array()],
              [*_geometry(win), *win.dilation])

    return lower


def _pool_window(node: Node, size: Sequence[int]) -> Window:
    pool = node.attr["pool_size"]
    return window(tuple(size), pool, node.attr["strides"] or pool, node.attr["padding"])


def _lower_pool(kernel: str, size_of: str) -> object:
    """A pooling op: the window from the input's size (or input_size for avg's gradient)."""

    def lower(em: Emitter, frame: Frame, node: Node) -> None:
        size = (node.attr["input_size"] if size_of == "attr"
                else node.inputs[0].type.shape[1:3])
        win = _pool_window(node, size)
        arrays = [frame.read(v).array() for v in node.inputs]
        _call(em, kernel, [*arrays, frame.output(node.output).array()],
              [*win.kernel, *_geometry(win)])

    return lower


# -- random draws ------------------------------------------------------------------------------
def _lower_draw(kernel: str, attrs: Sequence[str]) -> object:
    def lower(em: Emitter, frame: Frame, node: Node) -> None:
        key, out = frame.read(node.inputs[0]), frame.output(node.output)
        values = [float(node.attr[a]) for a in attrs] + [int(node.attr["stream"])]
        _call(em, kernel, [key.span(), out.span()], values)

    return lower


# -- indexing and softmax through their kernels ----------------------------------------------
def _around(em: Emitter, shape: Sequence, axis: int, count: int = 1) -> list[str]:
    """[outer, middle, inner] sizes with axes axis..axis+count-1 in the middle."""
    dims = em.dims_of(shape)
    return [product_text(dims[:axis]), product_text(dims[axis:axis + count]),
            product_text(dims[axis + count:])]


def check_indices(em: Emitter, frame: Frame, node: Node, size: object) -> None:
    """Raise IndexError naming the node on an index outside [0, size) (the kernels check
    too, but cannot say which node's indices; the runtime makes it a KilnValueError).
    Indices that are an input of the entry point, or a transpose of one (the simplifier
    moves indices instead of gathered rows), are checked before any node runs, so that a
    bad batch leaves the state untouched."""
    v = node.inputs[1]
    source = reordered_from(frame.graph, v)
    if frame.is_input(source):
        v = source  # the same indices in another order
    indices = frame.read(v)
    w = em.w
    if frame.is_input(v):
        if (v.name, str(size)) in em.checked:
            return
        em.checked.add((v.name, str(size)))
        w = em.checks
    where = ir_line(node).split(" =")[0]
    k = em.fresh("k")
    with w.block(f"for {k} in range({indices.size()})"):
        with w.block(f"if {indices.flat(k)} < 0 or {indices.flat(k)} >= {em.dim(size)}"):
            w.line(f'raise IndexError("{node.op} ({where}): expected indices in '
                   f'[0, {size}). Received: an index outside")')


def lower_gather(em: Emitter, frame: Frame, node: Node) -> None:
    x, ind = node.inputs
    axis = node.attr["axis"] % x.type.rank
    check_indices(em, frame, node, x.type.shape[axis])
    outer, size, inner = _around(em, x.type.shape, axis)
    m = em.size(ind.type)
    _call(em, "k_gather", [_reshaped(frame.read(x), [outer, size, inner]),
                           frame.read(ind).span(),
                           _reshaped(frame.output(node.output), [outer, m, inner])], [])


def lower_scatter_add(em: Emitter, frame: Frame, node: Node) -> None:
    upd, ind = node.inputs
    y = node.output
    axis = node.attr["axis"] % y.type.rank
    check_indices(em, frame, node, y.type.shape[axis])
    outer, size, inner = _around(em, y.type.shape, axis)
    m = em.size(ind.type)
    _call(em, "k_scatter_add", [_reshaped(frame.read(upd), [outer, m, inner]),
                                frame.read(ind).span(),
                                _reshaped(frame.output(y), [outer, size, inner])], [])


def lower_one_hot(em: Emitter, frame: Frame, node: Node) -> None:
    ind, y = node.inputs[0], node.output
    axis = node.attr["axis"] % y.type.rank
    outer, depth, inner = _around(em, y.type.shape, axis)
    _call(em, "k_one_hot", [_reshaped(frame.read(ind), [outer, inner]),
                            _reshaped(frame.output(y), [outer, depth, inner])], [])


def lower_softmax_kernel(em: Emitter, frame: Frame, node: Node) -> None:
    """Over the last axis alone: the library's row kernel; other axes: generated loops."""
    x = node.inputs[0]
    if normalize_axes(node.attr["axis"], x.type.rank, node.op) != (x.type.rank - 1,):
        lower_softmax(em, frame, node)
        return
    rows, cols = _around(em, x.type.shape, x.type.rank - 1)[:2]
    kernel = "k_softmax_lastaxis" if node.op == "softmax" else "k_log_softmax_lastaxis"
    _call(em, kernel, [_reshaped(frame.read(x), [rows, cols]),
                       _reshaped(frame.output(node.output), [rows, cols])], [])


def lower_affine_transform(em: Emitter, frame: Frame, node: Node) -> None:
    """K.k_affine_transform(x, t, out, nearest, fill_mode, fill_value), or the adjoint's
    kernel, which takes no fill_value."""
    arrays = [frame.read(v).array() for v in node.inputs]
    attrs: list[object] = [node.attr["interpolation"] == "nearest",
                           FILL_MODES.index(node.attr["fill_mode"])]
    if node.op == "affine_transform":
        attrs.append(float(node.attr["fill_value"]))
    _call(em, f"k_{node.op}", [*arrays, frame.output(node.output).array()], attrs)


LOWERINGS = {
    **{f"{op}{suffix}": _lower_conv(f"k_{op}{suffix}")
       for op in ("conv2d", "depthwise_conv2d")
       for suffix in ("", "_grad_input", "_grad_filter")},
    "max_pool2d": _lower_pool("k_max_pool2d", "input"),
    "max_pool2d_grad": _lower_pool("k_max_pool2d_grad", "input"),
    "max_pool2d_select": _lower_pool("k_max_pool2d_select", "input"),
    "avg_pool2d": _lower_pool("k_avg_pool2d", "input"),
    "avg_pool2d_grad": _lower_pool("k_avg_pool2d_grad", "attr"),
    "uniform": _lower_draw("k_uniform", ("low", "high")),
    "normal": _lower_draw("k_normal", ("mean", "stddev")),
    "bernoulli": _lower_draw("k_bernoulli", ("p",)),
    "gather": lower_gather,
    "affine_transform": lower_affine_transform,
    "affine_transform_grad": lower_affine_transform,
    "scatter_add": lower_scatter_add,
    "one_hot": lower_one_hot,
    "softmax": lower_softmax_kernel,
    "log_softmax": lower_softmax_kernel,
}
