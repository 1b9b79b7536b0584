"""Recurrent layers: SimpleRNN, LSTM and GRU, with Keras 3's arguments, weights and math.

Each lowers to one IR `scan` over the time-major sequence. The input projection x W + b of
every timestep is one matmul outside the loop, so the scan body only multiplies the state by
the recurrent kernel, which it receives as a scan constant; the gradient is the scan's own
reverse scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kiln.frontends.keras import activations, initializers
from kiln.frontends.keras.layer import (
    KerasTensor,
    Layer,
    Wrapper,
    as_bool,
    is_symbolic,
    set_weight_options,
    weight_options_config,
)
from kiln.ir import Graph, GraphBuilder, KilnTypeError, KilnValueError, TensorType, Value

#: The regularizer and constraint arguments of the three weights.
_OPTIONS = ("kernel_regularizer", "recurrent_regularizer", "bias_regularizer",
            "kernel_constraint", "recurrent_constraint", "bias_constraint")


def _substream(stream: int, index: int) -> int:
    """Mask `index` of a layer draws on its own stream: the layer's stream (below 2**32)
    plus index * 2**32, so no two masks of any two layers share bits."""
    return stream + (index << 32)


def _rate(value: Any, what: str, layer: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise KilnTypeError(f"layer {layer!r}: expected {what} as a float between 0 and 1. "
                            f"Received: {what}={value!r}")
    return min(1.0, max(0.0, float(value)))  # Keras clips the rate into [0, 1]


def _product(bb: GraphBuilder, h: Value, kernels: Sequence[Value],
             masks: Sequence[Value]) -> Value:
    """h U: one matmul with the whole kernel, or with recurrent dropout one per gate (each
    with its own mask on h), concatenated in gate order."""
    if not masks:
        (kernel,) = kernels
        return bb.matmul(h, kernel)
    parts = [bb.matmul(bb.mul(h, m), k) for m, k in zip(masks, kernels, strict=True)]
    return parts[0] if len(parts) == 1 else bb.concat(*parts, axis=1)


class _SequenceCall(Layer):
    """The call of a recurrent layer: layer(sequence, initial_state=[...])."""

    def __call__(self, inputs: Any, initial_state: Any = None, **kwargs: Any) -> Any:
        return super().__call__(_sequence_and_states(self, inputs, initial_state, kwargs),
                                **kwargs)

    def replay(self, inputs: list, kwargs: dict[str, Any], as_list: bool | None = None) -> Any:
        """A saved call again: the sequence, then its initial states."""
        return self(inputs[0], initial_state=inputs[1:] or None, **kwargs)


class RNNBase(_SequenceCall):
    """What SimpleRNN, LSTM and GRU share: arguments, input checks, initial states, dropout
    masks, the input projection and the scan. Subclasses give the cell: `gates` blocks of
    `units` in the kernels, the `states` it carries, and `step`."""

    multi_input = True  # the sequence, then any initial states given as initial_state=
    supports_masking = True
    takes_mask = True
    gates = 1
    states: tuple[str, ...] = ("h",)
    #: Set by Bidirectional on its backward layer: return_sequences gives the outputs in
    #: the input's time order instead of the order processed.
    _sequences_in_input_order = False

    def __init__(self, units: int, activation: Any, use_bias: bool, kernel_initializer: Any,
                 recurrent_initializer: Any, bias_initializer: Any, dropout: float,
                 recurrent_dropout: float, seed: int | None, return_sequences: bool,
                 return_state: bool, go_backwards: bool, stateful: bool, unroll: bool,
                 per_gate_masks: bool, options: dict[str, Any], **kwargs: Any):
        zero_output_for_mask = kwargs.pop("zero_output_for_mask", False)
        super().__init__(**kwargs)
        set_weight_options(self, **options)
        kind = type(self).__name__
        if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units <= 0:
            raise KilnValueError(f"{kind}: received an invalid value for argument `units`, "
                                 f"expected a positive integer. Received: units={units!r}")
        if stateful:
            raise KilnValueError(f"layer {self.name!r}: kiln does not support stateful RNNs "
                                 "(state carried between batches); expected stateful=False. "
                                 "Received: stateful=True")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.recurrent_initializer = recurrent_initializer
        self.bias_initializer = bias_initializer
        self.dropout = _rate(dropout, "dropout", self.name)
        self.recurrent_dropout = _rate(recurrent_dropout, "recurrent_dropout", self.name)
        self.seed = seed
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = False
        self.unroll = bool(unroll)  # a scan either way; backends decide how to run it
        # With a mask, the output at a masked step is 0 instead of the last step's output.
        self.zero_output_for_mask = bool(zero_output_for_mask)
        # Keras 3 draws one mask per gate (implementation 1) once recurrent_dropout is on.
        self._per_gate = self.gates > 1 and (per_gate_masks or self.recurrent_dropout > 0)
        self.returns_list = self.return_state

    # -- calling -------------------------------------------------------------------------

    def check_input_shapes(self, shapes: list) -> None:
        shape, states = shapes[0], shapes[1:]
        if len(shape) != 3:
            raise KilnValueError(f"Input 0 of layer {self.name!r} is incompatible with the layer: "
                                 f"expected ndim=3, found ndim={len(shape)}. "
                                 f"Full shape received: {shape}")
        if shape[-1] is None:
            raise KilnValueError(f"layer {self.name!r}: the last dimension of the input (the "
                                 f"features) must be known. Received: shape={shape}")
        if self.built and shape[-1] != self.kernel.shape[0]:
            raise KilnValueError(f"Input 0 of layer {self.name!r} is incompatible with the layer: "
                                 f"expected axis -1 of input shape to have value "
                                 f"{self.kernel.shape[0]}, but received input with shape {shape}")
        if states and len(states) != len(self.states):
            raise KilnValueError(f"layer {self.name!r}: expected initial_state to hold "
                                 f"{len(self.states)} tensor(s) ({', '.join(self.states)}). "
                                 f"Received: {len(states)}")
        for name, s in zip(self.states, states):
            if len(s) != 2 or s[-1] != self.units or s[0] != shape[0]:
                raise KilnValueError(f"layer {self.name!r}: expected the initial state {name} of "
                                     f"shape {(shape[0], self.units)}, the input's batch by "
                                     f"units. Received: shape={s}")

    # -- weights -------------------------------------------------------------------------
    def build(self, input_shape: Any) -> None:
        """From the sequence's shape, or the list [sequence shape, state shapes...]."""
        several = isinstance(input_shape, list) and isinstance(input_shape[0], (tuple, list))
        features = (input_shape[0] if several else input_shape)[-1]
        width = self.gates * self.units
        self.kernel = self.add_weight("kernel", (features, width), self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.recurrent_kernel = self.add_weight("recurrent_kernel", (self.units, width),
                                                self.recurrent_initializer,
                                                regularizer=self.recurrent_regularizer,
                                                constraint=self.recurrent_constraint)
        if self.use_bias:
            self.bias = self.add_weight("bias", self.bias_shape(), self.bias_init(),
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)

    def bias_shape(self) -> tuple[int, ...]:
        return (self.gates * self.units,)

    def bias_init(self) -> Any:
        return self.bias_initializer

    # -- lowering ------------------------------------------------------------------------
    def first_argument(self, items: list) -> list:
        return list(items[:1])  # the sequence's: the initial states are not masked

    def lower_mask(self, b, inputs, masks, ctx, **kwargs):  # noqa: ANN001, ANN201
        return [masks[0] if self.return_sequences else None]

    def lower(self, b, inputs, ctx, training=None, keras_mask=None,  # noqa: ANN001, ANN201
              **kwargs):
        values = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        x, given = self._cast(b, values[0]), [self._cast(b, s) for s in values[1:]]
        # Keras passes a call its input's mask only where the sequence is its one tensor
        # argument: given initial states, the steps are not masked (the mask still passes on).
        mask = keras_mask[0] if keras_mask and not given else None
        steps = [] if mask is None else [b.expand_dims(b.transpose(
            as_bool(b, mask), perm=(1, 0)), axes=(2,), name="step_mask")]
        training = ctx.training if training is None else bool(training)
        batch, features = x.type.shape[0], x.type.shape[2]
        x_tm = b.transpose(x, perm=(1, 0, 2), name="time_major")
        in_masks, rec_masks = [], []
        if training and (0 < self.dropout < 1 or 0 < self.recurrent_dropout < 1):
            key, stream = ctx.random_stream(self)
            count = self.gates if self._per_gate else 1
            if 0 < self.dropout < 1:
                in_masks = [self._mask(b, key, _substream(stream, j), (batch, features),
                                       self.dropout) for j in range(count)]
            if 0 < self.recurrent_dropout < 1:
                rec_masks = [self._mask(b, key, _substream(stream, self.gates + j),
                                        (batch, self.units), self.recurrent_dropout)
                             for j in range(self.gates)]
        xw = self._input_projection(b, x_tm, ctx, in_masks)
        carries = given or [b.constant(0.0, self.dtype, shape=(batch, self.units),
                                       name=f"initial_{s}") for s in self.states]
        consts = self.recurrent_constants(b, ctx, split=bool(rec_masks))
        body = self._body(carries, xw, consts, rec_masks, steps)
        results = b.scan(*carries, xw, *steps, *(v for _, v in consts), *rec_masks, body=body,
                         num_carry=len(carries), num_seq=1 + len(steps),
                         reverse=self.go_backwards, name="scan")
        results = list(results) if isinstance(results, tuple) else [results]
        finals = results[:len(carries)]
        if self.return_sequences:
            ys = results[len(carries)]
            if self.go_backwards and not self._sequences_in_input_order:
                ys = _reverse_time(b, ys)  # Keras returns the outputs in the order processed
            output = b.transpose(ys, perm=(1, 0, 2), name="sequences")
        else:
            output = finals[0]
            if steps and self.zero_output_for_mask:
                # 0 unless the last step processed counts.
                last = steps[0] if self.go_backwards else _reverse_time(b, steps[0])
                last = b.slice(last, begin=(0, None, None), end=(1, None, None))
                output = b.where(b.squeeze(last, axes=(0,)), output, 0.0)
        return [output, *finals] if self.return_state else output

    def _cast(self, b: GraphBuilder, v: Value) -> Value:
        return v if v.type.dtype == self.dtype else b.cast(v, dtype=self.dtype)

    def _mask(self, b: GraphBuilder, key: Value, stream: int, shape: tuple,
              rate: float) -> Value:
        """Keras's dropout mask: 1 / (1 - rate) where kept, 0 where dropped; one per call,
        shared by every timestep."""
        keep = b.bernoulli(key, shape=shape, p=1.0 - rate, stream=stream, name="dropout_mask")
        return b.mul(b.cast(keep, dtype=self.dtype), 1.0 / (1.0 - rate))

    def _input_projection(self, b: GraphBuilder, x_tm: Value, ctx: Any,
                          masks: list[Value]) -> Value:
        """x W (+ input bias) for every timestep at once: (T, batch, gates * units)."""
        kernel = ctx.value(self.kernel)
        if len(masks) > 1:
            pieces = b.split(kernel, axis=1, sizes=(self.units,) * self.gates,
                             name="kernel_part")
            xw = b.concat(*(b.matmul(b.mul(x_tm, m), w) for m, w in zip(masks, pieces)),
                          axis=2, name="xw")
        else:
            xw = b.matmul(b.mul(x_tm, masks[0]) if masks else x_tm, kernel, name="xw")
        bias = self.input_bias(b, ctx)
        return xw if bias is None else b.add(xw, bias, name="xw_bias")

    def input_bias(self, b: GraphBuilder, ctx: Any) -> Value | None:
        return ctx.value(self.bias) if self.use_bias else None

    def _split_kernel(self, b: GraphBuilder, ctx: Any, sizes: tuple[int, ...]) -> list[Value]:
        parts = b.split(ctx.value(self.recurrent_kernel), axis=1, sizes=sizes,
                        name="recurrent_kernel_part")
        return list(parts) if isinstance(parts, tuple) else [parts]

    def recurrent_constants(self, b: GraphBuilder, ctx: Any,
                            split: bool) -> list[tuple[str, Value]]:
        """The scan's constants, named as the body sees them; `split` gives one recurrent
        kernel per gate (for per-gate recurrent dropout masks)."""
        if split and self.gates > 1:
            pieces = self._split_kernel(b, ctx, (self.units,) * self.gates)
            return [(f"recurrent_kernel_{k}", p) for k, p in enumerate(pieces)]
        return [("recurrent_kernel", ctx.value(self.recurrent_kernel))]

    def _body(self, carries: list[Value], xw: Value, consts: list[tuple[str, Value]],
              masks: list[Value], steps: list[Value]) -> Graph:
        """One step's graph; with `steps` (the step mask as a sequence), a masked step keeps
        the states and repeats the last output (0 with zero_output_for_mask), as Keras."""
        bb = GraphBuilder(f"{self.name}_step")
        state = [bb.input(n, v.type) for n, v in zip(self.states, carries, strict=True)]
        x_t = bb.input("x", xw.type.with_shape(xw.type.shape[1:]))
        counts = [bb.input("counts", m.type.with_shape(m.type.shape[1:])) for m in steps]
        const_in = [bb.input(n, v.type) for n, v in consts]
        mask_in = [bb.input(f"mask_{j}", m.type) for j, m in enumerate(masks)]
        new = self.step(bb, state, x_t, const_in, mask_in)
        y = new[0]
        if counts:
            new = [bb.where(counts[0], n, old) for n, old in zip(new, state, strict=True)]
            # Without initial states (else no mask), the last output is the carried h.
            y = bb.where(counts[0], y, 0.0) if self.zero_output_for_mask else new[0]
        for n, v in zip(self.states, new, strict=True):
            bb.output(v, f"{n}_next")
        if self.return_sequences:
            bb.output(y, "y")
        return bb.build()

    def step(self, bb: GraphBuilder, state: list[Value], x_t: Value, consts: list[Value],
             masks: list[Value]) -> list[Value]:
        """One timestep: the new states (the first is the output) from the old ones, this
        step's projected input, the recurrent constants and the recurrent dropout masks."""
        raise NotImplementedError

    def _gates(self, bb: GraphBuilder, v: Value) -> list[Value]:
        parts = bb.split(v, axis=1, sizes=(self.units,) * self.gates)
        return list(parts) if isinstance(parts, tuple) else [parts]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units,
                "activation": activations.name_of(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
                "seed": self.seed, "return_sequences": self.return_sequences,
                "return_state": self.return_state, "go_backwards": self.go_backwards,
                "stateful": self.stateful, "unroll": self.unroll,
                "zero_output_for_mask": self.zero_output_for_mask,
                **weight_options_config(self, *_OPTIONS)}



def _reverse_time(b: GraphBuilder, ys: Value) -> Value:
    """ys with its leading (time) axis reversed. A static length is a reversing slice; a
    symbolic one gathers at indices T-1, ..., 0, counted by a small reverse scan (a slice
    of a symbolic axis would depend on its run-time size)."""
    rank = ys.type.rank
    if isinstance(ys.type.shape[0], int):
        return b.slice(ys, begin=(None,) * rank, end=(None,) * rank,
                       strides=(-1,) + (1,) * (rank - 1), name="reversed")
    cb = GraphBuilder("count_down")
    count = cb.input("count", TensorType((), "int64"))
    cb.input("item", ys.type.with_shape(ys.type.shape[1:]))
    cb.output(cb.add(count, 1), "count_next")
    cb.output(count, "index")
    # Walking from the end, step t (counted 0, 1, ...) leaves T-1-t at time index t.
    _, index = b.scan(b.constant(0, "int64"), ys, body=cb.build(), num_carry=1, num_seq=1,
                      reverse=True, name="reverse_index")
    return b.gather(ys, index, axis=0, name="reversed")


_RNN_DOC_TAIL = """
    Regularizers and constraints: kernel_regularizer, recurrent_regularizer, bias_regularizer,
    activity_regularizer, kernel_constraint, recurrent_constraint, bias_constraint (None, or
    as kiln.regularizers.get / kiln.constraints.get take them).
    Call arguments: initial_state=None (a list of (batch, units) tensors: {states}),
    training=None (the graph's mode; forces dropout on or off). A Keras mask on the sequence
    (Embedding(mask_zero=True), Masking) skips the masked steps: they keep the states and
    repeat the last output (0 with zero_output_for_mask=True); as in Keras, not when
    initial_state is given. With return_sequences the output keeps the mask.
    Input shape: (batch, timesteps, features); timesteps may be None.
    Output shape: (batch, units), or (batch, timesteps, units) with return_sequences; with
    return_state, a list [output, {states}], each state (batch, units).
"""


class SimpleRNN(RNNBase):
    """Fully-connected RNN: h_t = activation(x_t kernel + h_{t-1} recurrent_kernel + bias).

    Args: units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
    recurrent_initializer="orthogonal", bias_initializer="zeros", dropout=0.0,
    recurrent_dropout=0.0 (one mask per call on the inputs, one on the state, shared by all
    timesteps), return_sequences=False, return_state=False, go_backwards=False,
    stateful=False (True is refused), unroll=False (ignored), seed=None.
    Weights: kernel (features, units), recurrent_kernel (units, units), bias (units,).
    """ + _RNN_DOC_TAIL.format(states="h")

    def __init__(self, units: int, activation: Any = "tanh", use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform",
                 recurrent_initializer: Any = "orthogonal", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, recurrent_regularizer: Any = None,
                 bias_regularizer: Any = None, activity_regularizer: Any = None,
                 kernel_constraint: Any = None, recurrent_constraint: Any = None,
                 bias_constraint: Any = None, dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, return_sequences: bool = False,
                 return_state: bool = False, go_backwards: bool = False, stateful: bool = False,
                 unroll: bool = False, seed: int | None = None, **kwargs: Any):
        args = locals()
        options = {k: args[k] for k in _OPTIONS}
        super().__init__(units, activation, use_bias, kernel_initializer,
                         recurrent_initializer, bias_initializer, dropout, recurrent_dropout,
                         seed, return_sequences, return_state, go_backwards, stateful, unroll,
                         per_gate_masks=False, options=options,
                         activity_regularizer=activity_regularizer, **kwargs)

    def step(self, bb, state, x_t, consts, masks):  # noqa: ANN001, ANN201
        (h,) = state
        return [self.activation(bb, bb.add(x_t, _product(bb, h, consts, masks)))]


class LSTM(RNNBase):
    """Long Short-Term Memory (Hochreiter 1997), Keras 3's gate order i, f, c, o:

        z = x kernel + h recurrent_kernel + bias;  i = rσ(z_i), f = rσ(z_f), o = rσ(z_o)
        c = f * c + i * activation(z_c);  h = o * activation(c)

    Args: units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
    kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
    bias_initializer="zeros", unit_forget_bias=True (the f block of the bias starts at 1),
    dropout=0.0, recurrent_dropout=0.0, seed=None, return_sequences=False,
    return_state=False, go_backwards=False, stateful=False (True is refused), unroll=False
    (ignored), use_cudnn="auto" (ignored), implementation=2 (1: one dropout mask per gate,
    as Keras also does whenever recurrent_dropout > 0).
    Weights: kernel (features, 4 units), recurrent_kernel (units, 4 units), bias (4 units,).
    """ + _RNN_DOC_TAIL.format(states="h, c")

    gates = 4
    states = ("h", "c")

    def __init__(self, units: int, activation: Any = "tanh",
                 recurrent_activation: Any = "sigmoid", use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform",
                 recurrent_initializer: Any = "orthogonal", bias_initializer: Any = "zeros",
                 unit_forget_bias: bool = True, kernel_regularizer: Any = None,
                 recurrent_regularizer: Any = None, bias_regularizer: Any = None,
                 activity_regularizer: Any = None, kernel_constraint: Any = None,
                 recurrent_constraint: Any = None, bias_constraint: Any = None,
                 dropout: float = 0.0, recurrent_dropout: float = 0.0, seed: int | None = None,
                 return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, stateful: bool = False, unroll: bool = False,
                 use_cudnn: Any = "auto", implementation: int = 2, **kwargs: Any):
        args = locals()
        options = {k: args[k] for k in _OPTIONS}
        super().__init__(units, activation, use_bias, kernel_initializer,
                         recurrent_initializer, bias_initializer, dropout, recurrent_dropout,
                         seed, return_sequences, return_state, go_backwards, stateful, unroll,
                         per_gate_masks=_implementation(implementation, self) == 1,
                         options=options, activity_regularizer=activity_regularizer,
                         **kwargs)
        _check_cudnn(use_cudnn, self.name)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.use_cudnn = use_cudnn
        self.implementation = implementation

    def bias_init(self) -> Any:
        if not self.unit_forget_bias:
            return self.bias_initializer
        init, units = initializers.get(self.bias_initializer), self.units

        def unit_forget(shape: tuple[int, ...], dtype: str = "float32") -> np.ndarray:
            return np.concatenate([np.asarray(init((units,), dtype)), np.ones(units, dtype),
                                   np.asarray(init((2 * units,), dtype))])

        return unit_forget

    def step(self, bb, state, x_t, consts, masks):  # noqa: ANN001, ANN201
        h, c = state
        z_i, z_f, z_c, z_o = self._gates(bb, bb.add(x_t, _product(bb, h, consts, masks)))
        gate = self.recurrent_activation
        new_c = bb.add(bb.mul(gate(bb, z_f), c), bb.mul(gate(bb, z_i), self.activation(bb, z_c)))
        new_h = bb.mul(gate(bb, z_o), self.activation(bb, new_c))
        return [new_h, new_c]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(),
                "recurrent_activation": activations.name_of(self.recurrent_activation),
                "unit_forget_bias": self.unit_forget_bias, "use_cudnn": self.use_cudnn,
                "implementation": self.implementation}


