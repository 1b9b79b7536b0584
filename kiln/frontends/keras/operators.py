"""NumPy's operators for symbolic tensors and for layer weights, as kiln.ops functions: `x * w
+ 1`, `-x`, `x @ w`, `x > 0` in a layer's `call`."""

from __future__ import annotations

from typing import Any


def _ops() -> Any:
    from kiln.frontends.keras import ops

    return ops


def _binary(op: str, reflected: bool) -> Any:
    if reflected:
        return lambda self, other: getattr(_ops(), op)(other, self)
    return lambda self, other: getattr(_ops(), op)(self, other)


def _unary(op: str) -> Any:
    return lambda self: getattr(_ops(), op)(self)


class Operators:
    """The arithmetic, comparison and logical operators of kiln.ops.Tensor and Variable
    (equality stays identity here; Tensor makes == and != element-wise)."""

    __slots__ = ()
    __array_priority__ = 1000  # numpy array (op) tensor defers to the tensor's operator

    def __pos__(self) -> Any:
        return self


for _dunder, _op in (("add", "add"), ("sub", "subtract"), ("mul", "multiply"),
                     ("truediv", "divide"), ("pow", "power"), ("matmul", "matmul"),
                     ("and", "logical_and"), ("or", "logical_or"), ("xor", "logical_xor")):
    setattr(Operators, f"__{_dunder}__", _binary(_op, reflected=False))
    setattr(Operators, f"__r{_dunder}__", _binary(_op, reflected=True))
for _dunder, _op in (("lt", "less"), ("le", "less_equal"), ("gt", "greater"),
                     ("ge", "greater_equal")):
    setattr(Operators, f"__{_dunder}__", _binary(_op, reflected=False))
for _dunder, _op in (("neg", "negative"), ("abs", "abs"), ("invert", "logical_not")):
    setattr(Operators, f"__{_dunder}__", _unary(_op))
