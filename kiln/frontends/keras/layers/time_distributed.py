"""TimeDistributed: one layer applied to every step of a sequence, as keras.layers.TimeDistributed.

Keras 3 calls the wrapped layer once per step on the step's slice (batch, ...) and stacks the
results. kiln lowers that call in one of three ways, all computing what Keras computes:

- a layer that maps each position alone (`Layer.position_wise`: Dense, the activations,
  element-wise dropout and noise) is applied to the whole (batch, steps, ...) tensor at once:
  one matmul instead of one per step;
- any other layer becomes the body of one IR `scan` over the steps, its weights the scan's
  constants, so the graph holds the layer once, however many steps there are, and the steps
  may be symbolic;
- a layer whose call draws random numbers or updates state (Dropout with a noise_shape,
  BatchNormalization in training), which a scan body cannot, is unrolled: one call per step
  of a known number of steps, in order, as Keras's loop calls it. Each step draws anew, and
  BatchNormalization takes each step's moments and updates its moving statistics once per
  step.
"""

from __future__ import annotations

from typing import Any

from kiln.frontends.keras.layer import KerasTensor, Layer, LoweringContext, Wrapper
from kiln.ir import GraphBuilder, KilnValueError


class TimeDistributed(Wrapper):
    """Applies `layer` to every temporal slice of its input: inputs (batch, steps, ...), the
    layer sees (batch, ...), outputs (batch, steps, ...the layer's output shape).

    Args: layer, a kiln layer (or model) returning one tensor; it is built for the input
    without its steps axis, and its weights are this layer's. As in Keras, its activity
    regularizer is not applied (the wrapper calls it directly); the wrapper's own is.
    Masks: the input's mask (batch, steps) is the output's; a layer that takes masks gets each
    step's (batch,) slice of it, as Keras passes mask[i].
    """

    supports_masking = True
    takes_mask = True

    def __init__(self, layer: Any, **kwargs: Any):
        if not isinstance(layer, Layer):
            raise KilnValueError(f"Please initialize `TimeDistributed` layer with a "
                                 f"`kiln.layers.Layer` instance. Received: {layer!r}")
        self.layer: Layer | None = None
        super().__init__(**kwargs)
        self.layer = layer
        if not self.trainable:
            layer.trainable = False

    def _child_shape(self, shape: Any) -> tuple:
        if not isinstance(shape, (tuple, list)) or len(shape) < 3:
            raise KilnValueError(f"`TimeDistributed` Layer should be passed an `input_shape` "
                                 f"with at least 3 dimensions, received: {shape} (layer "
                                 f"{self.name!r})")
        return (shape[0], *shape[2:])

    def check_input_shapes(self, shapes: list) -> None:
        self.layer.check_input_shapes([self._child_shape(shapes[0])])

    def build(self, input_shape: Any) -> None:
        if not self.layer.built:
            self.layer.build(self._child_shape(input_shape))
            self.layer.built = True

    def _build_for(self, tensors: list) -> None:
        """Build as any layer; a custom layer's call runs once on one step's tensor first,
        building the sublayers it calls (as Keras builds such a layer), so the scan body
        finds all its weights."""
        super()._build_for(tensors)
        if self.layer._keras_call():
            step = tensors[0]
            self.layer.trace([KerasTensor(self._child_shape(step.shape), step.dtype, "step")],
                             {})

    # -- lowering ------------------------------------------------------------------------
    def lower(self, b, x, ctx, keras_mask=None, **kwargs):  # noqa: ANN001, ANN201
        mask = keras_mask[0] if keras_mask else None
        if mask is not None and (mask.type.rank < 2 or mask.type.shape[:2] != x.type.shape[:2]):
            raise KilnValueError(f"layer {self.name!r}: the mask passed to `TimeDistributed` "
                                 f"must start with the input's batch and steps "
                                 f"{x.type.shape[:2]}. Received: mask {mask.type}")
        step_mask = mask if self.layer.takes_mask else None
        if self.layer.position_wise and step_mask is None:
            return self._one(self.layer.lower_call(b, [x], [None], ctx, kwargs)[0])
        y = self._scanned(b, x, step_mask, ctx, kwargs)
        if y is None:
            y = self._unrolled(b, x, step_mask, ctx, kwargs)
        return y

    def _one(self, outs: list) -> Any:
        if len(outs) != 1:
            raise KilnValueError(f"layer {self.name!r}: `TimeDistributed` stacks one tensor per "
                                 f"step; layer {self.layer.name!r} returns {len(outs)}")
        return outs[0]

    def _scanned(self, b: GraphBuilder, x: Any, mask: Any, ctx: LoweringContext,
                 kwargs: dict[str, Any]) -> Any:
        """The layer as one scan over the steps, or None (having emitted nothing) when its
        call draws random numbers, updates state or adds penalties (a scan body has no
        state)."""
        sequences = [x] if mask is None else [x, mask]
        variables = self.layer.variables
        bb = GraphBuilder(f"{self.name}_step")
        steps = [bb.input(name, s.type.with_shape((s.type.shape[0], *s.type.shape[2:])))
                 for name, s in zip(("x", "mask"), sequences)]
        const_in = [bb.input(f"w{k}", v.type) for k, v in enumerate(variables)]
        body_ctx = LoweringContext(bb, ctx.training, {id(v): c for v, c in
                                                      zip(variables, const_in)},
                                   penalties=ctx.penalties)
        with bb.scope(self.layer.name):
            outs, _ = self.layer.lower_call(bb, steps[:1], steps[1:] or [None], body_ctx,
                                            kwargs)
        if body_ctx.rng_key is not None or body_ctx.updates or body_ctx.losses:
            return None
        bb.output(self._one(outs), "y")
        seqs = [_swap(b, s, f"time_major_{name}") for name, s in zip(("x", "mask"), sequences)]
        ys = b.scan(*seqs, *(ctx.value(v) for v in variables), body=bb.build(), num_carry=0,
                    num_seq=len(seqs), reverse=False, name="steps")
        return _swap(b, ys, "batch_major")

    def _unrolled(self, b: GraphBuilder, x: Any, mask: Any, ctx: LoweringContext,
                  kwargs: dict[str, Any]) -> Any:
        """One call per step, in order, stacked on axis 1 (Keras's loop for a known number
        of steps)."""
        steps = x.type.shape[1]
        if not isinstance(steps, int) or steps == 0:
            raise KilnValueError(
                f"layer {self.name!r}: layer {self.layer.name!r} ({type(self.layer).__name__}) "
                f"draws random numbers or updates its state in this call, so `TimeDistributed` "
                f"calls it once per step, which needs a known number of steps, at least "
                f"one. Received: input {x.type}")
        outs = []
        for t in range(steps):
            with b.scope(f"step{t}"):
                x_t = _step(b, x, t)
                m_t = None if mask is None else _step(b, mask, t)
                out = self._one(self.layer.lower_call(b, [x_t], [m_t], ctx, kwargs)[0])
                outs.append(b.expand_dims(out, axes=(1,)))
        return outs[0] if steps == 1 else b.concat(*outs, axis=1, name="stacked")

    def get_config(self) -> dict[str, Any]:
        from kiln.frontends.keras.saving import serialize_layer

        return {**super().get_config(), "layer": serialize_layer(self.layer)}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> TimeDistributed:
        from kiln.frontends.keras.saving import deserialize_layer

        config = dict(config)
        config["layer"] = deserialize_layer(config["layer"], custom_objects)
        return cls(**config)


def _swap(b: GraphBuilder, x: Any, name: str) -> Any:
    """x with its first two axes swapped."""
    return b.transpose(x, perm=(1, 0, *range(2, x.type.rank)), name=name)


def _step(b: GraphBuilder, x: Any, t: int) -> Any:
    """x[:, t]: step t of a (batch, steps, ...) tensor."""
    rank = x.type.rank
    begin = (None, t, *(None,) * (rank - 2))
    end = (None, t + 1, *(None,) * (rank - 2))
    return b.squeeze(b.slice(x, begin=begin, end=end), axes=(1,))
