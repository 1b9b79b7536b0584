"""MultiHeadAttention, as Keras 3 defines it: four EinsumDense-style projections (query,
key, value, attention_output), scaled dot-product scores over the attention axes, a
softmax that masked positions do not take part in, dropout on the probabilities; and the
single-head Attention (dot-product, Luong) and AdditiveAttention (Bahdanau) layers."""

from __future__ import annotations

import math
import string
from typing import Any

import numpy as np

from kiln.frontends.keras import initializers
from kiln.frontends.keras.einsum import einsum
from kiln.frontends.keras.layer import (
    KERNEL_BIAS_OPTIONS,
    Layer,
    as_bool,
    fraction_arg,
    is_symbolic,
    set_weight_options,
    weight_options_config,
)
from kiln.frontends.keras.layers.activation import masked_softmax
from kiln.frontends.keras.layers.core import inverted_dropout
from kiln.frontends.keras.layers.einsum_dense import Projection
from kiln.ir import KilnTypeError, KilnValueError


def band_mask(t: Any, s: Any, causal: bool, window: int | None, name: str) -> np.ndarray:
    """(t, s) bools: where query position i may attend to key position j (causal: j <= i;
    a sliding window: |i - j| < window). Needs known lengths."""
    if isinstance(t, str) or isinstance(s, str):
        raise KilnValueError(f"layer {name!r}: use_causal_mask and sliding_window need known "
                             f"sequence lengths. Received: {t} query and {s} key positions")
    rows, cols = np.arange(t)[:, None], np.arange(s)[None, :]
    band = np.ones((t, s), dtype=bool)
    if causal:
        band &= rows >= cols
    if window is not None:
        band &= np.abs(rows - cols) < window
    return band


def _expect_symbolic(layer: Layer, tensors: list) -> None:
    for t in tensors:
        if not is_symbolic(t):
            raise KilnTypeError(f"layer {layer.name!r} expected symbolic inputs (from "
                                f"layers.Input or another layer). Received: {type(t).__name__}")


def _call_flags(flags: dict[str, Any], return_attention_scores: bool, use_causal_mask: bool,
                training: Any) -> dict[str, Any]:
    """The keyword arguments an attention call records: which tensors it got (`flags`), and
    the optional ones only where given (so a saved call holds what the user wrote)."""
    call = dict(flags)
    if return_attention_scores:
        call["return_attention_scores"] = True
    if use_causal_mask:
        call["use_causal_mask"] = True
    if training is not None:
        call["training"] = bool(training)
    return call


