"""kiln.ops: Keras 3's `keras.ops` on symbolic tensors, for the `call` of a custom layer, its
`compute_mask`, and the function of a Lambda layer.

kiln runs such a function while it lowers the model to IR: each op emits IR into the graph
being built, so what a custom layer computes is compiled, differentiated and run by every
backend as the built-in layers are. Inside, inputs are `Tensor`s (shape with None where the
size is known only at run time, dtype, NumPy's operators and indexing), and a layer's
weights (`self.add_weight(...)`) take part in ops and operators directly. Python numbers and
NumPy arrays become constants (float64 arrays as float32, Keras's floatx); mixed dtypes
promote as Keras's do (ints with floats to the float, int32 with int64 to int64).

The ops are Keras's names and arguments, those the IR can express; any other name raises an
AttributeError that says so. Outside a lowering there is no graph to write to, and an op
says that too.
"""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from kiln.frontends.keras import activations
from kiln.frontends.keras.einsum import einsum as _einsum
from kiln.frontends.keras.layer import KerasTensor, LoweringContext, Variable
from kiln.frontends.keras.operators import Operators
from kiln.ir import GraphBuilder, KilnTypeError, KilnValueError, Value
from kiln.ir.types import FLOAT_DTYPES, INT_DTYPES, canonical_dtype

_ACTIVE: list[tuple[GraphBuilder, LoweringContext]] = []
# The module's own any, all, max, min, sum and abs are Keras's ops; the helpers use Python's.
_any, _all = builtins.any, builtins.all


@contextmanager
def lowering(b: GraphBuilder, ctx: LoweringContext) -> Iterator[None]:
    """Ops write to `b` (and read weights through `ctx`) inside this block."""
    _ACTIVE.append((b, ctx))
    try:
        yield
    finally:
        _ACTIVE.pop()


def lowering_active() -> bool:
    """Whether kiln is building a graph (ops have somewhere to write)."""
    return bool(_ACTIVE)


def active() -> tuple[GraphBuilder, LoweringContext]:
    """The graph being built and its lowering context."""
    if not _ACTIVE:
        raise KilnValueError("kiln.ops works on symbolic tensors inside a layer's `call` (or a "
                             "Lambda's function) while kiln builds the model's graph; it was "
                             "called outside one. Call the layer on layers.Input tensors "
                             "instead of computing on arrays directly")
    return _ACTIVE[-1]


class Tensor(Operators):
    """A symbolic tensor of the graph being built: `shape` (None for a size known only at
    run time), `dtype` and `ndim`, with NumPy's operators and indexing. A layer's output
    carries its Keras mask as `_keras_mask` (a Tensor, or None), as Keras's tensors do."""

    __slots__ = ("value", "_keras_mask")

    def __init__(self, value: Value, mask: Value | Tensor | None = None):
        self.value = value
        self._keras_mask = Tensor(mask) if isinstance(mask, Value) else mask

    @property
    def shape(self) -> tuple[int | None, ...]:
        return tuple(d if isinstance(d, int) else None for d in self.value.type.shape)

    @property
    def dtype(self) -> str:
        return self.value.type.dtype

    @property
    def ndim(self) -> int:
        return self.value.type.rank

    def __len__(self) -> int:
        if not self.shape or self.shape[0] is None:
            raise KilnTypeError(f"len() of a tensor needs a known leading size. Received: "
                                f"{self.value.type}")
        return self.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        return (self[i] for i in range(len(self)))

    def __bool__(self) -> bool:
        raise KilnTypeError("a symbolic tensor has no truth value while the graph is built: "
                            "use kiln.ops.where (or a Python bool argument) instead of `if` on "
                            "a tensor")

    def __getitem__(self, key: Any) -> Tensor:
        return _index(self, key)

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return equal(self, other)

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return not_equal(self, other)

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<kiln.ops.Tensor shape={self.shape}, dtype={self.dtype}>"


