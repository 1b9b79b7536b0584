"""The training step as one graph: forward, loss, metrics, gradients, optimizer update.

    train_step(x..., y..., [sample_weight]) state(params, non-trainable, slots,
               optimizer.iterations, optimizer.learning_rate) -> loss, metrics...
    with an `update` for every parameter, slot, forward state update and the step counter.

The forward graph is the model in training mode: inputs, the model's variables as state,
named outputs, and updates for non-trainable state (batch-norm statistics, RNG counters).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kiln.ir.autodiff import backprop, remove_dead_nodes
from kiln.ir.builder import GraphBuilder
from kiln.ir.errors import KilnError, KilnValueError
from kiln.ir.graph import Graph, Value
from kiln.ir.training.optimizers import UpdateRule, clip_gradients
from kiln.ir.types import TensorType, numpy_dtype

ITERATIONS = "optimizer.iterations"
LEARNING_RATE = "optimizer.learning_rate"


@dataclass(frozen=True)
class LossSpec:
    """A loss on one model output: fn(builder, y_true, y_pred) -> per-sample loss."""

    output: str
    fn: Callable[[Any, Value, Value], Value]
    weight: float = 1.0
    target_type: TensorType | None = None  # defaults to the output's type


@dataclass(frozen=True)
class MetricSpec:
    """A metric on one model output: fn(builder, y_true, y_pred) -> per-sample value, which
    the step reports as its batch mean. With `finish`, fn returns the batch's statistics
    instead (summed over its samples, of a shape without the batch), which the step reports
    as they are: whoever runs the steps adds them up and applies `finish` to the sum
    (kiln.ir.training.summed_metrics)."""

    output: str
    name: str
    fn: Callable[[Any, Value, Value], Value]
    finish: Callable[[np.ndarray], Any] | None = None
    #: On an output with a Keras mask: the step reports [sum of the values where the mask
    #: counts, the count] (give a `finish` that divides them), as Keras 3's mean metrics
    #: weigh the values by the mask.
    masked: bool = False


@dataclass
class TrainStep:
    graph: Graph
    initial_state: dict[str, np.ndarray] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)  # output name -> target input


def target_names(forward: Graph, losses: Sequence[LossSpec], penalty: str | None = None,
                 masks: Mapping[str, str] | None = None) -> dict[str, str]:
    extra = {penalty, *(masks or {}).values()}
    single = len([name for name, _ in forward.outputs if name not in extra]) == 1
    names = {spec.output: ("y" if single else f"y.{spec.output}") for spec in losses}
    taken = {v.name for v in (*forward.inputs, *forward.state)}
    for name in names.values():
        if name in taken:
            raise KilnValueError(f"the model already has a value named {name!r}; "
                                 "rename the input so the target can use that name")
    return names


def weighted_mean(b: GraphBuilder, values: Value, weights: Value | None) -> Value:
    """Keras's "sum over batch size": sum(values * weights) / number of values."""
    if weights is None:
        return b.mean(values)
    w = weights
    while w.type.rank < values.type.rank:
        w = b.expand_dims(w, axes=(w.type.rank,))
    if w.type.dtype != values.type.dtype:
        w = b.cast(w, dtype=values.type.dtype)
    return b.div(b.sum(b.mul(values, w)), b.size(values, dtype=values.type.dtype))


def _divide_no_nan(b: GraphBuilder, x: Value, y: Value) -> Value:
    zero = b.equal(y, 0.0)
    return b.where(zero, 0.0, b.div(x, b.where(zero, 1.0, y)))


def _expect_per_element(mask: Value, values: Value, where: str) -> None:
    if values.type.rank < mask.type.rank:
        raise KilnValueError(f"{where}: the output's mask {mask.type} has more axes than the "
                             f"values {values.type}; expected one value per masked element")


def _masked_weights(b: GraphBuilder, mask: Value, weights: Value | None, values: Value,
                    where: str) -> Value:
    """Keras 3's apply_mask for "sum over batch size": total / valid where the mask counts
    (0 elsewhere, and everywhere when nothing counts), times the sample weights; so the
    weighted mean is the mean over the counted elements."""
    _expect_per_element(mask, values, where)
    dtype = values.type.dtype
    counts = b.cast(mask, dtype=dtype)
    scale = _divide_no_nan(b, b.size(counts, dtype=dtype), b.sum(counts))
    w = b.mul(counts, scale)
    if weights is not None:
        sw = b.cast(weights, dtype=dtype)
        while sw.type.rank < w.type.rank:
            sw = b.expand_dims(sw, axes=(sw.type.rank,))
        w = b.mul(w, sw)
    return w


def _masked_statistics(b: GraphBuilder, values: Value, mask: Value, where: str) -> Value:
    """[sum of the values where the mask counts, how many count] (values averaged first
    over any axes past the mask's, as Keras 3's Mean reduces them)."""
    _expect_per_element(mask, values, where)
    values = b.cast(values, dtype="float32") if values.type.dtype != "float32" else values
    if values.type.rank > mask.type.rank:
        values = b.mean(values, axes=tuple(range(mask.type.rank, values.type.rank)))
    counts = b.cast(mask, dtype="float32")
    total = b.reshape(b.sum(b.mul(values, counts)), shape=(1,))
    return b.concat(total, b.reshape(b.sum(counts), shape=(1,)), axis=0)