def _positive(value: Any, what: str, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise KilnValueError(f"Received an invalid value for argument `{what}`, expected a "
                             f"positive integer{' or `None`' if optional else ''}. "
                             f"Received: {what}={value!r}")


def _projection_equation(free: int, bound: int, out: int) -> tuple[str, str, int]:
    """(equation, bias axes, output rank) of a projection that keeps the input's first
    `free` axes, contracts its next `bound` with the kernel, and adds `out` kernel axes."""
    letters = string.ascii_lowercase
    kept, contracted = letters[:free], letters[free:free + bound]
    added = letters[free + bound:free + bound + out]
    return f"{kept}{contracted},{contracted}{added}->{kept}{added}", added, free + out


def _attention_equations(rank: int, axes: tuple[int, ...]) -> tuple[str, str, int]:
    """For projected tensors of `rank` (batch, ..., heads, channels) attending over `axes`:
    the scores' equation (key, query -> scores), the combination's (scores, value ->
    output), and the scores' rank. The scores' axes are the other (batch) axes with the
    heads, then the query's attention axes, then the key's."""
    letters = string.ascii_lowercase
    target = letters[:rank]
    batch = [i for i in range(rank) if i not in axes and i != rank - 1]
    fresh = iter(letters[rank:])
    source = "".join(target[i] if i not in axes else next(fresh) for i in range(rank))
    scores = ("".join(target[i] for i in batch) + "".join(target[i] for i in axes)
              + "".join(source[i] for i in axes))
    return f"{source},{target}->{scores}", f"{scores},{source}->{target}", len(scores)


class MultiHeadAttention(Layer):
    """Multi-head attention (Vaswani et al. 2017) with Keras 3's weights and arguments.

    Args: num_heads; key_dim (each head's query and key size); value_dim=None (key_dim);
    dropout=0.0 (on the attention probabilities, in training); use_bias=True;
    output_shape=None (the query's last size); attention_axes=None (all but the batch and
    the features); sliding_window=None (attend only within sliding_window - 1 positions);
    use_gate=False (a sigmoid gate from the query on the heads' outputs); the kernel and bias
    initializers, regularizers and constraints of the four projections; seed and
    flash_attention, accepted for Keras compatibility (kiln draws dropout from the model's
    seed state, and computes the same attention either way).

    Call: layer(query, value, key=None, attention_mask=None, return_attention_scores=False,
    training=None, use_causal_mask=False). query (batch, T..., dim), value and key (batch,
    S..., dim'); attention_mask (batch, T..., S...) or broadcastable to it (size-1 axes):
    nonzero where a query position may attend to a key position. Keras masks on the inputs
    (Embedding(mask_zero=True), Masking) join it: a query position that is masked, or a key
    position masked in value or key, is left out; the output keeps the query's mask. A
    query position that may attend nowhere is as Keras computes it: on its fused path (no
    dropout, no scores returned, one attention axis) the mean of the values, else zero
    probabilities (the bias alone). use_causal_mask and sliding_window need known sequence
    lengths.
    Returns the output (batch, T..., output_shape), and with return_attention_scores the
    probabilities (batch, heads, T..., S...) as well.
    """

    multi_input = True
    supports_masking = True
    takes_mask = True

    def __init__(self, num_heads: int, key_dim: int, value_dim: int | None = None,
                 dropout: float = 0.0, use_bias: bool = True, output_shape: Any = None,
                 attention_axes: Any = None, sliding_window: int | None = None,
                 flash_attention: Any = None, kernel_initializer: Any = "glorot_uniform",
                 bias_initializer: Any = "zeros", kernel_regularizer: Any = None,
                 bias_regularizer: Any = None, kernel_constraint: Any = None,
                 bias_constraint: Any = None, use_gate: bool = False, seed: int | None = None,
                 **kwargs: Any):
        _positive(num_heads, "num_heads")
        _positive(key_dim, "key_dim")
        _positive(value_dim, "value_dim", optional=True)
        _positive(sliding_window, "sliding_window", optional=True)
        super().__init__(**kwargs)
        self.dropout = fraction_arg(dropout, "dropout", self.name)
        set_weight_options(self, kernel_regularizer=kernel_regularizer,
                           bias_regularizer=bias_regularizer,
                           kernel_constraint=kernel_constraint, bias_constraint=bias_constraint)
        self.num_heads, self.key_dim = num_heads, key_dim
        self.value_dim = value_dim or key_dim
        self.use_bias, self.use_gate = bool(use_bias), bool(use_gate)
        if output_shape is not None and not isinstance(output_shape, (int, list, tuple)):
            raise KilnValueError(f"layer {self.name!r}: invalid `output_shape`: "
                                 f"{output_shape!r}. When specified, the `output_shape` should "
                                 f"be of type tuple, list, or int")
        self.output_shape_arg = ((output_shape,) if isinstance(output_shape, int)
                                 else None if not output_shape else tuple(output_shape))
        if isinstance(attention_axes, int) and not isinstance(attention_axes, bool):
            attention_axes = (attention_axes,)
        elif attention_axes is not None and not isinstance(attention_axes, (list, tuple)):
            raise KilnValueError(f"layer {self.name!r}: `attention_axes` must be an int, list, "
                                 f"or tuple. Received: attention_axes={attention_axes!r}")
        self.attention_axes = None if attention_axes is None else tuple(attention_axes)
        self.sliding_window = sliding_window
        self.flash_attention = flash_attention
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.seed = seed

    # -- calling -----------------------------------------------------------------------------
    def __call__(self, query: Any, value: Any = None, key: Any = None,
                 attention_mask: Any = None, return_attention_scores: bool = False,
                 training: Any = None, use_causal_mask: bool = False, **kwargs: Any) -> Any:
        for name in ("query_mask", "value_mask", "key_mask"):
            if kwargs.pop(name, None) is not None:
                raise KilnValueError(f"layer {self.name!r}: kiln takes {name} from the "
                                     f"tensor's Keras mask (Embedding(mask_zero=True), "
                                     f"Masking), or pass attention_mask")
        if kwargs:
            name = next(iter(kwargs))
            raise KilnTypeError(f"layer {self.name!r}: unrecognized call argument {name!r}. "
                                f"Received: {name}={kwargs[name]!r}")
        if value is None:
            raise KilnValueError(f"layer {self.name!r}: expected query and value tensors "
                                 f"(layer(query, value) for self-attention: value=query)")
        tensors = [query, value, *([key] if key is not None else []),
                   *([attention_mask] if attention_mask is not None else [])]
        _expect_symbolic(self, tensors)
        self._check_shapes(query.shape, value.shape, None if key is None else key.shape,
                           None if attention_mask is None else attention_mask.shape)
        if not self.built:
            self._build(query.shape, value.shape, value.shape if key is None else key.shape)
            self.built = True
        flags = {"with_key": key is not None, "with_mask": attention_mask is not None}
        return super().__call__(tensors, **_call_flags(flags, return_attention_scores,
                                                       use_causal_mask, training))

    def replay(self, inputs: list, kwargs: dict[str, Any], as_list: bool | None = None) -> Any:
        """A saved call again: [query, value, key?, mask?] as its flags say."""
        kwargs = dict(kwargs)
        rest = iter(inputs[2:])
        key = next(rest) if kwargs.pop("with_key", False) else None
        mask = next(rest) if kwargs.pop("with_mask", False) else None
        return self(inputs[0], inputs[1], key=key, attention_mask=mask, **kwargs)

    def _check_shapes(self, query: tuple, value: tuple, key: tuple | None,
                      mask: tuple | None) -> None:
        where = f"layer {self.name!r}"
        key = value if key is None else key
        if len(query) < 3:
            raise KilnValueError(f"{where}: expected a query of rank >= 3 (batch, positions..., "
                                 f"features). Received: query shape {query}")
        if len(value) != len(query) or len(key) != len(query):
            raise KilnValueError(f"{where}: expected query, value and key of the same rank. "
                                 f"Received: query {query}, value {value}, key {key}")
        if tuple(value[1:-1]) != tuple(key[1:-1]):
            raise KilnValueError(f"{where}: all dimensions of `value` and `key`, except the "
                                 f"last one, must be equal. Received: value_shape={value} and "
                                 f"key_shape={key}")
        for name, shape in (("query", query), ("value", value), ("key", key)):
            if shape[-1] is None:
                raise KilnValueError(f"{where}: the last dimension of the {name} (its features) "
                                     f"must be known. Received: shape={shape}")
        if self.built:
            for name, shape, weights in (("query", query, self.query_dense),
                                         ("key", key, self.key_dense),
                                         ("value", value, self.value_dense)):
                if shape[-1] != weights.kernel.shape[0]:
                    raise KilnValueError(f"{where}: built for a {name} of "
                                         f"{weights.kernel.shape[0]} features. "
                                         f"Received: {name} shape {shape}")
        rank = len(query) + 1
        axes = self._axes(rank)
        if mask is not None:
            # The scores' shape without the heads: (batch, other axes..., query positions...,
            # key positions...); the mask may leave out the other axes.
            others = [query[i] for i in range(1, rank - 2) if i not in axes]
            scores = [query[0], *others, *(query[i] for i in axes), *(key[i] for i in axes)]
            fits = 1 + 2 * len(axes) <= len(mask) <= len(scores) and all(
                m is None or s is None or m in (1, s)
                for m, s in zip(mask, [scores[0], *scores[len(scores) - len(mask) + 1:]]))
            if not fits:
                raise KilnValueError(f"{where}: expected attention_mask of shape "
                                     f"{tuple(scores)} (batch, query positions, key positions) "
                                     f"or broadcastable to it. Received: shape={mask}")

    def _axes(self, rank: int) -> tuple[int, ...]:
        """The attention axes of projected tensors of `rank`, non-negative."""
        if self.attention_axes is None:
            return tuple(range(1, rank - 2))
        axes = tuple(a if a >= 0 else (rank - 1) + a for a in self.attention_axes)
        if not all(1 <= a < rank - 2 for a in axes) or len(set(axes)) != len(axes):
            raise KilnValueError(f"layer {self.name!r}: attention_axes {self.attention_axes} "
                                 f"must name distinct axes of the query other than the batch "
                                 f"and the features (1 to {rank - 3})")
        return tuple(sorted(axes))

    # -- weights -----------------------------------------------------------------------------
    def _build(self, query: tuple, value: tuple, key: tuple) -> None:
        rank = len(query)

        def projection(name: str, bound: int, out: list, input_shape: tuple) -> Projection:
            equation, bias_axes, out_rank = _projection_equation(rank - 1, bound, len(out))
            partial = [None] * (out_rank - 1 - len(out)) + list(out)
            return Projection(self, f"{name}/", equation, tuple(partial),
                              bias_axes if self.use_bias else None, input_shape,
                              initializers.get(self.kernel_initializer),
                              self.bias_initializer, f"layer {self.name!r} ({name})")

        heads = [self.num_heads, self.key_dim]
        self.query_dense = projection("query", 1, heads, query)
        self.key_dense = projection("key", 1, heads, key)
        self.gate_dense = (projection("gate", 1, [self.num_heads, self.value_dim], query)
                           if self.use_gate else None)
        self.value_dense = projection("value", 1, [self.num_heads, self.value_dim], value)
        out = list(self.output_shape_arg or [query[-1]])
        self.output_dense = projection("attention_output", 2, out,
                                       (*query[:-1], self.num_heads, self.value_dim))

    def check_input_shapes(self, shapes: list) -> None:
        """Checked in __call__, where the call's arguments say which tensor is which."""

    # -- lowering ----------------------------------------------------------------------------
    def first_argument(self, items: list) -> list:
        return list(items[:1])  # the query's mask is the output's

    def lower(self, b, xs, ctx, with_key=False, with_mask=False,  # noqa: ANN001, ANN201
              return_attention_scores=False, use_causal_mask=False, training=None,
              keras_mask=None):
        rest = iter(xs[2:])
        query, value = xs[0], xs[1]
        key = next(rest) if with_key else value
        mask = next(rest) if with_mask else None
        auto = self._input_masks(b, keras_mask, with_key)
        if auto is not None:
            mask = auto if mask is None else b.logical_and(as_bool(b, mask), auto)
        gate = (None if self.gate_dense is None
                else b.sigmoid(self.gate_dense.lower(b, query, ctx)))
        q = self.query_dense.lower(b, query, ctx)
        k = self.key_dense.lower(b, key, ctx)
        v = self.value_dense.lower(b, value, ctx)
        rank = q.type.rank
        axes = self._axes(rank)
        scores_eq, combine_eq, scores_rank = _attention_equations(rank, axes)
        q = b.mul(q, 1.0 / math.sqrt(float(self.key_dim)))
        scores = einsum(b, scores_eq, k, q)
        allowed = self._allowed(b, mask, q, k, axes, scores_rank, use_causal_mask)
        # Keras's fused path (torch's scaled_dot_product_attention) gives a query position
        # that may attend nowhere the mean of the values; its softmax path zeros.
        fused = not (self.dropout > 0 or return_attention_scores or rank != 4)
        probs = masked_softmax(b, scores, allowed, tuple(range(-len(axes), 0)),
                               zero_masked=not fused)
        dropped = inverted_dropout(b, ctx, self, probs, self.dropout, training,
                                   probs.type.shape, name="dropout_mask")
        heads = einsum(b, combine_eq, dropped, v)
        if gate is not None:
            heads = b.mul(heads, gate)
        out = self.output_dense.lower(b, heads, ctx)
        return [out, probs] if return_attention_scores else out

    @staticmethod
    def _input_masks(b, keras_mask, with_key):  # noqa: ANN001, ANN205
        """Keras's attention mask from the inputs' masks, (batch, T, S) or None: the query's
        mask over its positions, the value's (and a given key's) over the key positions."""
        if not keras_mask:
            return None
        query, value = keras_mask[0], keras_mask[1]
        key = keras_mask[2] if with_key else None
        parts = []
        if query is not None:
            parts.append(b.expand_dims(as_bool(b, query), axes=(-1,)))
        for m in (value, key):
            if m is not None:
                parts.append(b.expand_dims(as_bool(b, m), axes=(-2,)))
        if not parts:
            return None
        out = parts[0]
        for part in parts[1:]:
            out = b.logical_and(out, part)
        return out

    def _allowed(self, b, mask, q, k, axes, scores_rank, causal):  # noqa: ANN001, ANN202
        """Where a query position may attend to a key position (bool, broadcasting against
        the scores), or None when it may everywhere."""
        allowed = None
        if mask is not None:
            allowed = as_bool(b, mask)
            # The mask's axes are (batch, other axes..., query's, key's): the heads' axis and
            # any other axes it leaves out are inserted before the query's (as Keras does).
            missing = scores_rank - allowed.type.rank
            if missing:
                at = allowed.type.rank - 2 * len(axes)
                allowed = b.expand_dims(allowed, axes=tuple(range(at, at + missing)))
        if causal or self.sliding_window is not None:
            band = self._band(q, k, axes, causal)
            constant = b.constant(band.reshape((1,) * (scores_rank - band.ndim) + band.shape))
            allowed = constant if allowed is None else b.logical_and(allowed, constant)
        return allowed

    def _band(self, q: Any, k: Any, axes: tuple[int, ...], causal: bool) -> np.ndarray:
        """The causal and sliding-window mask (query positions, key positions) of the one
        attention axis."""
        if len(axes) > 1:
            raise KilnValueError(f"layer {self.name!r}: use_causal_mask and sliding_window "
                                 f"take one attention axis. Received: attention_axes={axes}")
        return band_mask(q.type.shape[axes[0]], k.type.shape[axes[0]], causal,
                         self.sliding_window, self.name)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim,
                "value_dim": self.value_dim, "dropout": self.dropout, "use_bias": self.use_bias,
                "use_gate": self.use_gate,
                "output_shape": None if self.output_shape_arg is None
                else list(self.output_shape_arg),
                "attention_axes": None if self.attention_axes is None
                else list(self.attention_axes),
                "sliding_window": self.sliding_window,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                **weight_options_config(self, *KERNEL_BIAS_OPTIONS), "seed": self.seed}