# -- conversions -------------------------------------------------------------------------
def _value(x: Any) -> Value:
    """x as an IR value: a Tensor's, a weight's (through the lowering), an array's constant."""
    if isinstance(x, Tensor):
        return x.value
    if isinstance(x, Value):
        return x
    if isinstance(x, Variable):
        return active()[1].value(x)
    if isinstance(x, KerasTensor):
        raise KilnTypeError(f"{x!r} is a symbolic tensor from outside this call (an Input, or "
                            f"a layer's output in the model): a layer's call computes on its "
                            f"own inputs, so pass it to the layer as one")
    b = active()[0]
    array = np.asarray(x)
    if array.dtype == object:
        raise KilnTypeError(f"expected a tensor, a weight, a number or an array. "
                            f"Received: {type(x).__name__}")
    if array.dtype == np.float64 or array.dtype == np.float16:
        array = array.astype(np.float32)
    return b.constant(array) if array.ndim else b.constant(array.item(),
                                                           canonical_dtype(array.dtype))


def _wrap(x: Any) -> Any:
    if isinstance(x, Value):
        return Tensor(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_wrap(v) for v in x)
    return x


def unwrap(x: Any) -> Any:
    """A function's result as IR values: tensors, weights and arrays; lists and tuples of
    them; None stays None (no mask)."""
    if x is None:
        return None
    if isinstance(x, (list, tuple)):
        return [unwrap(v) for v in x]
    return _value(x)


def _is_scalar(x: Any) -> bool:
    return isinstance(x, (bool, int, float, np.bool_, np.number))


def _joint_dtype(dtypes: Sequence[str], scalars: Sequence[Any]) -> str:
    """Keras's promotion: any float wins (float64 over float32), then int64 over int32,
    then bool; a Python float next to ints makes float32."""
    floats = [d for d in dtypes if d in FLOAT_DTYPES]
    if floats:
        return "float64" if "float64" in floats else "float32"
    if _any(isinstance(s, (float, np.floating)) and not isinstance(s, bool) for s in scalars):
        return "float32"
    ints = [d for d in dtypes if d in INT_DTYPES]
    if ints:
        return "int64" if "int64" in ints else "int32"
    if _any(not isinstance(s, (bool, np.bool_)) for s in scalars):
        return "int32"
    return "bool"


def _operands(*xs: Any) -> list[Any]:
    """The operands of an element-wise op: values of one dtype; Python numbers stay numbers
    (the builder makes them constants of that dtype)."""
    items = [x if _is_scalar(x) else _value(x) for x in xs]
    values = [v for v in items if isinstance(v, Value)]
    dtype = _joint_dtype([v.type.dtype for v in values], [s for s in items if _is_scalar(s)])
    if not values:
        b = active()[0]
        return [b.constant(s, dtype) for s in items]
    b = active()[0]
    return [b.cast(v, dtype=dtype) if isinstance(v, Value) and v.type.dtype != dtype else v
            for v in items]


def _float(x: Any) -> Value:
    v = _value(x)
    return v if v.type.is_float else active()[0].cast(v, dtype="float32")


def _bool(x: Any) -> Value:
    v = _value(x)
    if v.type.dtype == "bool":
        return v
    b = active()[0]
    return b.logical_not(b.equal(v, 0))


def _axes(x: Value, axis: Any) -> tuple[int, ...] | None:
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    rank = x.type.rank
    for a in axes:
        if not -rank <= a < rank:
            raise KilnValueError(f"axis {a} is out of bounds for a tensor of rank {rank}")
    return tuple(sorted(a % rank for a in axes))


def convert_to_tensor(x: Any, dtype: Any = None) -> Tensor:
    if isinstance(x, Tensor) and dtype in (None, x.dtype):
        return x  # with its mask
    v = _value(x)
    return Tensor(v) if dtype is None else cast(Tensor(v), dtype)


def cast(x: Any, dtype: Any) -> Tensor:
    v, dtype = _value(x), canonical_dtype(dtype)
    return Tensor(v if v.type.dtype == dtype else active()[0].cast(v, dtype=dtype))


class Length(Tensor):
    """A size known only at run time, as `ops.shape` gives it (Keras's TensorFlow backend
    gives a tensor there too): a scalar int32 tensor that knows which axis of which tensor
    it measures, so `arange` ranges over it and `reshape` and `broadcast_to` take it as that
    axis's size. Computed with, it is an ordinary tensor."""

    __slots__ = ("dim", "_of", "_axis")

    def __init__(self, of: Value, axis: int):
        super().__init__(active()[0].size(of, axes=(axis,), dtype="int32"))
        self.dim = of.type.shape[axis]  # the IR's symbol for the size
        self._of, self._axis = of, axis

    def __repr__(self) -> str:
        return f"<kiln.ops.Length {self.dim} (known at run time)>"


