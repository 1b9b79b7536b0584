"""compile()'s loss, metrics and loss_weights: resolved and checked when compile() is called,
then spread over the model's outputs (one OutputSpec each) once the outputs are known.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kiln.frontends.keras import losses as losses_mod
from kiln.frontends.keras import metrics as metrics_mod
from kiln.ir import KilnTypeError, KilnValueError
from kiln.ir.types import numpy_dtype


class OutputSpec:
    """What compile() says about one model output: its loss, loss weight and metrics."""

    def __init__(self, name: str, tensor: Any, loss: losses_mod.Loss | None, weight: float,
                 metrics: list[Any]):
        self.name, self.loss, self.weight, self.metrics = name, loss, weight, metrics
        self.shape = tuple(tensor.shape)
        self.dtype = numpy_dtype(tensor.dtype)


def per_output(value: Any, names: list[str], argument: str) -> list[Any]:
    """Spread a compile argument over the outputs: one value for all, a list in order, or a
    dict by output name (outputs it leaves out get None)."""
    if isinstance(value, dict):
        for key in value:
            if key not in names:
                raise KilnValueError(f"In the dict argument `{argument}`, key {key!r} does not "
                                     f"correspond to any model output (outputs: {names}). "
                                     f"Received: {argument}={value!r}")
        return [value.get(name) for name in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise KilnValueError(f"For a model with {len(names)} output(s), when providing the "
                                 f"`{argument}` argument as a list, it should have as many "
                                 f"entries as the model has outputs. Received: "
                                 f"{argument}={value!r} of length {len(value)}")
        return list(value)
    return [value] * len(names)


def checked_loss(loss: Any) -> Any:
    """compile's `loss` with each entry resolved to a Loss (or None), in the same structure."""
    def one(value: Any, argument: str) -> losses_mod.Loss | None:
        resolved = losses_mod.get(value, argument)
        if resolved is not None and resolved.reduction != "sum_over_batch_size":
            raise KilnValueError(f"kiln trains with the loss reduction "
                                 f"'sum_over_batch_size' only. Received: {argument} with "
                                 f"reduction={resolved.reduction!r}")
        return resolved

    if isinstance(loss, dict):
        return {k: one(v, f"loss[{k!r}]") for k, v in loss.items()}
    if isinstance(loss, (list, tuple)):
        return [one(v, f"loss[{i}]") for i, v in enumerate(loss)]
    return one(loss, "loss")


def checked_metrics(metrics: Any) -> Any:
    """compile's `metrics` as None, a list (or a list of lists, one per output) or a dict of
    lists, each metric checked."""
    def one_output(value: Any, argument: str) -> list[Any]:
        items = value if isinstance(value, (list, tuple)) else [value]
        return [metrics_mod.check(m, argument) for m in items if m is not None]

    if metrics is None:
        return None
    if isinstance(metrics, dict):
        return {k: one_output(v, f"metrics[{k!r}]") for k, v in metrics.items()}
    if not isinstance(metrics, (list, tuple)):
        raise KilnTypeError(f"Expected `metrics` argument to be a list, tuple, or dict. "
                            f"Received instead: metrics={metrics!r} of type "
                            f"{type(metrics).__name__}")
    if any(isinstance(m, (list, tuple)) for m in metrics):
        return [one_output(v, f"metrics[{i}]") for i, v in enumerate(metrics)]
    return one_output(metrics, "metrics")


def check_loss_weights(loss_weights: Any) -> None:
    """Raise unless loss_weights is None or finite numbers: one, a list, or a dict."""
    values = (loss_weights.values() if isinstance(loss_weights, dict) else
              loss_weights if isinstance(loss_weights, (list, tuple)) else
              [] if loss_weights is None else [loss_weights])
    for w in values:
        if isinstance(w, bool) or not isinstance(w, (int, float, np.number)) \
                or not np.isfinite(w):
            raise KilnValueError(f"Expected loss_weights to be numbers (one, a list, or a "
                                 f"dict by output name). Received: "
                                 f"loss_weights={loss_weights!r}")


def outputs_spec(args: dict[str, Any], names: list[str], tensors: list[Any]) -> list[OutputSpec]:
    """The checked compile arguments (`args`: loss, metrics, loss_weights) spread over the
    outputs `names` (their tensors in `tensors`), with the structure errors Keras raises."""
    losses = per_output(args["loss"], names, "loss")
    weights = per_output(args["loss_weights"], names, "loss_weights")
    metrics = args["metrics"]
    if metrics is None:
        per_metrics: list[Any] = [[] for _ in names]
    elif isinstance(metrics, dict):
        per_metrics = [m or [] for m in per_output(metrics, names, "metrics")]
    elif len(names) == 1 and metrics and not isinstance(metrics[0], list):
        per_metrics = [metrics]
    elif metrics and not all(isinstance(m, list) for m in metrics) and len(names) > 1:
        raise KilnValueError(f"For a model with multiple outputs, when providing the "
                             f"`metrics` argument as a list, it should have as many entries "
                             f"as the model has outputs ({names}), each a list of metrics. "
                             f"Received: metrics={metrics!r}")
    else:
        per_metrics = per_output(metrics, names, "metrics")
    outputs = []
    for name, tensor, loss, weight, mets in zip(names, tensors, losses, weights, per_metrics):
        if mets and loss is None:
            raise KilnValueError(f"Metrics were given for output {name!r}, which has no "
                                 f"loss and so no target. Received: metrics={metrics!r}")
        outputs.append(OutputSpec(name, tensor, loss, 1.0 if weight is None else float(weight),
                                  list(mets)))
    return outputs