class Attention(Layer):
    """Dot-product (Luong-style) attention over [query, value] or [query, value, key], as
    Keras 3 defines it: scores = query @ key^T (times a learned scalar `scale` with
    use_scale), or with score_mode="concat" concat_score_weight * sum(tanh(scale * (q + k)));
    disallowed scores lowered by 1e9; softmax over the key positions; dropout; @ value.

    Args: use_scale=False, score_mode="dot" ("dot" or "concat"), dropout=0.0, seed (accepted;
    kiln draws from the model's seed state).
    Call: layer([query, value, key?], mask=[query_mask, value_mask], training=None,
    return_attention_scores=False, use_causal_mask=False). query (batch, Tq, dim), value
    (batch, Tv, dim'), key (batch, Tv, dim); the masks (batch, Tq) and (batch, Tv), nonzero
    where a position counts (either may be None); without mask=, the inputs' Keras masks
    (Embedding(mask_zero=True), Masking) are taken. The output is zero at masked query
    positions and keeps the query mask.
    Returns (batch, Tq, dim'), and with return_attention_scores the weights (batch, Tq, Tv)
    after dropout, as Keras returns them.
    """

    multi_input = True
    supports_masking = True
    takes_mask = True
    #: The scores' shift at disallowed positions (Keras's, before the softmax).
    MASK_SHIFT = 1e9

    def __init__(self, use_scale: bool = False, score_mode: str = "dot", dropout: float = 0.0,
                 seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if score_mode not in ("dot", "concat"):
            raise KilnValueError(f"layer {self.name!r}: invalid value for argument score_mode. "
                                 f"Expected one of {{'dot', 'concat'}}. "
                                 f"Received: score_mode={score_mode!r}")
        self.dropout = fraction_arg(dropout, "dropout", self.name)
        self.use_scale, self.score_mode, self.seed = bool(use_scale), score_mode, seed

    def __call__(self, inputs: Any, mask: Any = None, training: Any = None,
                 return_attention_scores: bool = False, use_causal_mask: bool = False,
                 **kwargs: Any) -> Any:
        name = type(self).__name__
        if kwargs:
            key = next(iter(kwargs))
            raise KilnTypeError(f"layer {self.name!r}: unrecognized call argument {key!r}. "
                                f"Received: {key}={kwargs[key]!r}")
        if not isinstance(inputs, (list, tuple)) or not 2 <= len(inputs) <= 3:
            raise KilnValueError(f"layer {self.name!r}: a {name} layer must be called on a "
                                 f"list of inputs, namely [query, value] or [query, value, "
                                 f"key]. Received: inputs={inputs!r}")
        masks = [None, None] if mask is None else list(mask)
        if not isinstance(mask, (list, tuple, type(None))) or len(masks) != 2:
            raise KilnValueError(f"layer {self.name!r}: a {name} layer's mask must be a list, "
                                 f"namely [query_mask, value_mask]. Received: mask={mask!r}")
        tensors = [*inputs, *(m for m in masks if m is not None)]
        _expect_symbolic(self, tensors)
        self._check_shapes([t.shape for t in inputs], [None if m is None else m.shape
                                                       for m in masks])
        flags = {"with_key": len(inputs) == 3, "with_query_mask": masks[0] is not None,
                 "with_value_mask": masks[1] is not None}
        return super().__call__(tensors, **_call_flags(flags, return_attention_scores,
                                                       use_causal_mask, training))

    def replay(self, inputs: list, kwargs: dict[str, Any], as_list: bool | None = None) -> Any:
        """A saved call again: [query, value, key?, query_mask?, value_mask?] as its flags
        say."""
        kwargs = dict(kwargs)
        count = 3 if kwargs.pop("with_key", False) else 2
        rest = iter(inputs[count:])
        masks = [next(rest) if kwargs.pop(flag, False) else None
                 for flag in ("with_query_mask", "with_value_mask")]
        return self(list(inputs[:count]), mask=masks if any(
            m is not None for m in masks) else None, **kwargs)

    def _check_shapes(self, shapes: list, masks: list) -> None:
        where = f"layer {self.name!r}"
        query, value = shapes[0], shapes[1]
        key = shapes[2] if len(shapes) > 2 else value
        if any(len(s) != 3 for s in (query, value, key)):
            raise KilnValueError(f"{where}: expected query, value and key of rank 3 (batch, "
                                 f"positions, features). Received: {[tuple(s) for s in shapes]}")
        if key[1] is not None and value[1] is not None and key[1] != value[1]:
            raise KilnValueError(f"{where}: expected value and key of the same length. "
                                 f"Received: value {value}, key {key}")
        if query[-1] is None or key[-1] is None or query[-1] != key[-1]:
            raise KilnValueError(f"{where}: expected query and key of the same known feature "
                                 f"size. Received: query {query}, key {key}")
        for label, m, length in (("query_mask", masks[0], query[1]),
                                 ("value_mask", masks[1], value[1])):
            if m is not None and (len(m) != 2 or m[1] not in (None, length)):
                raise KilnValueError(f"{where}: expected {label} of shape (batch, {length}). "
                                     f"Received: shape={m}")
        if self.built and query[-1] != self.features:
            raise KilnValueError(f"{where}: built for a query of {self.features} features. "
                                 f"Received: query shape {query}")

    def build(self, input_shape: list) -> None:
        self.features = input_shape[0][-1]
        if self.use_scale:
            self.scale = self.add_weight("scale", (), "ones")
        if self.score_mode == "concat":
            self.concat_score_weight = self.add_weight("concat_score_weight", (), "ones")

    def _scores(self, b: Any, q: Any, k: Any, ctx: Any) -> Any:
        """(batch, Tq, Tv) scores of the query against the key."""
        if self.score_mode == "dot":
            scores = b.matmul(q, b.transpose(k, perm=(0, 2, 1)))
            return b.mul(scores, ctx.value(self.scale)) if self.use_scale else scores
        pairs = b.add(b.expand_dims(q, axes=(2,)), b.expand_dims(k, axes=(1,)))
        if self.use_scale:
            pairs = b.mul(pairs, ctx.value(self.scale))
        return b.mul(ctx.value(self.concat_score_weight), b.sum(b.tanh(pairs), axes=(-1,)))

    @staticmethod
    def _masks(b, xs, with_key, with_query_mask, with_value_mask,  # noqa: ANN001, ANN205
               keras_mask):
        """[query mask, value mask] as bools (None where absent): those passed as mask=,
        else the query's and the value's Keras masks."""
        if with_query_mask or with_value_mask:
            rest = iter(xs[3 if with_key else 2:])
            given = [next(rest) if flag else None for flag in (with_query_mask,
                                                               with_value_mask)]
        else:
            given = list(keras_mask[:2]) if keras_mask else [None, None]
        return [None if m is None else as_bool(b, m) for m in given]

    def lower_mask(self, b, xs, masks, ctx, with_key=False,  # noqa: ANN001, ANN201
                   with_query_mask=False, with_value_mask=False, **kwargs):
        return self._masks(b, xs, with_key, with_query_mask, with_value_mask, masks)[:1]

    def lower(self, b, xs, ctx, with_key=False, with_query_mask=False,  # noqa: ANN001, ANN201
              with_value_mask=False, return_attention_scores=False, use_causal_mask=False,
              training=None, keras_mask=None):
        q, v = xs[0], xs[1]
        k = xs[2] if with_key else v
        q_mask, v_mask = self._masks(b, xs, with_key, with_query_mask, with_value_mask,
                                     keras_mask)
        scores = self._scores(b, q, k, ctx)
        allowed = None if v_mask is None else b.expand_dims(v_mask, axes=(1,))
        if use_causal_mask:
            band = b.constant(band_mask(q.type.shape[1], k.type.shape[1], True, None,
                                        self.name)[None])
            allowed = band if allowed is None else b.logical_and(allowed, band)
        if allowed is not None:
            scores = b.where(allowed, scores, b.sub(scores, self.MASK_SHIFT))
        probs = b.softmax(scores, axis=-1)
        weights = inverted_dropout(b, ctx, self, probs, self.dropout, training,
                                   probs.type.shape, name="dropout_mask")
        out = b.matmul(weights, v)
        if q_mask is not None:
            out = b.where(b.expand_dims(q_mask, axes=(2,)), out, 0.0)
        return [out, weights] if return_attention_scores else out

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "use_scale": self.use_scale,
                "score_mode": self.score_mode, "dropout": self.dropout, "seed": self.seed}


class AdditiveAttention(Attention):
    """Additive (Bahdanau-style) attention: scores = sum(scale * tanh(query + key)) over the
    features, scale a learned (dim,) vector (glorot_uniform) with use_scale=True (else 1);
    the rest as Attention.

    Args: use_scale=True, dropout=0.0. Call: as Attention's.
    """

    def __init__(self, use_scale: bool = True, dropout: float = 0.0, **kwargs: Any):
        super().__init__(use_scale=use_scale, dropout=dropout, **kwargs)

    def build(self, input_shape: list) -> None:
        self.features = input_shape[0][-1]
        if self.use_scale:
            self.scale = self.add_weight("scale", (self.features,), "glorot_uniform")

    def _scores(self, b: Any, q: Any, k: Any, ctx: Any) -> Any:
        pairs = b.tanh(b.add(b.expand_dims(q, axes=(2,)), b.expand_dims(k, axes=(1,))))
        if self.use_scale:
            pairs = b.mul(pairs, ctx.value(self.scale))
        return b.sum(pairs, axes=(-1,))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["score_mode"]
        return config