def shape(x: Any) -> tuple[int | Length, ...]:
    """x's shape: ints where known, a `Length` (a scalar tensor) where known only at run
    time."""
    v = _value(x)
    return tuple(d if isinstance(d, int) else Length(v, i) for i, d in enumerate(v.type.shape))


def _dims(shape: Any) -> tuple:
    """A shape argument for the IR: ints, and each Length as its axis's symbol."""
    dims = (shape,) if isinstance(shape, (int, Length)) else tuple(shape)
    return tuple(d.dim if isinstance(d, Length) else d for d in dims)


# -- element-wise ------------------------------------------------------------------------
def _unary(op: str, float_only: bool = True) -> Any:
    def fn(x: Any) -> Tensor:
        b = active()[0]
        return Tensor(getattr(b, op)(_float(x) if float_only else _value(x)))
    fn.__name__ = op
    return fn


abs = absolute = _unary("abs", float_only=False)  # noqa: A001
exp = _unary("exp")
log = _unary("log")
log1p = _unary("log1p")
sqrt = _unary("sqrt")
rsqrt = _unary("rsqrt")
square = _unary("square", float_only=False)
negative = _unary("neg", float_only=False)
sign = _unary("sign", float_only=False)
floor = _unary("floor")
ceil = _unary("ceil")
round = _unary("round")  # noqa: A001 - Keras's name; halves to even, as keras.ops.round
tanh = _unary("tanh")
sin = _unary("sin")
cos = _unary("cos")
sigmoid = _unary("sigmoid")
relu = _unary("relu", float_only=False)
softplus = _unary("softplus")
selu = _unary("selu")
reciprocal = _unary("reciprocal")


def _activation(fn: Any, name: str) -> Any:
    def op(x: Any, *args: Any, **kwargs: Any) -> Tensor:
        return Tensor(fn(active()[0], _float(x), *args, **kwargs))
    op.__name__ = name
    return op


erf = _activation(activations.erf, "erf")
silu = swish = _activation(activations.swish, "silu")
leaky_relu = _activation(activations.leaky_relu, "leaky_relu")
relu6 = _activation(activations.relu6, "relu6")
hard_sigmoid = _activation(activations.hard_sigmoid, "hard_sigmoid")
log_sigmoid = _activation(activations.log_sigmoid, "log_sigmoid")
softsign = _activation(activations.softsign, "softsign")


def gelu(x: Any, approximate: bool = True) -> Tensor:
    """Keras's ops.gelu: the tanh approximation by default, the exact form (through erf)
    with approximate=False."""
    b, v = active()[0], _float(x)
    return Tensor(activations.gelu(b, v) if not approximate else activations.gelu_tanh(b, v))


def elu(x: Any, alpha: float = 1.0) -> Tensor:
    return Tensor(active()[0].elu(_float(x), alpha=float(alpha)))


def expm1(x: Any) -> Tensor:
    return Tensor(active()[0].sub(exp(x).value, 1.0))


def log2(x: Any) -> Tensor:
    return Tensor(active()[0].div(log(x).value, float(np.log(2.0))))


def log10(x: Any) -> Tensor:
    return Tensor(active()[0].div(log(x).value, float(np.log(10.0))))


def _binary(op: str) -> Any:
    def fn(x1: Any, x2: Any) -> Tensor:
        a, c = _operands(x1, x2)
        return Tensor(getattr(active()[0], op)(a, c))
    fn.__name__ = op
    return fn


add = _binary("add")
subtract = _binary("sub")
multiply = _binary("mul")
maximum = _binary("maximum")
minimum = _binary("minimum")
equal = _binary("equal")
greater = _binary("greater")
less = _binary("less")


def divide(x1: Any, x2: Any) -> Tensor:
    """True division: ints divide as floats, as Keras's."""
    a, c = _operands(x1, x2)
    b = active()[0]
    if a.type.dtype not in FLOAT_DTYPES:
        a, c = b.cast(a, dtype="float32"), b.cast(c, dtype="float32")
    return Tensor(b.div(a, c))


