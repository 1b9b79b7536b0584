"""The conversion of each ONNX op the importer supports into kiln IR (see importer.py for
the layouts and the constants known at import).

Each converter gets the importer, the NodeProto, its inputs as Tensors (None for an omitted
optional input) and its attributes (the registered defaults overlaid with the node's), and
returns its outputs. Where the ONNX op is more general than kiln's (explicit or asymmetric
padding, groups, rank-1 matmul operands, negative indices), it is rewritten into kiln ops
that compute the same; where kiln cannot (other pad modes, dilated pools, ops kiln lacks,
such as TopK), the node is refused with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kiln.frontends.keras import activations
from kiln.frontends.onnx.importer import (
    NCHW_TO_NHWC,
    Importer,
    NodeError,
    Tensor,
    converter,
    dtype_of,
    optional,
    tensor_array,
)
from kiln.ir.graph import Value
from kiln.ir.ops.nn import output_size
from kiln.ir.types import broadcast_shapes, canonical_dtype, numpy_dtype

INT64_MAX = 2**63 - 1


def _folded(array: Any, like: Tensor | None = None) -> list[Tensor]:
    """A result computed at import; a float result keeps the float type of `like` (NumPy
    may have widened it)."""
    array = np.asarray(array)
    if like is not None and like.known and array.dtype.kind == like.array.dtype.kind == "f":  # type: ignore
        array = array.astype(like.array.dtype)  # type: ignore[union-attr]
    return [Tensor(array=array)]


# -- elementwise ---------------------------------------------------------------------------
def _to_channels_last(imp: Importer, t: Tensor) -> Value:
    """An operand (rank 4 or less) of an elementwise op on channels-last images, broadcast
    as it would be in ONNX's layout."""
    if t.rank == 4:
        return imp.channels_last(t)
    if t.rank == 0:
        return imp.value(t)
    shape4 = (1,) * (4 - t.rank) + t.shape()
    if t.known:
        return imp.materialize(np.ascontiguousarray(
            t.array.reshape(shape4).transpose(NCHW_TO_NHWC)), t.origin)  # type: ignore
    return imp.b.transpose(imp.b.reshape(imp.value(t), shape=shape4), perm=NCHW_TO_NHWC)


def elementwise(imp: Importer, ins: Sequence[Tensor], build: Callable[..., Value],
                fold: Callable[..., Any] | None = None, cast: bool = False) -> list[Tensor]:
    """`build(*values)` over the operands, channels last where an image operand is held so
    (the result then stays so), folded with `fold` when every operand is known (`cast`: the
    fold's dtype is the result's, not the first operand's)."""
    if fold is not None and all(t.known for t in ins):
        with np.errstate(all="ignore"):
            return _folded(fold(*[t.array for t in ins]), None if cast else ins[0])
    if any(t.channels_last for t in ins) and all(t.rank <= 4 for t in ins):
        return [Tensor(nhwc=build(*[_to_channels_last(imp, t) for t in ins]))]
    return [Tensor(value=build(*[imp.value(t) for t in ins]))]


def _need(ins: Sequence[Tensor | None], index: int, name: str) -> Tensor:
    if index >= len(ins) or ins[index] is None:
        raise NodeError(f"expected the input {name}")
    return ins[index]  # type: ignore[return-value]


def _activation(op_type: str, build: Callable[[Any, Value, dict], Value],
                attrs: dict[str, Any] | None = None,
                fold: Callable[..., Any] | None = None) -> None:
    """Register an op of one input that is `build(builder, x, attributes)` elementwise,
    folded at import by `fold` where given and the input is known."""
    converter(op_type, attrs=attrs)(lambda imp, node, ins, a: elementwise(
        imp, [_need(ins, 0, "X")], lambda x: build(imp.b, x, a), fold))


for _onnx, _kiln, _fold in (
        ("Relu", "relu", lambda x: np.maximum(x, 0).astype(x.dtype)),
        ("Sigmoid", "sigmoid", None), ("Tanh", "tanh", np.tanh), ("Exp", "exp", np.exp),
        ("Log", "log", np.log), ("Sqrt", "sqrt", np.sqrt), ("Abs", "abs", np.abs),
        ("Neg", "neg", np.negative), ("Reciprocal", "reciprocal", np.reciprocal),
        ("Sin", "sin", np.sin), ("Cos", "cos", np.cos), ("Sign", "sign", np.sign),
        ("Softplus", "softplus", None), ("Not", "logical_not", np.logical_not),
        ("Floor", "floor", np.floor), ("Ceil", "ceil", np.ceil), ("Round", "round", np.round)):
    _activation(_onnx, lambda b, x, a, op=_kiln: b.op(op, x), fold=_fold)