class GRU(RNNBase):
    """Gated Recurrent Unit (Cho et al. 2014), Keras 3's gate order z (update), r (reset),
    h (candidate):

        reset_after=True (default): x_* = x kernel + bias[0], inner_* = h recurrent_kernel
        + bias[1]; z = rσ(x_z + inner_z), r = rσ(x_r + inner_r), hh = act(x_h + r * inner_h)
        reset_after=False: one bias with x; hh = act(x_h + (r * h) recurrent_kernel_h)
        h = z * h_prev + (1 - z) * hh

    Args: units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
    kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
    bias_initializer="zeros", dropout=0.0, recurrent_dropout=0.0, seed=None,
    return_sequences=False, return_state=False, go_backwards=False, stateful=False (True is
    refused), unroll=False (ignored), reset_after=True, use_cudnn="auto" (ignored),
    implementation=2 (1: one dropout mask per gate, as Keras does when recurrent_dropout > 0).
    Weights: kernel (features, 3 units), recurrent_kernel (units, 3 units), bias (2, 3 units)
    with reset_after, else (3 units,).
    """ + _RNN_DOC_TAIL.format(states="h")

    gates = 3

    def __init__(self, units: int, activation: Any = "tanh",
                 recurrent_activation: Any = "sigmoid", use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform",
                 recurrent_initializer: Any = "orthogonal", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, recurrent_regularizer: Any = None,
                 bias_regularizer: Any = None, activity_regularizer: Any = None,
                 kernel_constraint: Any = None, recurrent_constraint: Any = None,
                 bias_constraint: Any = None, dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, seed: int | None = None,
                 return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, stateful: bool = False, unroll: bool = False,
                 reset_after: bool = True, use_cudnn: Any = "auto", implementation: int = 2,
                 **kwargs: Any):
        args = locals()
        options = {k: args[k] for k in _OPTIONS}
        super().__init__(units, activation, use_bias, kernel_initializer,
                         recurrent_initializer, bias_initializer, dropout, recurrent_dropout,
                         seed, return_sequences, return_state, go_backwards, stateful, unroll,
                         per_gate_masks=_implementation(implementation, self) == 1,
                         options=options, activity_regularizer=activity_regularizer,
                         **kwargs)
        _check_cudnn(use_cudnn, self.name)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.reset_after = bool(reset_after)
        self.use_cudnn = use_cudnn
        self.implementation = implementation

    def bias_shape(self) -> tuple[int, ...]:
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _bias_row(self, b: GraphBuilder, ctx: Any, row: int, name: str) -> Value:
        """Row 0 (with x W) or 1 (with h U) of the reset_after bias, as a vector."""
        part = b.slice(ctx.value(self.bias), begin=(row, None), end=(row + 1, None))
        return b.reshape(part, shape=(3 * self.units,), name=name)

    def input_bias(self, b: GraphBuilder, ctx: Any) -> Value | None:
        if not self.use_bias:
            return None
        if self.reset_after:
            return self._bias_row(b, ctx, 0, "input_bias")
        return ctx.value(self.bias)

    def recurrent_constants(self, b: GraphBuilder, ctx: Any,
                            split: bool) -> list[tuple[str, Value]]:
        u = self.units
        if self.reset_after:
            consts = super().recurrent_constants(b, ctx, split)
            if self.use_bias:
                consts.append(("recurrent_bias", self._bias_row(b, ctx, 1, "recurrent_bias")))
            return consts
        # The candidate multiplies r * h by its own block, so it always travels apart.
        if split:
            parts = self._split_kernel(b, ctx, (u, u, u))
            return [(f"recurrent_kernel_{k}", p) for k, p in enumerate(parts)]
        zr, hh = self._split_kernel(b, ctx, (2 * u, u))
        return [("recurrent_kernel_zr", zr), ("recurrent_kernel_h", hh)]

    def step(self, bb, state, x_t, consts, masks):  # noqa: ANN001, ANN201
        (h,) = state
        gate, u = self.recurrent_activation, self.units
        x_z, x_r, x_h = self._gates(bb, x_t)
        if self.reset_after:
            kernels = consts[:-1] if self.use_bias else consts
            inner = _product(bb, h, kernels, masks)
            if self.use_bias:
                inner = bb.add(inner, consts[-1])
            in_z, in_r, in_h = self._gates(bb, inner)
            z, r = gate(bb, bb.add(x_z, in_z)), gate(bb, bb.add(x_r, in_r))
            candidate = bb.mul(r, in_h)
        else:
            inner = _product(bb, h, consts[:-1], masks[:2])
            in_z, in_r = bb.split(inner, axis=1, sizes=(u, u))
            z, r = gate(bb, bb.add(x_z, in_z)), gate(bb, bb.add(x_r, in_r))
            h_h = bb.mul(h, masks[2]) if masks else h
            candidate = bb.matmul(bb.mul(r, h_h), consts[-1])
        hh = self.activation(bb, bb.add(x_h, candidate))
        return [bb.add(bb.mul(z, h), bb.mul(bb.sub(1.0, z), hh))]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(),
                "recurrent_activation": activations.name_of(self.recurrent_activation),
                "reset_after": self.reset_after, "use_cudnn": self.use_cudnn,
                "implementation": self.implementation}