true_divide = divide


def power(x1: Any, x2: Any) -> Tensor:
    a, c = _operands(x1, x2)
    return Tensor(active()[0].pow(a, c))


def not_equal(x1: Any, x2: Any) -> Tensor:
    return Tensor(active()[0].logical_not(equal(x1, x2).value))


def greater_equal(x1: Any, x2: Any) -> Tensor:
    return Tensor(active()[0].logical_not(less(x1, x2).value))


def less_equal(x1: Any, x2: Any) -> Tensor:
    return Tensor(active()[0].logical_not(greater(x1, x2).value))


def logical_and(x1: Any, x2: Any) -> Tensor:
    return Tensor(active()[0].logical_and(_bool(x1), _bool(x2)))


def logical_or(x1: Any, x2: Any) -> Tensor:
    return Tensor(active()[0].logical_or(_bool(x1), _bool(x2)))


def logical_xor(x1: Any, x2: Any) -> Tensor:
    return not_equal(Tensor(_bool(x1)), Tensor(_bool(x2)))


def logical_not(x: Any) -> Tensor:
    return Tensor(active()[0].logical_not(_bool(x)))


def where(condition: Any, x1: Any, x2: Any) -> Tensor:
    a, c = _operands(x1, x2)
    return Tensor(active()[0].where(_bool(condition), a, c))


def clip(x: Any, x_min: Any, x_max: Any) -> Tensor:
    return minimum(maximum(x, x_min), x_max)