def _losses_and_metrics(b: GraphBuilder, forward: Graph, outs: dict[str, Value],
                        losses: Sequence[LossSpec], metrics: Sequence[MetricSpec],
                        sample_weight: bool, penalty: str | None,
                        masks: Mapping[str, str] | None = None) -> Value:
    """Declare the target inputs, emit the losses and metrics as outputs; returns the loss
    (the losses' weighted sum, plus the forward output `penalty` when given). `masks` maps
    an output to the forward output holding its Keras mask, which its losses and metrics
    apply."""
    if not losses:
        raise KilnValueError("expected at least one loss. Received: none")
    if penalty is not None:
        if penalty not in outs:
            raise KilnValueError(f"the penalty {penalty!r} is not an output of "
                                 f"@{forward.name}")
        outs = dict(outs)
        regularization = outs.pop(penalty)
        if regularization.type.rank != 0 or not regularization.type.is_float:
            raise KilnValueError(f"the penalty {penalty!r} must be a float scalar. "
                                 f"Received: {regularization.type}")
    mask_of = {}
    if masks:
        outs = dict(outs)
        for output, mask_name in masks.items():
            if mask_name not in outs:
                raise KilnValueError(f"the mask {mask_name!r} is not an output of "
                                     f"@{forward.name}")
            mask_of[output] = outs.pop(mask_name)
    names = target_names(forward, losses, penalty, masks)
    types = dict(forward.outputs)
    targets: dict[str, Value] = {}
    for spec in losses:
        if spec.output not in outs:
            raise KilnValueError(f"loss for unknown output {spec.output!r}; the model's outputs "
                                 f"are {list(outs)}")
        targets[spec.output] = b.input(names[spec.output], spec.target_type or
                                       types[spec.output].type)
    weights = None
    if sample_weight:
        batch = types[losses[0].output].type.shape[0]
        weights = b.input("sample_weight", TensorType((batch,), "float32"))
    total = None
    per_output = []
    for spec in losses:
        with b.scope(f"loss.{spec.output}" if len(losses) > 1 else "loss"):
            values = spec.fn(b, targets[spec.output], outs[spec.output])
            w = weights
            if spec.output in mask_of:
                w = _masked_weights(b, mask_of[spec.output], weights, values,
                                    f"loss on output {spec.output!r}")
            value = weighted_mean(b, values, w)
            per_output.append((spec.output, value))
            term = value if spec.weight == 1.0 else b.mul(value, spec.weight)
            total = term if total is None else b.add(total, term)
    assert total is not None
    if penalty is not None:
        if regularization.type.dtype != total.type.dtype:
            regularization = b.cast(regularization, dtype=total.type.dtype)
        total = b.add(total, regularization, name="loss.with_penalty")
    b.output(total, "loss")
    if len(losses) > 1:
        for output, value in per_output:
            b.output(value, f"{output}_loss")
    for spec in metrics:
        if spec.output not in targets:
            raise KilnValueError(f"metric {spec.name!r} on output {spec.output!r}, which has "
                                 "no loss and so no target")
        with b.scope(f"metric.{spec.name}"):
            value = spec.fn(b, targets[spec.output], outs[spec.output])
            if spec.masked:
                if spec.output not in mask_of:
                    raise KilnValueError(f"metric {spec.name!r} is masked but output "
                                         f"{spec.output!r} has no mask")
                value = _masked_statistics(b, value, mask_of[spec.output],
                                           f"metric {spec.name!r}")
            elif spec.finish is None:
                value = weighted_mean(b, value, None)
            elif not value.type.is_float or not all(isinstance(d, int)
                                                    for d in value.type.shape):
                raise KilnValueError(f"metric {spec.name!r}: expected its batch statistics as "
                                     f"a float tensor of a fixed shape. Received: "
                                     f"{value.type}")
        b.output(value, spec.name if len(losses) == 1 else f"{spec.output}_{spec.name}")
    return total


def _begin(forward: Graph, name: str) -> tuple[GraphBuilder, dict[str, Value], dict[str, Value]]:
    b = GraphBuilder(name)
    env = {v.name: b.input(v.name, v.type) for v in forward.inputs}
    env.update({v.name: b.state(v.name, v.type) for v in forward.state})
    outs, updates = b.call(forward, env, env)
    return b, outs, updates


def build_eval_step(forward: Graph, losses: Sequence[LossSpec],
                    metrics: Sequence[MetricSpec] = (), sample_weight: bool = False,
                    name: str = "test_step", penalty: str | None = None,
                    masks: Mapping[str, str] | None = None) -> Graph:
    """Loss and metrics on a batch, no update: what `evaluate` runs. `penalty` names a
    scalar output of the forward graph added to the loss (the regularizers' total)."""
    b, outs, _ = _begin(forward, name)
    _losses_and_metrics(b, forward, outs, losses, metrics, sample_weight, penalty, masks)
    return remove_dead_nodes(b.build())