def _sequence_and_states(layer: Layer, inputs: Any, initial_state: Any,
                         kwargs: dict[str, Any]) -> list[KerasTensor]:
    """A recurrent layer's call arguments checked: [sequence, *initial states]."""
    if isinstance(inputs, (list, tuple)):
        raise KilnValueError(f"layer {layer.name!r} expects one input, the sequence; pass "
                             f"initial states as initial_state=[...]. "
                             f"Received: a list of {len(inputs)} tensors")
    for key in kwargs:
        if key not in ("training", "mask"):
            raise KilnTypeError(f"layer {layer.name!r}: unrecognized call argument {key!r}. "
                                f"Received: {key}={kwargs[key]!r}")
    states = [] if initial_state is None else (
        list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state])
    for s in states:
        if not is_symbolic(s):
            raise KilnTypeError(f"layer {layer.name!r}: expected initial_state as symbolic "
                                f"tensors. Received: {type(s).__name__}")
    mask = kwargs.pop("mask", None)
    if mask is not None:
        if isinstance(inputs, KerasTensor):
            raise KilnValueError(f"layer {layer.name!r}: kiln takes a recurrent layer's mask "
                                 f"from its input (Embedding(mask_zero=True) or Masking), not "
                                 f"as mask=. Received: mask={mask!r}")
        kwargs["mask"] = [mask, *([None] * len(states))]  # inside a custom layer's call
    return [inputs, *states]