@converter("Identity")
def _identity(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    return [_need(ins, 0, "input")]


@converter("Dropout", attrs={"seed": 0, "ratio": 0.5})
def _dropout(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    # Inference: the identity. training_mode (opset 12's third input) must be false.
    if optional(ins, 2) is not None:
        if not ins[2].known or bool(ins[2].array):
            raise NodeError("expected training_mode false (kiln imports models for "
                            "inference)")
    return [_need(ins, 0, "data")]




def _f(a: dict, name: str) -> float:
    return float(a[name])


_activation("Elu", lambda b, x, a: b.elu(x, alpha=_f(a, "alpha")), {"alpha": 1.0})
_activation("Selu", lambda b, x, a: b.mul(b.elu(x, alpha=_f(a, "alpha")), _f(a, "gamma")),
            {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875})
_activation("LeakyRelu", lambda b, x, a: b.where(b.less(x, 0.0), b.mul(x, _f(a, "alpha")), x),
            {"alpha": 0.01})
_activation("ThresholdedRelu",
            lambda b, x, a: b.where(b.greater(x, _f(a, "alpha")), x, b.mul(x, 0.0)),
            {"alpha": 1.0})
_activation("HardSigmoid", lambda b, x, a: b.clip(
    b.add(b.mul(x, _f(a, "alpha")), _f(a, "beta")), min=0.0, max=1.0),
    {"alpha": 0.2, "beta": 0.5})
# max(0, x) + min(0, alpha * (exp(x / alpha) - 1)): alpha times elu of x / alpha
_activation("Celu", lambda b, x, a: b.mul(b.elu(b.div(x, _f(a, "alpha")), alpha=1.0),
                                          _f(a, "alpha")), {"alpha": 1.0})
# Activations ONNX shares with Keras (HardSwish is Keras's hard_silu: x * clip(x/6 + 1/2)),
# built by the Keras frontend's own IR functions.
for _onnx, _fn in (("HardSwish", activations.hard_silu), ("Softsign", activations.softsign),
                   ("Mish", activations.mish), ("Erf", activations.erf)):
    _activation(_onnx, lambda b, x, a, fn=_fn: fn(b, x))


@converter("PRelu")
def _prelu(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    def build(x: Value, slope: Value) -> Value:
        b = imp.b
        return b.where(b.less(x, 0.0), b.mul(x, slope), b.add(x, b.mul(slope, 0.0)))

    return elementwise(imp, [_need(ins, 0, "X"), _need(ins, 1, "slope")], build)


@converter("Gelu", attrs={"approximate": "none"})
def _gelu(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    if a["approximate"] not in ("none", "tanh"):
        raise NodeError(f"expected approximate 'none' or 'tanh'. Received: "
                        f"{a['approximate']!r}")
    b = imp.b

    def build(x: Value) -> Value:
        if a["approximate"] == "none":  # x/2 (1 + erf(x / sqrt 2)), as Keras's gelu
            return activations.gelu(b, x)
        return activations.gelu_tanh(b, x)

    return elementwise(imp, [_need(ins, 0, "X")], build)


@converter("Clip", attrs={"min": None, "max": None})
def _clip(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    x = _need(ins, 0, "input")
    bounds: list[Any] = []
    dynamic: list[Tensor | None] = []
    for index, name in ((1, "min"), (2, "max")):
        t = optional(ins, index)
        bounds.append(a[name] if t is None else t.array.item() if t.known else None)
        dynamic.append(t if t is not None and not t.known else None)
    if any(dynamic):  # bounds computed at run time: maximum and minimum
        b = imp.b
        v = imp.value(x)
        lo_t, hi_t = dynamic
        v = b.maximum(v, imp.value(lo_t)) if lo_t else v if bounds[0] is None else \
            b.maximum(v, bounds[0])
        v = b.minimum(v, imp.value(hi_t)) if hi_t else v if bounds[1] is None else \
            b.minimum(v, bounds[1])
        return [Tensor(value=v)]
    lo, hi = bounds
    fold = lambda v: np.clip(v, lo, hi).astype(v.dtype)  # noqa: E731
    if x.dtype() in ("float32", "float64"):
        return elementwise(imp, [x], lambda v: imp.b.clip(
            v, min=-np.inf if lo is None else float(lo), max=np.inf if hi is None else float(hi)),
            fold)

    def build(v: Value) -> Value:  # integers: kiln's clip is for floats
        v = v if lo is None else imp.b.maximum(v, lo)
        return v if hi is None else imp.b.minimum(v, hi)

    return elementwise(imp, [x], build, fold)


@converter("Cast", attrs={"to": None, "saturate": 1, "round_mode": "up"})
def _cast(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    return _cast_to(imp, _need(ins, 0, "input"), dtype_of(a["to"], "Cast's target"))


@converter("CastLike", attrs={"saturate": 1, "round_mode": "up"})
def _cast_like(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    return _cast_to(imp, _need(ins, 0, "input"), _need(ins, 1, "target_type").dtype())


def _cast_to(imp: Importer, x: Tensor, dtype: str) -> list[Tensor]:
    if x.dims is not None and dtype in ("int32", "int64"):
        return [x]  # a shape vector stays one (int64 -> int32 -> int64 chains included)
    if x.dtype() == dtype:
        return [x]
    return elementwise(imp, [x], lambda v: imp.b.cast(v, dtype=dtype),
                       lambda v: v.astype(numpy_dtype(dtype)), cast=True)


def _int_div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if x.dtype.kind in "iu":
        q = np.floor_divide(x, y)
        return q + ((np.remainder(x, y) != 0) & ((x < 0) ^ (y < 0))).astype(q.dtype)
    return np.divide(x, y).astype(x.dtype)


_BINARY = {
    "Add": ("add", np.add), "Sub": ("sub", np.subtract), "Mul": ("mul", np.multiply),
    "Div": ("div", _int_div),
    "Equal": ("equal", np.equal), "Less": ("less", np.less), "Greater": ("greater", np.greater),
    "And": ("logical_and", np.logical_and), "Or": ("logical_or", np.logical_or),
}


def _binary(op: str, fold: Callable[..., Any] | None) -> Any:
    def convert(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
        x, y = _need(ins, 0, "A"), _need(ins, 1, "B")
        return elementwise(imp, [x, y], lambda u, v: imp.b.op(op, u, v), fold)

    return convert


for _onnx, (_kiln, _fold) in _BINARY.items():
    converter(_onnx)(_binary(_kiln, _fold))


@converter("Pow")
def _pow(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    x, y = _need(ins, 0, "X"), _need(ins, 1, "Y")
    if y.dtype() != x.dtype():  # ONNX allows an exponent of another type
        if y.known:
            y = Tensor(array=y.array.astype(numpy_dtype(x.dtype())))  # type: ignore
        else:
            y = Tensor(value=imp.b.cast(imp.value(y), dtype=x.dtype()))
    return elementwise(imp, [x, y], lambda u, v: imp.b.pow(u, v),
                       lambda u, v: np.power(u, v).astype(u.dtype))


@converter("Xor")
def _xor(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    b = imp.b
    return elementwise(imp, [_need(ins, 0, "A"), _need(ins, 1, "B")],
                       lambda u, v: b.logical_not(b.equal(u, v)), np.logical_xor)


@converter("LessOrEqual", "GreaterOrEqual")
def _compare_or_equal(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    b = imp.b
    op, fold = ("less", np.less_equal) if node.op_type == "LessOrEqual" else \
        ("greater", np.greater_equal)
    return elementwise(imp, [_need(ins, 0, "A"), _need(ins, 1, "B")],
                       lambda u, v: b.logical_or(b.op(op, u, v), b.equal(u, v)), fold)


@converter("Where")
def _where(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    return elementwise(imp, [_need(ins, 0, "condition"), _need(ins, 1, "X"),
                             _need(ins, 2, "Y")], lambda c, x, y: imp.b.where(c, x, y), np.where)


@converter("Max", "Min", "Sum", "Mean")
def _variadic(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    if not ins or any(t is None for t in ins):
        raise NodeError("expected one or more inputs")
    op = {"Max": "maximum", "Min": "minimum", "Sum": "add", "Mean": "add"}[node.op_type]
    fold = {"Max": np.maximum, "Min": np.minimum, "Sum": np.add, "Mean": np.add}[node.op_type]
    b = imp.b

    def build(*values: Value) -> Value:
        out = values[0]
        for v in values[1:]:
            out = b.op(op, out, v)
        return b.div(out, float(len(values))) if node.op_type == "Mean" and len(values) > 1 \
            else out

    def folded(*arrays: np.ndarray) -> np.ndarray:
        out = arrays[0]
        for v in arrays[1:]:
            out = fold(out, v)
        return out / len(arrays) if node.op_type == "Mean" else out

    return elementwise(imp, ins, build, folded)


# -- matrix products -----------------------------------------------------------------------
def _matmul(imp: Importer, x: Tensor, y: Tensor) -> Value:
    """ONNX's MatMul (NumPy's): a rank-1 operand is a row (x) or a column (y), removed after."""
    b = imp.b
    xv, yv = imp.value(x), imp.value(y)
    if x.rank == 1:
        xv = b.expand_dims(xv, axes=[0])
    if y.rank == 1:
        yv = b.expand_dims(yv, axes=[1])
    out = b.matmul(xv, yv)
    drop = ([out.type.rank - 2] if x.rank == 1 else []) + ([out.type.rank - 1]
                                                           if y.rank == 1 else [])
    return b.squeeze(out, axes=drop) if drop else out


@converter("MatMul")
def _matmul_node(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    return [Tensor(value=_matmul(imp, _need(ins, 0, "A"), _need(ins, 1, "B")))]


@converter("Gemm", attrs={"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0})
def _gemm(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    b = imp.b
    x, y = _need(ins, 0, "A"), _need(ins, 1, "B")
    c = optional(ins, 2)
    factors = []
    for t, flag in ((x, a["transA"]), (y, a["transB"])):
        if t.rank != 2:
            raise NodeError(f"expected A and B of rank 2. Received: shape {list(t.shape())}")
        if flag and t.known:
            t = Tensor(array=np.ascontiguousarray(t.array.T), origin=t.origin)  # type: ignore
        elif flag:
            t = Tensor(value=b.transpose(imp.value(t), perm=[1, 0]))
        factors.append(t)
    out = b.matmul(imp.value(factors[0]), imp.value(factors[1]))
    if a["alpha"] != 1.0:
        out = b.mul(out, float(a["alpha"]))
    if c is not None and a["beta"] != 0.0:
        if c.known and a["beta"] != 1.0:
            c = Tensor(array=(c.array * a["beta"]).astype(c.array.dtype),  # type: ignore
                       origin=c.origin)
            out = b.add(out, imp.value(c))
        else:
            cv = imp.value(c)
            out = b.add(out, cv if a["beta"] == 1.0 else b.mul(cv, float(a["beta"])))
    return [Tensor(value=out)]


# -- convolution and pooling -----------------------------------------------------------------
def _spatial(x: Tensor, what: str) -> tuple[int, int]:
    shape = x.shape()
    if len(shape) != 4:
        raise NodeError(f"kiln imports 1-D and 2-D {what} only: expected an input of rank "
                        f"3 (N, C, L) or 4 (N, C, H, W). Received: shape {list(shape)}")
    h, w = shape[2:]
    if not isinstance(h, int) or not isinstance(w, int):
        raise NodeError(f"expected static height and width. Received: shape {list(shape)}")
    return h, w


def _pads(a: dict, size: tuple[int, int], kernel: tuple[int, int], strides: tuple[int, int],
          dilations: tuple[int, int]) -> list[tuple[int, int]]:
    """Per spatial axis (before, after) as ONNX's auto_pad and pads say."""
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for axis in (0, 1):
            _, (lo, hi) = output_size(size[axis], kernel[axis], strides[axis], dilations[axis],
                                      "same")
            out.append((lo, hi) if auto == "SAME_UPPER" else (hi, lo))
        return out
    if auto == "VALID":
        return [(0, 0), (0, 0)]
    if auto != "NOTSET":
        raise NodeError(f"expected auto_pad NOTSET, SAME_UPPER, SAME_LOWER or VALID. "
                        f"Received: {auto!r}")
    pads = list(a.get("pads") or [0, 0, 0, 0])
    if len(pads) != 4:
        raise NodeError(f"expected 4 pads (top, left, bottom, right). Received: {pads}")
    return [(pads[0], pads[2]), (pads[1], pads[3])]


def _pair(value: Any, default: int, what: str) -> tuple[int, int]:
    if value is None:
        return (default, default)
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise NodeError(f"expected 2 {what} (height, width). Received: {list(value)}")
    return value  # type: ignore[return-value]


def _padding_for(size: tuple[int, int], kernel: tuple[int, int], strides: tuple[int, int],
                 dilations: tuple[int, int], pads: list[tuple[int, int]]) -> str | None:
    """'valid' or 'same' when those are exactly `pads`, else None (pad explicitly)."""
    if all(p == (0, 0) for p in pads):
        return "valid"
    same = [output_size(size[k], kernel[k], strides[k], dilations[k], "same")[1]
            for k in (0, 1)]
    return "same" if same == pads else None


def _pad_image(imp: Importer, x: Value, pads: list[tuple[int, int]], value: float) -> Value:
    if any(p < 0 for pair in pads for p in pair):
        raise NodeError(f"expected pads >= 0. Received: {pads}")
    return imp.b.pad(x, pads=[(0, 0), pads[0], pads[1], (0, 0)], value=value)


def _one_d(fn: Any) -> Any:
    """A 2-D window op applied to 1-D inputs (N, C, L) as images of height 1."""

    def convert(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
        x = _need(ins, 0, "X")
        if x.rank != 3:
            return fn(imp, node, ins, a)
        b = imp.b
        n, c, length = x.shape()
        ins = list(ins)
        ins[0] = _reshaped(imp, x, [n, c, 1, length])
        w = optional(ins, 1)
        if node.op_type == "Conv" and w is not None and w.rank == 3:
            o, cg, k = w.shape()
            ins[1] = _reshaped(imp, w, [o, cg, 1, k])
        a = dict(a)
        for key in ("kernel_shape", "strides", "dilations"):
            if a.get(key) is not None:
                a[key] = [1, *a[key]]
        if a.get("pads") is not None:
            a["pads"] = [0, a["pads"][0], 0, a["pads"][1]]
        (out,) = fn(imp, node, ins, a)
        return [Tensor(value=b.squeeze(imp.value(out), axes=[2]))]

    return convert


@converter("Conv", attrs={"auto_pad": "NOTSET", "dilations": None, "group": 1,
                          "kernel_shape": None, "pads": None, "strides": None})
@_one_d
def _conv(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    b = imp.b
    x, w = _need(ins, 0, "X"), _need(ins, 1, "W")
    bias = optional(ins, 2)
    size = _spatial(x, "convolutions")
    wshape = w.shape()
    if len(wshape) != 4 or not all(isinstance(d, int) for d in wshape):
        raise NodeError(f"expected a static kernel W of rank 4 (M, C/group, kH, kW). "
                        f"Received: shape {list(wshape)}")
    out_ch, per_group, kh, kw = wshape
    channels, group = x.shape()[1], int(a["group"])
    if a["kernel_shape"] is not None and tuple(a["kernel_shape"]) != (kh, kw):
        raise NodeError(f"expected kernel_shape to match W. Received: kernel_shape "
                        f"{list(a['kernel_shape'])}, W {list(wshape)}")
    if group < 1 or channels % group or out_ch % group or channels // group != per_group:
        raise NodeError(f"expected group to divide the input channels {channels} and the "
                        f"output channels {out_ch}, with W.shape[1] = C/group. Received: "
                        f"group={group}, W {list(wshape)}")
    strides = _pair(a["strides"], 1, "strides")
    dilations = _pair(a["dilations"], 1, "dilations")
    pads = _pads(a, size, (kh, kw), strides, dilations)
    padding = _padding_for(size, (kh, kw), strides, dilations, pads)
    xv = imp.channels_last(x)
    if padding is None:
        xv, padding = _pad_image(imp, xv, pads, 0.0), "valid"
    opts = dict(strides=strides, padding=padding, dilation=dilations)
    if group == 1:
        y = b.conv2d(xv, _kernel(imp, w, (2, 3, 1, 0)), **opts)
    elif group == channels and per_group == 1:
        kernel = _reshaped(imp, w, [channels, out_ch // channels, kh, kw])
        y = b.depthwise_conv2d(xv, _kernel(imp, kernel, (2, 3, 0, 1)), **opts)
    else:
        cin, cout = channels // group, out_ch // group
        parts = b.split(xv, axis=3, sizes=[cin] * group)  # group >= 2 here: a tuple
        outs = []
        for g in range(group):
            if w.known:
                wg = Tensor(array=w.array[g * cout:(g + 1) * cout], origin=w.origin)  # type: ignore
            else:
                wg = Tensor(value=b.slice(imp.value(w), begin=[g * cout, None, None, None],
                                          end=[(g + 1) * cout, None, None, None]))
            outs.append(b.conv2d(parts[g], _kernel(imp, wg, (2, 3, 1, 0)), **opts))
        y = b.concat(*outs, axis=3)
    if bias is not None:
        if bias.rank != 1:
            raise NodeError(f"expected a bias B of rank 1. Received: shape {list(bias.shape())}")
        y = b.add(y, imp.value(bias))
    return [Tensor(nhwc=y)]


def _reshaped(imp: Importer, t: Tensor, shape: list) -> Tensor:
    """t reshaped: at import when it is known (keeping its initializer's name), else in
    the graph."""
    if t.known:
        return Tensor(array=t.array.reshape(shape), origin=t.origin)  # type: ignore
    return Tensor(value=imp.b.reshape(imp.value(t), shape=shape))


def _kernel(imp: Importer, w: Tensor, perm: tuple[int, ...]) -> Value:
    if w.known:
        return imp.materialize(np.ascontiguousarray(w.array.transpose(perm)),  # type: ignore
                               w.origin)
    return imp.b.transpose(imp.value(w), perm=perm)


def _pool_geometry(x: Tensor, a: dict, what: str) -> tuple:
    size = _spatial(x, what)
    if a["kernel_shape"] is None:
        raise NodeError("expected kernel_shape")
    kernel = _pair(a["kernel_shape"], 1, "kernel_shape")
    strides = _pair(a["strides"], 1, "strides")
    if _pair(a.get("dilations"), 1, "dilations") != (1, 1):
        raise NodeError(f"kiln's pools have no dilation. Received: dilations "
                        f"{list(a['dilations'])}")
    pads = _pads(a, size, kernel, strides, (1, 1))
    if a.get("ceil_mode"):
        grown = []
        for k in (0, 1):
            lo, hi = pads[k]
            span = size[k] + lo + hi
            out = -(-(span - kernel[k]) // strides[k]) + 1
            # a window that would start in the trailing padding is dropped, as ONNX says
            if (out - 1) * strides[k] >= size[k] + lo:
                out -= 1
            grown.append((lo, max(hi, (out - 1) * strides[k] + kernel[k] - size[k] - lo)))
        return size, kernel, strides, pads, grown
    return size, kernel, strides, pads, pads


@converter("MaxPool", attrs={"auto_pad": "NOTSET", "ceil_mode": 0, "dilations": None,
                             "kernel_shape": None, "pads": None, "storage_order": 0,
                             "strides": None})
@_one_d
def _max_pool(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    x = _need(ins, 0, "X")
    size, kernel, strides, pads, grown = _pool_geometry(x, a, "pools")
    xv = imp.channels_last(x)
    padding = _padding_for(size, kernel, strides, (1, 1), grown)
    if padding is None:
        xv, padding = _pad_image(imp, xv, grown, -np.inf), "valid"
    if x.dtype() not in ("float32", "float64"):
        raise NodeError(f"expected a float input. Received: {x.dtype()}")
    return [Tensor(nhwc=imp.b.max_pool2d(xv, pool_size=kernel, strides=strides,
                                         padding=padding))]


@converter("AveragePool", attrs={"auto_pad": "NOTSET", "ceil_mode": 0, "count_include_pad": 0,
                                 "dilations": None, "kernel_shape": None, "pads": None,
                                 "strides": None})
@_one_d
def _avg_pool(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    b = imp.b
    x = _need(ins, 0, "X")
    size, kernel, strides, pads, grown = _pool_geometry(x, a, "pools")
    xv = imp.channels_last(x)
    padding = _padding_for(size, kernel, strides, (1, 1), grown)
    if padding == "valid" or (padding == "same" and not a["count_include_pad"]):
        # kiln's 'same' average counts the real elements of each window, as ONNX does
        # without count_include_pad
        return [Tensor(nhwc=b.avg_pool2d(xv, pool_size=kernel, strides=strides,
                                         padding=padding))]
    # The window sums over the zero-padded image, over a count per output position fixed at
    # import: the real elements, with count_include_pad also the explicit pads (never those
    # ceil_mode adds).
    mask = np.zeros((size[0] + grown[0][0] + grown[0][1], size[1] + grown[1][0] + grown[1][1]))
    if a["count_include_pad"]:
        mask[:size[0] + pads[0][0] + pads[0][1], :size[1] + pads[1][0] + pads[1][1]] = 1
    else:
        mask[pads[0][0]:pads[0][0] + size[0], pads[1][0]:pads[1][0] + size[1]] = 1
    out_h = (mask.shape[0] - kernel[0]) // strides[0] + 1
    out_w = (mask.shape[1] - kernel[1]) // strides[1] + 1
    counts = np.array([[mask[i * strides[0]:i * strides[0] + kernel[0],
                             j * strides[1]:j * strides[1] + kernel[1]].sum()
                        for j in range(out_w)] for i in range(out_h)])
    scale = (kernel[0] * kernel[1] / counts).astype(numpy_dtype(x.dtype()))
    pooled = b.avg_pool2d(_pad_image(imp, xv, grown, 0.0), pool_size=kernel, strides=strides,
                          padding="valid")
    return [Tensor(nhwc=b.mul(pooled, b.constant(scale.reshape(1, out_h, out_w, 1))))]


@converter("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    x = _need(ins, 0, "X")
    op = "mean" if node.op_type == "GlobalAveragePool" else "max"
    if x.rank < 3:
        raise NodeError(f"expected an input of rank 3 or more (N, C, spatial...). Received: "
                        f"shape {list(x.shape())}")
    if x.rank == 4 and (x.channels_last or x.known):
        return [Tensor(nhwc=imp.b.op(op, imp.channels_last(x), axes=[1, 2], keepdims=True))]
    return [Tensor(value=imp.b.op(op, imp.value(x), axes=list(range(2, x.rank)),
                                  keepdims=True))]


@converter("BatchNormalization", attrs={"epsilon": 1e-5, "momentum": 0.9, "spatial": 1,
                                        "training_mode": 0})
def _batch_norm(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    if a["training_mode"]:
        raise NodeError("expected training_mode=0 (kiln imports models for inference)")
    if not a["spatial"]:
        raise NodeError("expected spatial=1")
    b = imp.b
    x = _need(ins, 0, "X")
    params = [_need(ins, k, n) for k, n in ((1, "scale"), (2, "B"), (3, "input_mean"),
                                            (4, "input_var"))]
    eps = float(a["epsilon"])
    if all(p.known for p in params):
        scale, shift, mean, var = (p.array for p in params)
        mul = (scale / np.sqrt(var + eps)).astype(scale.dtype)  # type: ignore[operator]
        add = (shift - mean * mul).astype(scale.dtype)  # type: ignore[operator]
        origin = params[0].origin or "batchnorm"
        factors = [Tensor(array=mul, origin=f"{origin}.folded_scale"),
                   Tensor(array=add, origin=f"{origin}.folded_shift")]
    else:
        sv, bv, mv, vv = (imp.value(p) for p in params)
        mul_v = b.mul(sv, b.rsqrt(b.add(vv, eps)))
        factors = [Tensor(value=mul_v), Tensor(value=b.sub(bv, b.mul(mv, mul_v)))]
    if x.rank == 4 and x.channels_last:
        y = b.add(b.mul(imp.channels_last(x), imp.value(factors[0])), imp.value(factors[1]))
        return [Tensor(nhwc=y)]
    shape = [x.shape()[1]] + [1] * (x.rank - 2)
    m, c = (b.reshape(imp.value(f), shape=shape) for f in factors)
    return [Tensor(value=b.add(b.mul(imp.value(x), m), c))]


def _moments(b: Any, v: Value, axes: list[int]) -> tuple[Value, Value, Value]:
    """(mean, v - mean, variance) over `axes`, the reduced axes kept."""
    mean = b.mean(v, axes=axes, keepdims=True)
    centered = b.sub(v, mean)
    return mean, centered, b.mean(b.mul(centered, centered), axes=axes, keepdims=True)


@converter("LayerNormalization", attrs={"axis": -1, "epsilon": 1e-5, "stash_type": 1},
           outputs=3)
def _layer_norm(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    b = imp.b
    x, scale = _need(ins, 0, "X"), _need(ins, 1, "Scale")
    bias = optional(ins, 2)
    xv = imp.value(x)
    mean, centered, var = _moments(b, xv, list(range(int(a["axis"]) % x.rank, x.rank)))
    inv = b.rsqrt(b.add(var, float(a["epsilon"])))
    y = b.mul(b.mul(centered, inv), imp.value(scale))
    if bias is not None:
        y = b.add(y, imp.value(bias))
    return [Tensor(value=y), Tensor(value=mean), Tensor(value=inv)]


# -- softmax ---------------------------------------------------------------------------------
@converter("Softmax", "LogSoftmax", attrs={"axis": None})
def _softmax(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    b = imp.b
    op = "softmax" if node.op_type == "Softmax" else "log_softmax"
    x = _need(ins, 0, "input")
    xv = imp.value(x)
    if imp.opset >= 13:
        axis = -1 if a["axis"] is None else int(a["axis"])
        return [Tensor(value=b.op(op, xv, axis=axis))]
    # Before opset 13 the input is seen as a matrix [prod(shape[:axis]), prod(shape[axis:])].
    axis = (1 if a["axis"] is None else int(a["axis"])) % max(x.rank, 1)
    shape = x.shape()
    if axis == x.rank - 1:
        return [Tensor(value=b.op(op, xv, axis=-1))]
    # over the trailing axes taken as one: the same as over the matrix's rows
    flat = b.reshape(xv, shape=[*shape[:axis], _product(shape[axis:])])
    return [Tensor(value=b.reshape(b.op(op, flat, axis=-1), shape=list(shape)))]


# -- shapes ----------------------------------------------------------------------------------
@converter("Shape", attrs={"start": 0, "end": None})
def _shape(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    x = _need(ins, 0, "data")
    dims = x.shape()
    start, end = int(a["start"]), a["end"]
    dims = dims[start:] if end is None else dims[start:int(end)]
    if all(isinstance(d, int) for d in dims):
        return [Tensor(array=np.asarray(dims, np.int64))]
    return [Tensor(dims=tuple(dims))]


@converter("Size")
def _size(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    dims = _need(ins, 0, "data").shape()
    if not all(isinstance(d, int) for d in dims):
        raise NodeError(f"expected a static shape. Received: {list(dims)}")
    return [Tensor(array=np.asarray(int(np.prod(dims, dtype=np.int64)), np.int64))]


@converter("Flatten", attrs={"axis": 1})
def _flatten(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    x = _need(ins, 0, "input")
    shape = x.shape()
    axis = int(a["axis"]) + (x.rank if int(a["axis"]) < 0 else 0)
    if not 0 <= axis <= x.rank:
        raise NodeError(f"expected axis in [{-x.rank}, {x.rank}]. Received: {a['axis']}")
    if x.known:
        return _folded(x.array.reshape(int(np.prod(shape[:axis], dtype=np.int64)), -1))  # type: ignore
    target = [_product(shape[:axis]), _product(shape[axis:])]
    if sum(isinstance(d, str) or d == -1 for d in target) > 1:
        raise NodeError(f"expected at most one side of axis {axis} to hold a symbolic "
                        f"dimension. Received: shape {list(shape)}")
    return [Tensor(value=imp.b.reshape(imp.value(x), shape=target))]


def _product(dims: Sequence[Any]) -> Any:
    """The size of dims as one reshape dimension: an int, a lone symbol, or -1."""
    symbols = [d for d in dims if isinstance(d, str)]
    static = int(np.prod([d for d in dims if isinstance(d, int)], dtype=np.int64))
    if not symbols:
        return static
    return symbols[0] if len(symbols) == 1 and static == 1 else -1


@converter("Reshape", attrs={"allowzero": 0})
def _reshape(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    x = _need(ins, 0, "data")
    target = imp.known_ints(_need(ins, 1, "shape"), "shape", allow_symbols=True)
    shape = x.shape()
    if not a["allowzero"]:
        target = [shape[k] if d == 0 else d for k, d in enumerate(target)]
    if x.known:
        return _folded(x.array.reshape(imp.int_dims(tuple(target))), x)  # type: ignore
    if x.dims is not None:
        if len(target) != 1:
            raise NodeError(f"expected a shape vector to stay rank 1. Received: shape {target}")
        return [Tensor(dims=x.dims)]
    return [Tensor(value=imp.b.reshape(imp.value(x), shape=target))]


@converter("Transpose", attrs={"perm": None})
def _transpose(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    x = _need(ins, 0, "data")
    perm = list(range(x.rank))[::-1] if a["perm"] is None else [int(p) for p in a["perm"]]
    if x.known:
        return [Tensor(array=np.ascontiguousarray(x.array.transpose(perm)),  # type: ignore
                       origin=x.origin)]
    b = imp.b
    if x.rank == 4 and x.channels_last:
        # value = nhwc.transpose(0, 3, 1, 2), so value.transpose(perm) is one transpose
        composed = [(0, 3, 1, 2)[p] for p in perm]
        if composed == [0, 1, 2, 3]:
            return [Tensor(value=x.nhwc)]
        return [Tensor(value=b.transpose(x.nhwc, perm=composed))]
    if x.rank == 4 and [perm[k] for k in NCHW_TO_NHWC] == [0, 1, 2, 3]:
        # the transpose to NCHW of a channels-last tensor: held as that tensor
        return [Tensor(nhwc=imp.value(x))]
    return [Tensor(value=b.transpose(imp.value(x), perm=perm))]


def _axes(imp: Importer, ins: list, index: int, a: dict, rank: int) -> list[int] | None:
    """Axes from the attribute (early opsets) or the input (later), normalized; None when
    neither is given."""
    given = optional(ins, index)
    if given is not None:
        axes = imp.known_ints(given, "axes")
    elif a.get("axes") is not None:
        axes = [int(v) for v in a["axes"]]
    else:
        return None
    for axis in axes:
        if not -rank <= axis < rank:
            raise NodeError(f"expected axes in [{-rank}, {rank}). Received: {axes}")
    return sorted({axis % rank for axis in axes})


@converter("Unsqueeze", attrs={"axes": None})
def _unsqueeze(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    x = _need(ins, 0, "data")
    given = optional(ins, 1)
    raw = imp.known_ints(given, "axes") if given is not None else a["axes"]
    if raw is None:
        raise NodeError("expected axes")
    rank = x.rank + len(raw)
    axes = sorted({int(v) % rank for v in raw})
    if x.known:
        return _folded(np.expand_dims(x.array, tuple(axes)), x)  # type: ignore
    if x.dims is not None:
        if not x.scalar:
            raise NodeError("expected a shape vector to stay rank 1")
        return [Tensor(dims=x.dims)]
    return [Tensor(value=imp.b.expand_dims(imp.value(x), axes=axes))]


@converter("Squeeze", attrs={"axes": None})
def _squeeze(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    x = _need(ins, 0, "data")
    axes = _axes(imp, ins, 1, a, x.rank)
    shape = x.shape()
    if axes is None:
        axes = [k for k, d in enumerate(shape) if d == 1]
    if any(shape[k] != 1 for k in axes):
        raise NodeError(f"expected axes of size 1. Received: axes {axes} of shape "
                        f"{list(shape)}")
    if x.known:
        return _folded(np.squeeze(x.array, tuple(axes)), x)  # type: ignore
    if x.dims is not None:
        return [Tensor(dims=x.dims, scalar=True)]
    return [Tensor(value=imp.b.squeeze(imp.value(x), axes=axes))]


@converter("Concat", attrs={"axis": None})
def _concat(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    parts = [t for t in ins if t is not None]
    if not parts:
        raise NodeError("expected one or more inputs")
    if a["axis"] is None:
        raise NodeError("expected axis")
    rank = parts[0].rank
    axis = int(a["axis"]) % rank
    if all(t.known for t in parts):
        return _folded(np.concatenate([t.array for t in parts], axis=axis))  # type: ignore
    if rank == 1 and all(t.known or t.dims is not None for t in parts):
        dims: tuple = ()
        for t in parts:
            dims += tuple(t.dims) if t.dims is not None else tuple(
                int(v) for v in t.array)  # type: ignore[union-attr]
        return [Tensor(dims=dims)]
    b = imp.b
    if len(parts) == 1:
        return [parts[0]]
    if rank == 4 and axis == 1 and any(t.channels_last for t in parts):
        return [Tensor(nhwc=b.concat(*[imp.channels_last(t) for t in parts], axis=3))]
    return [Tensor(value=b.concat(*[imp.value(t) for t in parts], axis=axis))]


@converter("Split", attrs={"axis": 0, "split": None, "num_outputs": None}, outputs=1 << 16)
def _split(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    x = _need(ins, 0, "input")
    rank = x.rank
    axis = int(a["axis"]) % rank
    extent = x.shape()[axis]
    count = len(node.output)
    given = optional(ins, 1)
    if given is not None:
        sizes = imp.known_ints(given, "split")
    elif a["split"] is not None:
        sizes = [int(v) for v in a["split"]]
    else:
        if not isinstance(extent, int):
            raise NodeError(f"expected a static axis to split. Received: {extent}")
        parts = int(a["num_outputs"] or count)
        step = -(-extent // parts)
        sizes = [min(step, extent - k * step) for k in range(parts)]
    if sum(sizes) != extent or len(sizes) != count:
        raise NodeError(f"expected {count} sizes summing to {extent}. Received: {sizes}")
    if x.known:
        cuts = np.cumsum(sizes)[:-1]
        return [Tensor(array=np.ascontiguousarray(p))
                for p in np.split(x.array, cuts, axis=axis)]  # type: ignore[arg-type]
    outs = imp.b.split(imp.value(x), axis=axis, sizes=sizes)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return [Tensor(value=v) for v in outs]


def _slice_key(extent: Any, start: int, end: int, step: int) -> slice:
    """ONNX's clamped start and end on one axis as a Python slice."""
    if step == 0:
        raise NodeError("expected steps other than 0")
    if not isinstance(extent, int):
        if start == 0 and end >= INT64_MAX // 2 and step == 1:
            return slice(None)
        raise NodeError(f"expected a symbolic axis ({extent}) to be taken whole. Received: "
                        f"starts {start}, ends {end}, steps {step}")
    start = start + extent if start < 0 else start
    end = end + extent if end < 0 else end
    if step > 0:
        return slice(min(max(start, 0), extent), min(max(end, 0), extent), step)
    start, end = min(max(start, 0), extent - 1), min(max(end, -1), extent - 1)
    return slice(start, None if end < 0 else end, step)


@converter("Slice", attrs={"starts": None, "ends": None, "axes": None})
def _slice(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    x = _need(ins, 0, "data")
    if imp.opset < 10:
        starts, ends = [int(v) for v in a["starts"] or []], [int(v) for v in a["ends"] or []]
        axes, steps = a["axes"], None
    else:
        starts = imp.known_ints(_need(ins, 1, "starts"), "starts")
        ends = imp.known_ints(_need(ins, 2, "ends"), "ends")
        axes = imp.known_ints(ins[3], "axes") if optional(ins, 3) is not None else None
        steps = imp.known_ints(ins[4], "steps") if optional(ins, 4) is not None \
            else None
    rank, shape = x.rank, x.shape()
    axes = list(range(len(starts))) if axes is None else [int(v) % rank for v in axes]
    steps = [1] * len(starts) if steps is None else steps
    if not len(axes) == len(starts) == len(ends) == len(steps):
        raise NodeError(f"expected starts, ends, axes and steps of one length. Received: "
                        f"starts {starts}, ends {ends}, axes {axes}, steps {steps}")
    keys: list[slice] = [slice(None)] * rank
    for axis, start, end, step in zip(axes, starts, ends, steps, strict=True):
        keys[axis] = _slice_key(shape[axis], start, end, step)
    if x.known:
        return _folded(np.ascontiguousarray(x.array[tuple(keys)]), x)  # type: ignore
    if x.dims is not None:
        return [Tensor(dims=tuple(x.dims[keys[0]]))]
    return [Tensor(value=imp.b.slice(imp.value(x), begin=[k.start for k in keys],
                                     end=[k.stop for k in keys],
                                     strides=[k.step or 1 for k in keys]))]


@converter("Pad", attrs={"mode": "constant", "pads": None, "value": 0.0})
def _pad(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    if a["mode"] != "constant":
        raise NodeError(f"kiln pads with a constant only. Received: mode={a['mode']!r}")
    x = _need(ins, 0, "data")
    rank = x.rank
    if imp.opset < 11:
        pads = [int(v) for v in a["pads"] or []]
        value = float(a["value"])
    else:
        pads = imp.known_ints(_need(ins, 1, "pads"), "pads")
        fill = optional(ins, 2)
        if fill is not None and not fill.known:
            raise NodeError("expected constant_value known at import")
        value = fill.array.item() if fill is not None else 0  # type: ignore[union-attr]
    axes = _axes(imp, ins, 3, {}, rank) if optional(ins, 3) is not None else None
    axes = list(range(rank)) if axes is None else axes
    if len(pads) != 2 * len(axes):
        raise NodeError(f"expected {2 * len(axes)} pads. Received: {pads}")
    per_axis = [(0, 0)] * rank
    for k, axis in enumerate(axes):
        per_axis[axis] = (pads[k], pads[k + len(axes)])
    b = imp.b
    grow = [(max(lo, 0), max(hi, 0)) for lo, hi in per_axis]
    if x.known:
        out = np.pad(x.array, grow, constant_values=value)  # type: ignore[arg-type]
        out = out[tuple(slice(-min(lo, 0), out.shape[k] + min(hi, 0))
                        for k, (lo, hi) in enumerate(per_axis))]
        return _folded(np.ascontiguousarray(out), x)
    v = imp.value(x)
    if any(p != (0, 0) for p in grow):
        v = b.pad(v, pads=grow, value=value)
    if any(lo < 0 or hi < 0 for lo, hi in per_axis):
        v = b.slice(v, begin=[-min(lo, 0) for lo, _ in per_axis],
                    end=[min(hi, 0) or None for _, hi in per_axis])
    return [Tensor(value=v)]


@converter("Expand")
def _expand(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    x = _need(ins, 0, "input")
    shape = imp.known_ints(_need(ins, 1, "shape"), "shape", allow_symbols=True)
    target = broadcast_shapes(x.shape(), tuple(shape))
    if target is None:
        raise NodeError(f"expected a shape that broadcasts with {list(x.shape())}. Received: "
                        f"{shape}")
    if x.known and all(isinstance(d, int) for d in target):
        return _folded(np.broadcast_to(x.array, target).copy(), x)  # type: ignore
    if tuple(target) == x.shape():
        return [x]
    return [Tensor(value=imp.b.broadcast_to(imp.value(x), shape=list(target)))]


@converter("Tile")
def _tile(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    x = _need(ins, 0, "input")
    reps = imp.known_ints(_need(ins, 1, "repeats"), "repeats")
    if x.known:
        return _folded(np.tile(x.array, reps), x)  # type: ignore[arg-type]
    return [Tensor(value=imp.b.tile(imp.value(x), reps=reps))]


@converter("Constant", attrs={"value": None, "value_float": None, "value_floats": None,
                              "value_int": None, "value_ints": None, "sparse_value": None,
                              "value_string": None, "value_strings": None})
def _constant(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:

    if a["value"] is not None:
        return [Tensor(array=tensor_array(a["value"], "a Constant"), origin=node.output[0])]
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if a[key] is not None:
            return [Tensor(array=np.asarray(a[key], dtype), origin=node.output[0])]
    raise NodeError("kiln imports tensor, float and int Constants only")


@converter("ConstantOfShape", attrs={"value": None})
def _constant_of_shape(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:

    fill = np.zeros(1, np.float32) if a["value"] is None else tensor_array(
        a["value"], "ConstantOfShape's value")
    shape = imp.known_ints(_need(ins, 0, "input"), "input", allow_symbols=True)
    if all(isinstance(d, int) for d in shape):
        return [Tensor(array=np.full(shape, fill.reshape(-1)[0], fill.dtype))]
    return [Tensor(value=imp.b.constant(fill.reshape(-1)[0].item(),
                                        canonical_dtype(fill.dtype), shape=shape))]


@converter("Range")
def _range(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    start, limit, delta = (_need(ins, k, n) for k, n in ((0, "start"), (1, "limit"),
                                                         (2, "delta")))
    if not (start.known and limit.known and delta.known):
        raise NodeError("expected start, limit and delta known at import")
    dtype = start.array.dtype  # type: ignore[union-attr]
    return [Tensor(array=np.arange(start.array, limit.array, delta.array).astype(dtype))]


# -- indexing --------------------------------------------------------------------------------
@converter("Gather", attrs={"axis": 0})
def _gather(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    x, idx = _need(ins, 0, "data"), _need(ins, 1, "indices")
    axis = int(a["axis"]) % x.rank
    extent = x.shape()[axis]
    if idx.known and isinstance(extent, int):
        bad = (idx.array < -extent) | (idx.array >= extent)  # type: ignore[operator]
        if bad.any():
            raise NodeError(f"expected indices in [{-extent}, {extent}). Received: "
                            f"{int(idx.array[bad][0])}")  # type: ignore[index]
        idx = Tensor(array=np.where(idx.array < 0, idx.array + extent, idx.array))  # type: ignore
    if x.known and idx.known:
        return _folded(np.take(x.array, idx.array, axis=axis), x)  # type: ignore[arg-type]
    if x.dims is not None and idx.known:
        picked = np.asarray(idx.array)
        if picked.ndim == 0:  # one dimension: an int, or a symbol held as a scalar
            d = x.dims[int(picked)]
            return [Tensor(array=np.asarray(d, np.int64))] if isinstance(d, int) else \
                [Tensor(dims=(d,), scalar=True)]
        return [Tensor(dims=tuple(x.dims[int(i)] for i in picked.reshape(-1)))]
    b = imp.b
    iv = imp.value(idx)
    if not idx.known:
        if not isinstance(extent, int):
            raise NodeError("expected a static axis to gather from with indices computed at "
                            "run time")
        iv = b.where(b.less(iv, 0), b.add(iv, extent), iv)
    return [Tensor(value=b.gather(imp.value(x), iv, axis=axis))]


# -- reductions --------------------------------------------------------------------------------
_REDUCE = {"ReduceSum": "sum", "ReduceMean": "mean", "ReduceMax": "max", "ReduceMin": "min",
           "ReduceProd": "prod", "ReduceSumSquare": "sum", "ReduceL1": "sum", "ReduceL2": "sum",
           "ReduceLogSum": "sum", "ReduceLogSumExp": "sum"}


@converter(*_REDUCE, attrs={"axes": None, "keepdims": 1, "noop_with_empty_axes": 0})
def _reduce(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    b = imp.b
    x = _need(ins, 0, "data")
    axes = _axes(imp, ins, 1, a, x.rank)
    if axes is None or not axes:
        if a["noop_with_empty_axes"]:
            return [x]
        axes = list(range(x.rank))
    keep = bool(a["keepdims"])
    v = imp.value(x)
    op = node.op_type
    if any(x.shape()[k] == 0 for k in axes):  # over nothing: the op's identity
        empty: Any = {"ReduceMax": -np.inf, "ReduceMin": np.inf, "ReduceProd": 1.0,
                      "ReduceLogSum": -np.inf, "ReduceLogSumExp": -np.inf}.get(op, 0.0)
        if x.dtype() == "bool":
            empty = op == "ReduceMin"
        elif x.dtype() in ("int32", "int64") and not np.isfinite(empty):
            info = np.iinfo(numpy_dtype(x.dtype()))
            empty = info.min if empty < 0 else info.max
        shape = [1 if k in axes else d for k, d in enumerate(x.shape()) if keep or k not in axes]
        return [Tensor(value=imp.b.constant(empty, x.dtype(), shape=shape))]
    if op == "ReduceSumSquare":
        v = b.mul(v, v)
    elif op == "ReduceL1":
        v = b.abs(v)
    elif op == "ReduceL2":
        v = b.mul(v, v)
    if op == "ReduceLogSumExp":
        peak = b.max(v, axes=axes, keepdims=True)
        out = b.add(b.log(b.sum(b.exp(b.sub(v, peak)), axes=axes, keepdims=True)), peak)
        return [Tensor(value=out if keep else b.squeeze(out, axes=axes))]
    out = b.op(_REDUCE[op], v, axes=axes, keepdims=keep)
    if op == "ReduceL2":
        out = b.sqrt(out)
    elif op == "ReduceLogSum":
        out = b.log(out)
    return [Tensor(value=out)]


@converter("ArgMax", "ArgMin", attrs={"axis": 0, "keepdims": 1, "select_last_index": 0})
def _arg(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    b = imp.b
    x = _need(ins, 0, "data")
    op = "argmax" if node.op_type == "ArgMax" else "argmin"
    axis = int(a["axis"]) % x.rank
    v = imp.value(x)
    if a["select_last_index"]:  # the first extreme of the reversed axis, counted back
        full: list[Any] = [None] * x.rank
        flipped = b.slice(v, begin=full, end=full,
                          strides=[-1 if k == axis else 1 for k in range(x.rank)])
        out = b.op(op, flipped, axis=axis, keepdims=bool(a["keepdims"]))
        out = b.sub(b.constant(x.shape()[axis] - 1, out.type.dtype), out)
    else:
        out = b.op(op, v, axis=axis, keepdims=bool(a["keepdims"]))
    if out.type.dtype != "int64":
        out = b.cast(out, dtype="int64")
    return [Tensor(value=out)]


# -- more ops written as kiln ops ----------------------------------------------------------------
@converter("Shrink", attrs={"bias": 0.0, "lambd": 0.5})
def _shrink(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    bias, lambd = float(a["bias"]), float(a["lambd"])
    b = imp.b

    def build(x: Value) -> Value:
        zero = b.mul(x, 0.0) if x.type.is_float else b.sub(x, x)
        return b.where(b.less(x, -lambd), b.add(x, bias),
                       b.where(b.greater(x, lambd), b.sub(x, bias), zero))

    return elementwise(imp, [_need(ins, 0, "input")], build)


@converter("IsNaN")
def _isnan(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    b = imp.b
    return elementwise(imp, [_need(ins, 0, "X")], lambda x: b.logical_not(b.equal(x, x)),
                       np.isnan)


@converter("IsInf", attrs={"detect_negative": 1, "detect_positive": 1})
def _isinf(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    b = imp.b
    neg, pos = bool(a["detect_negative"]), bool(a["detect_positive"])

    def build(x: Value) -> Value:
        if neg and pos:
            return b.equal(b.abs(x), np.inf)
        if pos:
            return b.equal(x, np.inf)
        if neg:
            return b.equal(x, -np.inf)
        return b.logical_and(b.equal(x, 0.0), b.logical_not(b.equal(x, x)))  # all false

    return elementwise(imp, [_need(ins, 0, "X")], build)


@converter("Hardmax", attrs={"axis": None})
def _hardmax(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    b = imp.b
    x = _need(ins, 0, "input")
    shape, v = x.shape(), imp.value(x)
    if imp.opset < 13:  # over the trailing axes from `axis` taken as one, as Softmax was
        axis = (1 if a["axis"] is None else int(a["axis"])) % max(x.rank, 1)
        flat = b.reshape(v, shape=[*shape[:axis], _product(shape[axis:])])
        depth = flat.type.shape[-1]
        hot = b.one_hot(b.argmax(flat, axis=-1), depth=depth, dtype=v.type.dtype, axis=-1)
        return [Tensor(value=b.reshape(hot, shape=list(shape)))]
    axis = (-1 if a["axis"] is None else int(a["axis"])) % x.rank
    depth = shape[axis]
    if not isinstance(depth, int):
        raise NodeError(f"expected a static axis. Received: axis {axis} of {list(shape)}")
    return [Tensor(value=b.one_hot(b.argmax(v, axis=axis), depth=depth, dtype=v.type.dtype,
                                   axis=axis))]


@converter("OneHot", attrs={"axis": -1})
def _onehot(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    b = imp.b
    idx = _need(ins, 0, "indices")
    depth = imp.known_ints(_need(ins, 1, "depth"), "depth")
    values = _need(ins, 2, "values")
    if len(depth) != 1 or depth[0] < 1:
        raise NodeError(f"expected one depth >= 1. Received: {depth}")
    (depth_n,) = depth
    iv = imp.value(idx)
    if iv.type.dtype not in ("int32", "int64"):
        iv = b.cast(iv, dtype="int64")
    # ONNX: an index in [-depth, depth) counts from the end when negative
    iv = b.where(b.less(iv, 0), b.add(iv, depth_n), iv)
    vv = imp.value(values)
    hot = b.one_hot(iv, depth=depth_n, dtype=vv.type.dtype, axis=int(a["axis"]))
    off = b.slice(vv, begin=[0], end=[1])
    on = b.slice(vv, begin=[1], end=[2])
    rank = hot.type.rank
    off, on = (b.reshape(v, shape=[1] * rank) for v in (off, on))
    return [Tensor(value=b.add(b.mul(hot, b.sub(on, off)), off))]


@converter("Trilu", attrs={"upper": 1})
def _trilu(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    x = _need(ins, 0, "input")
    k = optional(ins, 1)
    offset = imp.known_ints(k, "k")[0] if k is not None else 0
    rows, cols = x.shape()[-2:]
    if not isinstance(rows, int) or not isinstance(cols, int):
        raise NodeError(f"expected the last two axes static. Received: {list(x.shape())}")
    keep = (np.triu if a["upper"] else np.tril)(np.ones((rows, cols), bool), offset)
    if x.known:
        return _folded(np.where(keep, x.array, np.zeros((), x.array.dtype)), x)  # type: ignore
    b = imp.b
    v = imp.value(x)
    zero = b.mul(v, 0.0) if v.type.is_float else b.sub(v, v)
    return [Tensor(value=b.where(b.constant(keep), v, zero))]


@converter("LpNormalization", attrs={"axis": -1, "p": 2})
def _lp_normalization(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    b = imp.b
    x = _need(ins, 0, "input")
    v, axis = imp.value(x), int(a["axis"]) % x.rank
    if a["p"] == 1:
        norm = b.sum(b.abs(v), axes=[axis], keepdims=True)
    elif a["p"] == 2:
        norm = b.sqrt(b.sum(b.mul(v, v), axes=[axis], keepdims=True))
    else:
        raise NodeError(f"expected p 1 or 2. Received: {a['p']}")
    # x / norm, 0 where the norm is 0 (as ONNX's reference)
    safe = b.where(b.equal(norm, 0.0), b.add(b.mul(norm, 0.0), 1.0), norm)
    return [Tensor(value=b.div(v, safe))]


@converter("MeanVarianceNormalization", attrs={"axes": [0, 2, 3]})
def _mvn(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    b = imp.b
    x = _need(ins, 0, "X")
    v = imp.value(x)
    _, centered, var = _moments(b, v, sorted({int(k) % x.rank for k in a["axes"]}))
    return [Tensor(value=b.div(centered, b.add(b.sqrt(var), 1e-9)))]


@converter("InstanceNormalization", attrs={"epsilon": 1e-5})
def _instance_norm(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    """Each sample's channels normalized over their spatial axes, then scaled and shifted
    per channel; channels last where the input is held so."""
    b = imp.b
    x, scale, bias = (_need(ins, k, n) for k, n in ((0, "input"), (1, "scale"), (2, "B")))
    eps = float(a["epsilon"])
    if x.rank == 4 and x.channels_last:
        v, axes, per_channel = imp.channels_last(x), [1, 2], [-1]
    else:
        v, axes = imp.value(x), list(range(2, x.rank))
        per_channel = [x.shape()[1]] + [1] * (x.rank - 2)
    _, centered, var = _moments(b, v, axes)
    gamma, beta = (b.reshape(imp.value(t), shape=per_channel) for t in (scale, bias))
    y = b.add(b.mul(b.mul(centered, b.rsqrt(b.add(var, eps))), gamma), beta)
    return [Tensor(nhwc=y) if x.rank == 4 and x.channels_last else Tensor(value=y)]


@converter("DepthToSpace", "SpaceToDepth", attrs={"blocksize": None, "mode": "DCR"})
def _depth_space(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    """Reshape, transpose, reshape, in ONNX's NCHW layout (the spec's own definition)."""
    b = imp.b
    x = _need(ins, 0, "input")
    if x.rank != 4:
        raise NodeError(f"expected an input of rank 4. Received: {list(x.shape())}")
    n, c, h, w = x.shape()
    k = int(a["blocksize"])
    v = imp.value(x)
    if a["mode"] not in ("DCR", "CRD"):
        raise NodeError(f"expected mode DCR or CRD. Received: {a['mode']!r}")
    if node.op_type == "SpaceToDepth":
        v = b.reshape(v, shape=[n, c, h // k, k, w // k, k])
        v = b.transpose(v, perm=[0, 3, 5, 1, 2, 4] if a["mode"] == "DCR" else [0, 1, 3, 5, 2, 4])
        return [Tensor(value=b.reshape(v, shape=[n, c * k * k, h // k, w // k]))]
    if a["mode"] == "DCR":
        v = b.transpose(b.reshape(v, shape=[n, k, k, c // (k * k), h, w]),
                        perm=[0, 3, 4, 1, 5, 2])
    else:
        v = b.transpose(b.reshape(v, shape=[n, c // (k * k), k, k, h, w]),
                        perm=[0, 1, 4, 2, 5, 3])
    return [Tensor(value=b.reshape(v, shape=[n, c // (k * k), h * k, w * k]))]


# -- einsum ---------------------------------------------------------------------------------
def _einsum_terms(equation: str) -> tuple[list[str], str]:
    """The input terms and the output term; the implicit form's output is the labels
    that appear once, sorted, after the ellipsis (as numpy and ONNX say)."""
    equation = equation.replace(" ", "")
    lhs, arrow, out = equation.partition("->")
    terms = lhs.split(",")
    if not arrow:
        letters = "".join(t.replace("...", "") for t in terms)
        out = ("..." if any("..." in t for t in terms) else "") + "".join(
            sorted(c for c in set(letters) if letters.count(c) == 1))
    return terms, out


@converter("Einsum", attrs={"equation": None})
def _einsum(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    """Two operands by kiln's einsum (the Keras frontend's: transposes, reshapes and one
    batched matmul); one operand as a sum and a transpose; more, pairwise from the left,
    each step keeping the labels the later operands or the output still need."""
    from kiln.frontends.keras.einsum import einsum

    b = imp.b
    terms, out = _einsum_terms(str(a["equation"]))
    operands = [imp.value(t) for t in ins if t is not None]
    if len(terms) != len(operands):
        raise NodeError(f"expected {len(terms)} operands for {a['equation']!r}. Received: "
                        f"{len(operands)}")
    if len(operands) == 1:
        (term,) = terms
        v = operands[0]
        if "..." in term or "..." in out:
            span = v.type.rank - len(term.replace("...", ""))
            term, out = (t.replace("...", "0123456789"[:span]) for t in (term, out))
        if len(set(term)) != len(term) or len(term) != v.type.rank:
            raise NodeError(f"expected one label per axis, none repeated (no diagonals). "
                            f"Received: {a['equation']!r} on rank {v.type.rank}")
        drop = [k for k, c in enumerate(term) if c not in out]
        if drop:
            v = b.sum(v, axes=drop, keepdims=False)
            term = "".join(c for c in term if c in out)
        perm = [term.index(c) for c in out]
        return [Tensor(value=v if perm == sorted(perm) else b.transpose(v, perm=perm))]
    if any("..." in t for t in (*terms, out)) and len(operands) > 2:
        raise NodeError("kiln imports an ellipsis in Einsum of one or two operands only")
    acc, acc_term = operands[0], terms[0]
    for k in range(1, len(operands)):
        later = "".join(terms[k + 1:]) + out
        if k == len(operands) - 1:
            step = out
        else:
            seen = acc_term + terms[k]
            step = "".join(dict.fromkeys(c for c in seen if c in later))
        acc = einsum(b, f"{acc_term},{terms[k]}->{step}", acc, operands[k])
        acc_term = step
    return [Tensor(value=acc)]
