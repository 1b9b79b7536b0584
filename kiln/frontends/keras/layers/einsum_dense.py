"""EinsumDense: a dense layer whose product with its kernel is an einsum equation, and the
projection it is built from (MultiHeadAttention's four projections are ones too)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kiln.frontends.keras import activations, initializers
from kiln.frontends.keras.einsum import einsum
from kiln.frontends.keras.layer import (
    KERNEL_BIAS_OPTIONS,
    Layer,
    _shape_arg,
    set_weight_options,
    weight_options_config,
)
from kiln.ir import KilnValueError

_FORMS = (  # (pattern, where the ellipsis is) of the equations Keras's EinsumDense takes
    (re.compile(r"^([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)$"), None),
    (re.compile(r"^\.\.\.([a-zA-Z]+),([a-zA-Z]+)->\.\.\.([a-zA-Z]+)$"), "left"),
    (re.compile(r"^([a-zA-Z]{2,})\.\.\.,([a-zA-Z]+)->([a-zA-Z]+)\.\.\.$"), "right"),
)


@dataclass
class Shapes:
    """What an EinsumDense equation gives for one input shape."""

    kernel: tuple[int, ...]
    bias: tuple[int, ...] | None
    output: tuple  # the full output shape, None for unknown sizes
    input_axes: list[int]  # the kernel's axes contracted with the input (its fan-in)
    output_axes: list[int]  # and those of the output (its fan-out)


def analyze(equation: str, bias_axes: str | None, input_shape: tuple, output_shape: tuple,
            where: str) -> Shapes:
    """The kernel's and bias's shapes for inputs of `input_shape`, as Keras's EinsumDense
    defines them. `output_shape` is the output's shape without its first (batch) axis, and
    without the axes an ellipsis stands for."""
    equation = equation.replace(" ", "") if isinstance(equation, str) else equation
    match, elided_side = None, None
    for pattern, side in _FORMS:
        match = pattern.match(equation) if isinstance(equation, str) else None
        if match:
            elided_side = side
            break
    if match is None:
        raise KilnValueError(f"{where}: invalid einsum equation {equation!r}. Equations must "
                             f"be in the form [X],[Y]->[Z], ...[X],[Y]->...[Z], or "
                             f"[X]...,[Y]->[Z]....")
    spec_in, spec_w, spec_out = match.groups()
    elided = len(input_shape) - len(spec_in)
    if elided < 0 or (elided and elided_side is None):
        raise KilnValueError(f"{where}: the equation {equation!r} names {len(spec_in)} input "
                             f"axes. Received an input of shape {tuple(input_shape)}")
    partial = list(output_shape)
    if elided_side == "left":
        full = [input_shape[0], *input_shape[1:elided], *partial]
        in_axis = {c: elided + i for i, c in enumerate(spec_in)}
        out_axis = {c: elided + i for i, c in enumerate(spec_out)}
    else:
        full = [input_shape[0], *partial, *input_shape[len(input_shape) - elided:]]
        in_axis = {c: i for i, c in enumerate(spec_in)}
        out_axis = {c: i for i, c in enumerate(spec_out)}
    if len(full) != len(spec_out) + elided:
        expected = len(spec_out) - (elided_side != "left")
        raise KilnValueError(f"{where}: expected output_shape to give {expected} sizes for the "
                             f"output {spec_out!r} of {equation!r} (all but the first axis). "
                             f"Received: output_shape={tuple(output_shape)}")
    for c in spec_in:
        if c in out_axis:
            want, got = full[out_axis[c]], input_shape[in_axis[c]]
            if want is not None and got is not None and want != got:
                raise KilnValueError(f"{where}: input shape and output shape do not match at "
                                     f"shared dimension {c!r}. Input shape is {got}, and output "
                                     f"shape is {want}")
            full[out_axis[c]] = got
    for c in spec_out:
        if c not in spec_in and c not in spec_w:
            raise KilnValueError(f"{where}: dimension {c!r} was specified in the output "
                                 f"{spec_out!r} but has no corresponding dim in the input spec "
                                 f"{spec_in!r} or weight spec {spec_w!r}")
    kernel, input_axes, output_axes = [], [], []
    for i, c in enumerate(spec_w):
        if c in out_axis:
            size = full[out_axis[c]]
            output_axes.append(i)
        elif c in in_axis:
            size = input_shape[in_axis[c]]
            input_axes.append(i)
        else:
            raise KilnValueError(f"{where}: weight dimension {c!r} did not have a match in "
                                 f"either the input spec {spec_in!r} or the output spec "
                                 f"{spec_out!r}. For this layer, the weight must be fully "
                                 f"specified")
        if size is None:
            raise KilnValueError(f"{where}: the kernel's axis {c!r} of {equation!r} needs a "
                                 f"known size. Received: input shape {tuple(input_shape)}, "
                                 f"output_shape={tuple(output_shape)}")
        kernel.append(int(size))
    bias = None
    if bias_axes:
        for c in bias_axes:
            if c not in spec_out:
                raise KilnValueError(f"{where}: bias dimension {c!r} was requested, but is not "
                                     f"part of the output spec {spec_out!r}")
        first = min(spec_out.index(c) for c in bias_axes)
        bias = [full[out_axis[c]] if c in bias_axes else 1 for c in spec_out[first:]]
        if None in bias:
            raise KilnValueError(f"{where}: the bias axes {bias_axes!r} need known sizes. "
                                 f"Received: output shape {tuple(full)}")
        if elided_side == "right":
            bias += [1] * elided
        bias = tuple(bias)
    return Shapes(tuple(kernel), bias, tuple(full), input_axes, output_axes)


class Projection:
    """An einsum of the input with a kernel, plus a bias, whose weights belong to `owner`
    named `<prefix>kernel` and `<prefix>bias` (EinsumDense's own, or MultiHeadAttention's
    "query/kernel", ...)."""

    def __init__(self, owner: Layer, prefix: str, equation: str, output_shape: tuple,
                 bias_axes: str | None, input_shape: tuple, kernel_initializer: Any,
                 bias_initializer: Any, where: str):
        self.equation = equation
        self.shapes = analyze(equation, bias_axes, input_shape, output_shape, where)
        init = initializers.with_fan_axes(initializers.get(kernel_initializer),
                                          self.shapes.input_axes, self.shapes.output_axes)
        options = {k: getattr(owner, k, None) for k in KERNEL_BIAS_OPTIONS}
        self.kernel = owner.add_weight(f"{prefix}kernel", self.shapes.kernel, init,
                                       regularizer=options["kernel_regularizer"],
                                       constraint=options["kernel_constraint"])
        self.bias = None if self.shapes.bias is None else owner.add_weight(
            f"{prefix}bias", self.shapes.bias, bias_initializer,
            regularizer=options["bias_regularizer"], constraint=options["bias_constraint"])

    def lower(self, b: Any, x: Any, ctx: Any) -> Any:
        y = einsum(b, self.equation, x, ctx.value(self.kernel))
        return y if self.bias is None else b.add(y, ctx.value(self.bias))


class EinsumDense(Layer):
    """activation(einsum(equation, input, kernel) + bias): a Dense layer over any axes.

    Args: equation, as "ab,bc->ac", "...b,bc->...c" or "ab...,bc->ac..."; output_shape,
    the output's shape without the batch axis and the ellipsis's axes (None for an axis the
    input gives); activation=None; bias_axes=None (the output labels that get a bias, e.g.
    "c"); kernel_initializer="glorot_uniform" (a variance-scaling one counts the kernel's
    axes contracted with the input as its fan-in, the output's as its fan-out, as Keras
    does); bias_initializer="zeros"; kernel/bias regularizers and constraints.
    Input shape: of the equation's input term. Output shape: of its output term.
    """

    def __init__(self, equation: str, output_shape: Any, activation: Any = None,
                 bias_axes: str | None = None, kernel_initializer: Any = "glorot_uniform",
                 bias_initializer: Any = "zeros", kernel_regularizer: Any = None,
                 bias_regularizer: Any = None, kernel_constraint: Any = None,
                 bias_constraint: Any = None, lora_rank: Any = None, lora_alpha: Any = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        if lora_rank:
            raise KilnValueError(f"layer {self.name!r}: LoRA (lora_rank) is not supported. "
                                 f"Received: lora_rank={lora_rank!r}")
        set_weight_options(self, kernel_regularizer=kernel_regularizer,
                           bias_regularizer=bias_regularizer,
                           kernel_constraint=kernel_constraint, bias_constraint=bias_constraint)
        self.equation = equation
        self.partial_output_shape = _shape_arg(output_shape, "output_shape", self.name)
        self.bias_axes = bias_axes
        self.activation = activations.get(activation)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self.projection: Projection | None = None

    def check_input_shapes(self, shapes: list) -> None:
        where = f"layer {self.name!r}"
        found = analyze(self.equation, self.bias_axes, shapes[0], self.partial_output_shape,
                        where)
        if self.projection is not None and found.kernel != self.projection.shapes.kernel:
            raise KilnValueError(f"{where}: built for a kernel of shape "
                                 f"{self.projection.shapes.kernel}; an input of shape "
                                 f"{shapes[0]} needs {found.kernel}")

    def build(self, input_shape: tuple) -> None:
        self.projection = Projection(self, "", self.equation, self.partial_output_shape,
                                     self.bias_axes, input_shape, self.kernel_initializer,
                                     self.bias_initializer, f"layer {self.name!r}")
        self.kernel, self.bias = self.projection.kernel, self.projection.bias

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        return self.activation(b, self.projection.lower(b, x, ctx))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "equation": self.equation,
                "output_shape": list(self.partial_output_shape), "bias_axes": self.bias_axes,
                "activation": activations.name_of(self.activation),
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                **weight_options_config(self, *KERNEL_BIAS_OPTIONS)}