_MERGE_MODES = ("concat", "sum", "ave", "mul", None)


class Bidirectional(_SequenceCall, Wrapper):
    """Runs a recurrent layer over the sequence forwards and a copy of it backwards, and
    merges the two outputs, as keras.layers.Bidirectional.

    Args: layer (a SimpleRNN, LSTM or GRU; it is copied from its config as the forward
    layer "forward_<name>"), merge_mode="concat" ("sum", "ave", "mul", or None for the two
    outputs as a list), weights=None (initial weights: the forward layer's, then the
    backward layer's), backward_layer=None (by default a copy of `layer` with
    go_backwards=True, named "backward_<name>"; if given, its go_backwards must differ from
    layer's, and return_sequences and return_state must be the same).
    With return_sequences the backward outputs are put back in time order before merging.
    With return_state the output is followed by the forward layer's states, then the backward
    layer's; initial_state takes them in that order too. Weights: the forward layer's, then
    the backward layer's.
    """

    multi_input = True
    supports_masking = True
    takes_mask = True

    def __init__(self, layer: Any, merge_mode: str | None = "concat", weights: Any = None,
                 backward_layer: Any = None, **kwargs: Any):
        if not isinstance(layer, RNNBase):
            raise KilnValueError(f"Please initialize `Bidirectional` layer with a recurrent "
                                 f"layer (SimpleRNN, LSTM or GRU). Received: {layer!r}")
        if backward_layer is not None and not isinstance(backward_layer, RNNBase):
            raise KilnValueError(f"`backward_layer` need to be a recurrent layer (SimpleRNN, "
                                 f"LSTM or GRU). Received: {backward_layer!r}")
        if merge_mode not in _MERGE_MODES:
            raise KilnValueError(f"Invalid merge mode. Received: {merge_mode!r}. Merge mode "
                                 f"should be one of {{'sum', 'mul', 'ave', 'concat', None}}")
        self.forward_layer: RNNBase | None = None
        self.backward_layer: RNNBase | None = None
        super().__init__(**kwargs)
        self.forward_layer = _copy(layer, "forward_" + _strip(layer.name, "forward_"),
                                   layer.go_backwards)
        self.backward_layer = backward_layer if backward_layer is not None else _copy(
            layer, "backward_" + _strip(layer.name, "backward_"), True)
        forward, backward = self.forward_layer, self.backward_layer
        if forward.go_backwards == backward.go_backwards:
            raise KilnValueError(f"Forward layer and backward layer should have different "
                                 f"`go_backwards` value. Received: forward_layer.go_backwards="
                                 f"{forward.go_backwards}, backward_layer.go_backwards="
                                 f"{backward.go_backwards}")
        for attr in ("return_sequences", "return_state"):
            if getattr(forward, attr) != getattr(backward, attr):
                raise KilnValueError(f"Forward layer and backward layer are expected to have "
                                     f"the same value for attribute {attr!r}, got "
                                     f"{getattr(forward, attr)} for forward layer and "
                                     f"{getattr(backward, attr)} for backward layer")
        # The backward layer's sequences in time order: no reversal there and back here.
        backward._sequences_in_input_order = True
        for sub in (forward, backward):  # as Keras forces it: masked steps output 0
            sub.zero_output_for_mask = sub.return_sequences
        if not self.trainable:  # a frozen wrapper freezes both; else each keeps its own
            self.forward_layer.trainable = self.backward_layer.trainable = False
        self.merge_mode = merge_mode
        self.return_sequences = forward.return_sequences
        self.return_state = forward.return_state
        self.returns_list = self.return_state or merge_mode is None
        self._initial_weights = list(weights) if weights else None

    def _halves(self, items: list) -> tuple[list, list]:
        sequence, states = items[0], list(items[1:])
        expected = len(self.forward_layer.states) + len(self.backward_layer.states)
        if states and len(states) != expected:
            raise KilnValueError(f"layer {self.name!r}: expected initial_state to hold "
                                 f"{expected} tensors (the forward layer's states, then the "
                                 f"backward layer's). Received: {len(states)}")
        half = len(self.forward_layer.states) if states else 0
        return [sequence, *states[:half]], [sequence, *states[half:]]

    def check_input_shapes(self, shapes: list) -> None:
        forward, backward = self._halves(shapes)
        self.forward_layer.check_input_shapes(forward)
        self.backward_layer.check_input_shapes(backward)

    def build(self, input_shape: Any) -> None:
        for sub, shapes in zip((self.forward_layer, self.backward_layer),
                               self._halves(input_shape)):
            if not sub.built:
                sub.build(shapes)
                sub.built = True
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None

    def first_argument(self, items: list) -> list:
        return list(items[:1])

    def lower_mask(self, b, inputs, masks, ctx, **kwargs):  # noqa: ANN001, ANN201
        if not self.return_sequences:
            return []
        return [masks[0]] * (2 if self.merge_mode is None else 1)

    def lower(self, b, inputs, ctx, training=None, keras_mask=None,  # noqa: ANN001, ANN201
              **kwargs):
        results = []
        for sub, values in zip((self.forward_layer, self.backward_layer),
                               self._halves(list(inputs))):
            with b.scope(sub.name):
                out = sub.lower(b, values, ctx, training=training,
                                keras_mask=keras_mask and keras_mask[:1])
            outs = list(out) if isinstance(out, (list, tuple)) else [out]
            ctx.add_activity_penalties(sub, outs)
            results.append(outs)
        (y, *forward_states), (y_rev, *backward_states) = results
        if self.merge_mode == "concat":
            merged = [b.concat(y, y_rev, axis=-1, name="concat")]
        elif self.merge_mode == "sum":
            merged = [b.add(y, y_rev, name="sum")]
        elif self.merge_mode == "ave":
            merged = [b.mul(b.add(y, y_rev), 0.5, name="ave")]
        elif self.merge_mode == "mul":
            merged = [b.mul(y, y_rev, name="mul")]
        else:
            merged = [y, y_rev]
        outputs = [*merged, *forward_states, *backward_states]
        return outputs if self.returns_list else outputs[0]

    def get_config(self) -> dict[str, Any]:
        from kiln.frontends.keras.saving import serialize_layer

        return {**super().get_config(), "merge_mode": self.merge_mode,
                "layer": serialize_layer(self.forward_layer),
                "backward_layer": serialize_layer(self.backward_layer)}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> Bidirectional:
        from kiln.frontends.keras.saving import deserialize_layer

        config = dict(config)
        config["layer"] = deserialize_layer(config["layer"], custom_objects)
        if config.get("backward_layer") is not None:
            config["backward_layer"] = deserialize_layer(config["backward_layer"],
                                                         custom_objects)
        return cls(**config)


def _strip(name: str, prefix: str) -> str:
    return name[len(prefix):] if name.startswith(prefix) else name


def _copy(layer: RNNBase, name: str, go_backwards: bool) -> RNNBase:
    """A new, unbuilt layer with `layer`'s arguments (its activations as the very callables,
    so custom ones survive), renamed, going backwards or not."""
    config = {**layer.get_config(), "name": name, "go_backwards": go_backwards}
    config.pop("batch_input_shape", None)
    for key in ("activation", "recurrent_activation"):
        if hasattr(layer, key):
            config[key] = getattr(layer, key)
    return type(layer)(**config)


def _implementation(value: Any, layer: Layer) -> int:
    if value not in (1, 2) or isinstance(value, bool):
        raise KilnValueError(f"{type(layer).__name__}: expected implementation 1 or 2. "
                             f"Received: implementation={value!r}")
    return int(value)


def _check_cudnn(value: Any, layer: str) -> None:
    if value not in ("auto", True, False):
        raise KilnValueError(f"layer {layer!r}: invalid value received for argument `use_cudnn`. "
                             f"Expected one of {{'auto', True, False}}. Received: "
                             f"use_cudnn={value!r}")