# -- reductions --------------------------------------------------------------------------
def _reduction(op: str) -> Any:
    def fn(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
        v = _value(x)
        if op == "mean":
            v = _float(v)
        return Tensor(getattr(active()[0], op)(v, axes=_axes(v, axis), keepdims=keepdims))
    fn.__name__ = op
    return fn


sum = _reduction("sum")  # noqa: A001
mean = _reduction("mean")
max = amax = _reduction("max")  # noqa: A001
min = amin = _reduction("min")  # noqa: A001
prod = _reduction("prod")


def var(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    centered = subtract(x, mean(x, axis=axis, keepdims=True))
    return mean(square(centered), axis=axis, keepdims=keepdims)


def std(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    return sqrt(var(x, axis=axis, keepdims=keepdims))


def logsumexp(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    top = max(x, axis=axis, keepdims=True)
    total = sum(exp(subtract(x, top)), axis=axis, keepdims=True)
    out = add(log(total), top)
    return out if keepdims else squeeze(out, axis=axis) if axis is not None else reshape(out, ())


def any(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return cast(max(cast(Tensor(_bool(x)), "int32"), axis=axis, keepdims=keepdims), "bool")


def all(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return cast(min(cast(Tensor(_bool(x)), "int32"), axis=axis, keepdims=keepdims), "bool")


def _arg(op: str) -> Any:
    def fn(x: Any, axis: int | None = None, keepdims: bool = False) -> Tensor:
        v = _value(x)
        if axis is None:
            v, axis = active()[0].reshape(v, shape=(-1,)), 0
        return Tensor(getattr(active()[0], op)(v, axis=axis, keepdims=keepdims))
    fn.__name__ = op
    return fn


argmax = _arg("argmax")
argmin = _arg("argmin")


# -- neural network ------------------------------------------------------------------------
def softmax(x: Any, axis: int = -1) -> Tensor:
    return Tensor(active()[0].softmax(_float(x), axis=axis))


def log_softmax(x: Any, axis: int = -1) -> Tensor:
    return Tensor(active()[0].log_softmax(_float(x), axis=axis))


def one_hot(x: Any, num_classes: int, axis: int = -1, dtype: Any = "float32") -> Tensor:
    return Tensor(active()[0].one_hot(_value(x), depth=int(num_classes), axis=axis,
                                       dtype=canonical_dtype(dtype)))


def matmul(x1: Any, x2: Any) -> Tensor:
    a, c = _operands(x1, x2)
    return Tensor(active()[0].matmul(a, c))


def dot(x1: Any, x2: Any) -> Tensor:
    return matmul(x1, x2)


def einsum(subscripts: str, *operands: Any) -> Tensor:
    if len(operands) != 2:
        raise KilnValueError(f"kiln.ops.einsum takes two operands. Received: {len(operands)}")
    a, c = _operands(*operands)
    return Tensor(_einsum(active()[0], subscripts, a, c))


# -- shapes --------------------------------------------------------------------------------
def reshape(x: Any, newshape: Any) -> Tensor:
    v = _value(x)
    target = _dims(newshape)
    return Tensor(active()[0].reshape(v, shape=tuple(-1 if d is None else d for d in target)))


def transpose(x: Any, axes: Any = None) -> Tensor:
    v = _value(x)
    perm = tuple(reversed(range(v.type.rank))) if axes is None else tuple(axes)
    return Tensor(active()[0].transpose(v, perm=perm))


def expand_dims(x: Any, axis: Any) -> Tensor:
    v = _value(x)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    rank = v.type.rank + len(axes)
    return Tensor(active()[0].expand_dims(v, axes=tuple(sorted(a % rank for a in axes))))


def squeeze(x: Any, axis: Any = None) -> Tensor:
    v = _value(x)
    if axis is None:
        axes = tuple(i for i, d in enumerate(v.type.shape) if d == 1)
    else:
        axes = _axes(v, axis)
    return Tensor(active()[0].squeeze(v, axes=axes))


def concatenate(xs: Sequence[Any], axis: int = 0) -> Tensor:
    values = _operands(*xs)
    return Tensor(active()[0].concat(*values, axis=axis))


def stack(x: Sequence[Any], axis: int = 0) -> Tensor:
    values = _operands(*x)
    rank = values[0].type.rank + 1
    b = active()[0]
    return Tensor(b.concat(*(b.expand_dims(v, axes=(axis % rank,)) for v in values),
                           axis=axis % rank))


def split(x: Any, indices_or_sections: Any, axis: int = 0) -> list[Tensor]:
    v = _value(x)
    size = v.type.shape[axis]
    if not isinstance(size, int):
        raise KilnValueError(f"kiln.ops.split needs a known size along axis {axis}. "
                             f"Received: {v.type}")
    if isinstance(indices_or_sections, int):
        if size % indices_or_sections:
            raise KilnValueError(f"kiln.ops.split: {size} does not split into "
                                 f"{indices_or_sections} equal sections")
        sizes = (size // indices_or_sections,) * indices_or_sections
    else:
        bounds = [0, *indices_or_sections, size]
        sizes = tuple(hi - lo for lo, hi in zip(bounds, bounds[1:]))
    parts = active()[0].split(v, axis=axis, sizes=sizes)
    return [Tensor(p) for p in (parts if isinstance(parts, tuple) else (parts,))]


def tile(x: Any, repeats: Any) -> Tensor:
    v = _value(x)
    reps = (repeats,) if isinstance(repeats, int) else tuple(repeats)
    if len(reps) < v.type.rank:
        reps = (1,) * (v.type.rank - len(reps)) + reps
    return Tensor(active()[0].tile(v, reps=reps))


def broadcast_to(x: Any, shape: Any) -> Tensor:
    return Tensor(active()[0].broadcast_to(_value(x), shape=_dims(shape)))


def flip(x: Any, axis: Any = None) -> Tensor:
    v = _value(x)
    axes = _axes(v, axis) or tuple(range(v.type.rank))
    full = (None,) * v.type.rank
    return Tensor(active()[0].slice(v, begin=full, end=full, strides=tuple(
        -1 if i in axes else 1 for i in range(v.type.rank))))


def take(x: Any, indices: Any, axis: int | None = None) -> Tensor:
    v, i = _value(x), _value(indices)
    if axis is None:
        v, axis = active()[0].reshape(v, shape=(-1,)), 0
    return Tensor(active()[0].gather(v, i, axis=axis % v.type.rank))


def pad(x: Any, pad_width: Any, mode: str = "constant", constant_values: float = 0) -> Tensor:
    if mode != "constant":
        raise KilnValueError(f"kiln.ops.pad pads with a constant. Received: mode={mode!r}")
    v = _value(x)
    pads = [tuple(p) for p in pad_width]
    return Tensor(active()[0].pad(v, pads=tuple(pads), value=float(constant_values)))


def zeros_like(x: Any, dtype: Any = None) -> Tensor:
    return full_like(x, 0, dtype)


def ones_like(x: Any, dtype: Any = None) -> Tensor:
    return full_like(x, 1, dtype)


def full_like(x: Any, fill_value: Any, dtype: Any = None) -> Tensor:
    v = _value(x)
    dtype = canonical_dtype(dtype) if dtype is not None else v.type.dtype
    return Tensor(active()[0].constant(fill_value, dtype, shape=v.type.shape))


def zeros(shape: Any, dtype: Any = "float32") -> Tensor:
    return full(shape, 0, dtype)


def ones(shape: Any, dtype: Any = "float32") -> Tensor:
    return full(shape, 1, dtype)


def full(shape: Any, fill_value: Any, dtype: Any = "float32") -> Tensor:
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    return Tensor(active()[0].constant(fill_value, canonical_dtype(dtype), shape=dims))


_NO_STOP = object()


def arange(start: Any, stop: Any = _NO_STOP, step: Any = 1, dtype: Any = None) -> Tensor:
    """Keras's arange: int32 for int bounds, float32 when any is a float. The bounds are
    numbers, or (a length known only at run time) arange(n) and arange(0, n, 1) for a
    Length n from `ops.shape`: the positions of that axis."""
    if stop is _NO_STOP:
        start, stop = 0, start
    if isinstance(stop, Length):
        if not (isinstance(start, int) and start == 0 and isinstance(step, int) and step == 1):
            raise KilnValueError(f"arange over a length known only at run time takes start=0 "
                                 f"and step=1. Received: start={start!r}, step={step!r}")
        return Tensor(active()[0].iota(stop._of, axis=stop._axis,
                                       dtype=canonical_dtype(dtype or "int32")))
    bounds = [start, stop, step]
    for bound in bounds:
        if not _is_scalar(bound):
            raise KilnValueError(f"arange needs numbers as bounds (a known length). "
                                 f"Received: {bound!r}")
    if dtype is None:
        floats = _any(isinstance(v, (float, np.floating)) for v in bounds)
        dtype = "float32" if floats else "int32"
    values = np.arange(start, stop, step, dtype=np.dtype(canonical_dtype(dtype)))
    return Tensor(active()[0].constant(values))


# -- indexing ------------------------------------------------------------------------------
def _index(x: Tensor, key: Any) -> Tensor:
    """x[key] for ints, slices, None (a new axis) and one Ellipsis, as NumPy's basic
    indexing."""
    items = list(key) if isinstance(key, tuple) else [key]
    for item in items:
        if not (item is None or item is Ellipsis or isinstance(item, (int, slice))
                or isinstance(item, np.integer)):
            raise KilnTypeError(f"tensor indexing takes ints, slices, None and ... (use "
                                f"kiln.ops.take to gather). Received: {item!r}")
    rank = x.ndim
    used = len([i for i in items if i is not None and i is not Ellipsis])
    if used > rank:
        raise KilnValueError(f"too many indices for a tensor of rank {rank}: {key!r}")
    if items.count(Ellipsis) > 1:
        raise KilnValueError(f"an index can only have a single ellipsis. Received: {key!r}")
    at = items.index(Ellipsis) if Ellipsis in items else len(items)
    items[at:at + 1 if at < len(items) else at] = [slice(None)] * (rank - used)
    begin, end, strides, drop, new = [], [], [], [], []
    axis = 0
    for item in items:
        if item is None:
            new.append(len(begin) - len(drop) + len(new))
            continue
        if isinstance(item, slice):
            begin.append(item.start)
            end.append(item.stop)
            strides.append(1 if item.step is None else item.step)
        else:
            i = int(item)
            size = x.value.type.shape[axis]
            if isinstance(size, int) and not -size <= i < size:
                raise KilnValueError(f"index {i} is out of bounds for axis {axis} with size "
                                     f"{size}")
            begin.append(i)
            end.append(None if i == -1 else i + 1)
            strides.append(1)
            drop.append(axis)
        axis += 1
    b, v = active()[0], x.value
    if _any(s is not None for s in begin + end) or _any(s != 1 for s in strides):
        v = b.slice(v, begin=tuple(begin), end=tuple(end),
                    strides=None if _all(s == 1 for s in strides) else tuple(strides))
    if drop:
        v = b.squeeze(v, axes=tuple(drop))
    if new:
        v = b.expand_dims(v, axes=tuple(new))
    return Tensor(v)


# -- running a function on symbolic tensors -----------------------------------------------------
def run(fn: Any, b: GraphBuilder, ctx: LoweringContext, inputs: Any, kwargs: dict[str, Any],
        mask: Any = None, where: str = "", result: Any = unwrap) -> Any:
    """fn(inputs, **kwargs) on Tensors inside a lowering, its result as IR values (or as
    `result` makes them). `mask` (the inputs' masks: one, a list, or None) goes to a `mask`
    parameter, the graph's training flag to a `training` parameter the call does not set;
    a `training` the call sets holds for the layers called inside it, as in Keras."""
    params = parameters(fn)
    call = dict(kwargs)
    if "mask" in params:
        call["mask"] = _wrap(mask)
    if "training" in params and call.get("training") is None:
        call["training"] = ctx.training
    with lowering(b, ctx), ctx.mode(call.get("training")):
        try:
            out = fn(_wrap(inputs), **call)
        except TypeError as err:
            raise KilnTypeError(f"{where}: {err}") from None
        return result(out)


def run_call(layer: Any, b: GraphBuilder, ctx: LoweringContext, inputs: list[Value],
             masks: list[Value | None], kwargs: dict[str, Any],
             ) -> tuple[list[Value], list[Value | None]]:
    """layer.call for one call of a custom layer: on its argument as the call takes it (the
    list, or the one tensor), each tensor carrying its mask as `_keras_mask`, the masks to
    a `mask` parameter. Returns the outputs and the masks they carry (a sublayer's output
    returned as it came)."""
    tensors = [Tensor(v, m) for v, m in zip(inputs, masks)]
    mask = [None if m is None else Tensor(m) for m in masks]
    if not _any(m is not None for m in masks):
        mask = None
    elif not layer.multi_input:
        mask = mask[0]

    def outputs(out: Any) -> tuple[list[Value], list[Value | None]]:
        items = list(out) if isinstance(out, (list, tuple)) else [out]
        carried = [x._keras_mask if isinstance(x, Tensor) else None for x in items]
        return [_value(x) for x in items], [None if m is None else _value(m) for m in carried]

    return run(layer.call, b, ctx, tensors if layer.multi_input else tensors[0], kwargs, mask,
               f"layer {layer.name!r} ({type(layer).__name__}).call", outputs)


def run_mask(fn: Any, layer: Any, b: GraphBuilder, ctx: LoweringContext, inputs: list,
             masks: list, where: str) -> list:
    """fn(inputs, mask) (a compute_mask) for one call of `layer`, on its call's argument as
    the call got it (the list, or the one tensor): the outputs' masks as a list."""
    def arg(items: list) -> Any:
        return items if layer.multi_input else items[0]

    given = run(lambda x, mask: fn(x, mask), b, ctx, arg(inputs), {}, arg(masks), where)
    return list(given) if isinstance(given, list) else [given]


def parameters(fn: Any) -> set[str]:
    """The names of fn's parameters (none where Python cannot tell)."""
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


_NOT_HERE = ("cumsum", "cumprod", "sort", "argsort", "top_k", "cond", "while_loop", "fori_loop",
             "scan", "tan", "mod", "floor_divide")


def __getattr__(name: str) -> Any:
    hint = " (the IR has no such op yet)" if name in _NOT_HERE else ""
    raise AttributeError(f"kiln.ops has no {name!r}{hint}: it offers Keras's ops the IR can "
                         f"express, listed in kiln.ops.__all__")


__all__ = sorted(n for n, v in list(globals().items())
                 if not n.startswith("_") and callable(v) and n not in {
                     "annotations", "contextmanager", "Iterator", "Sequence", "Any",
                     "GraphBuilder", "KilnTypeError", "KilnValueError", "Value", "Variable",
                     "KerasTensor", "LoweringContext", "Operators", "canonical_dtype",
                     "inspect", "lowering", "run", "run_mask", "run_call", "parameters",
                     "unwrap", "active", "lowering_active",
                     "activations"})