def build_train_step(forward: Graph, losses: Sequence[LossSpec], optimizer: UpdateRule,
                     metrics: Sequence[MetricSpec] = (), trainable: Sequence[str] | None = None,
                     sample_weight: bool = False, name: str = "train_step",
                     penalty: str | None = None,
                     constraints: Mapping[str, Callable[[Any, Value], Value]] | None = None,
                     decayed: Sequence[str] | None = None,
                     masks: Mapping[str, str] | None = None) -> TrainStep:
    """One graph for one optimizer step, and the initial values of the optimizer's state.

    `penalty` names a scalar output of the forward graph added to the loss before it is
    differentiated (the regularizers' total); `constraints` maps a trainable variable to a
    projection f(builder, updated value) -> value stored instead (applied after the
    optimizer's update, as Keras 3's optimizer applies weight constraints). The gradients
    are clipped as the rule's clipnorm / global_clipnorm / clipvalue say; with the rule's
    weight_decay, each variable of `decayed` (default: every trainable one) is multiplied by
    (1 - weight_decay * lr) before its update."""
    constraints = dict(constraints or {})
    forward_updates = dict(forward.updates)
    if trainable is None:
        trainable = [v.name for v in forward.state
                     if v.type.is_float and v.name not in forward_updates]
    state_types = {v.name: v.type for v in forward.state}
    for p in [*trainable, *constraints]:
        if p not in state_types:
            raise KilnValueError(f"trainable variable {p!r} is not state of @{forward.name}")
    b, outs, updates = _begin(forward, name)
    loss = _losses_and_metrics(b, forward, outs, losses, metrics, sample_weight, penalty,
                               masks)

    params = [b.state_values[[v.name for v in b.state_values].index(p)] for p in trainable]
    seed = b.constant(1.0, loss.type.dtype, name="loss.seed")
    grads = clip_gradients(b, optimizer, backprop(b, [(loss, seed)], params))
    decayed = set(trainable if decayed is None else decayed)

    iterations = b.state(ITERATIONS, TensorType((), "int64"))
    lr = b.state(LEARNING_RATE, TensorType((), "float32"))
    initial: dict[str, np.ndarray] = {
        ITERATIONS: np.array(0, np.int64),
        LEARNING_RATE: np.array(optimizer.learning_rate, np.float32),
    }
    with b.scope(optimizer.name):
        step_count = b.add(iterations, b.constant(1, "int64"), name="step")
        shared = {}
        for key, init in optimizer.shared().items():
            state_name = f"{optimizer.name}.{key}"
            shared[key] = b.state(state_name, TensorType((), "float32"))
            initial[state_name] = np.array(init, np.float32)
        steps = {}
        for param, g in zip(params, grads):
            if g is None:  # no path from the loss: Keras leaves such variables unchanged
                continue
            dtype = param.type.dtype
            if dtype not in steps:
                steps[dtype] = (b.cast(lr, dtype=dtype, name="lr") if dtype != "float32" else lr,
                                b.cast(step_count, dtype=dtype, name="t"))
            slot_values = dict(shared)
            for slot, init in optimizer.slots().items():
                slot_name = f"{optimizer.name}.{slot}/{param.name}"
                slot_values[slot] = b.state(slot_name, param.type)
                initial[slot_name] = np.full(param.type.resolve({}), init,
                                             numpy_dtype(param.type.dtype))
            with b.scope(param.name):
                value = param
                if optimizer.weight_decay and param.name in decayed:
                    rate = b.mul(steps[dtype][0], optimizer.weight_decay)
                    value = b.mul(param, b.sub(1.0, rate), name="decayed")
                new_param, new_slots = optimizer.apply(b, value, g, slot_values, *steps[dtype])
            if param.name in constraints:
                with b.scope(f"{param.name}.constraint"):
                    new_param = _constrained(b, constraints[param.name], param, new_param)
            b.update(param, new_param)
            for slot, value in new_slots.items():
                b.update(slot_values[slot], value)
        if shared:
            t = b.cast(step_count, dtype="float32", name="shared_t")
            for key, value in optimizer.update_shared(b, shared, t).items():
                b.update(shared[key], value)
        b.update(iterations, step_count)
    for state_name, value in updates.items():
        b.update(state_name, value)
    return TrainStep(remove_dead_nodes(b.build()), initial,
                     target_names(forward, losses, penalty))


def _constrained(b: GraphBuilder, constraint: Callable[[Any, Value], Value], param: Value,
                 updated: Value) -> Value:
    """The constraint's projection of a variable's updated value, which must keep its type."""
    try:
        projected = constraint(b, updated)
    except KilnError as err:
        raise type(err)(f"constraint of {param.name!r}: {err}") from None
    if not isinstance(projected, Value) or projected.type != param.type:
        got = projected.type if isinstance(projected, Value) else type(projected).__name__
        raise KilnValueError(f"constraint of {param.name!r}: expected a value of the "
                             f"variable's type {param.type}. Received: {got}")
    return projected
