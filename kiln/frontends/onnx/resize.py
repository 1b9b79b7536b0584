"""ONNX's Resize and Upsample as gathers and weighted sums along each resized axis.

Every Resize mode (nearest, linear, cubic, with antialias or not) is separable and linear
in its input: along one axis, output i is a fixed combination of a few inputs j,
out[i] = sum_j W[j, i] x[j], where W depends only on the axis's input and output sizes, the
scale and the node's attributes. The importer computes W once, at import, by resizing the
identity matrix with ONNX's own reference implementation (onnx.reference, the same node
on a 2-D input: the rows of eye(n) are the inputs' unit vectors). So kiln follows every
coordinate transformation mode and rounding rule exactly as the spec's implementation
does, without restating them. In the graph an axis becomes one gather (nearest: W's
columns are one-hot) or, for k taps per output, k gathers times their weights summed.

Refused: tf_crop_and_resize (its extrapolation value is not linear in the input),
keep_aspect_ratio_policy other than stretch, and a resized axis of unknown size (the batch).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kiln.frontends.onnx.importer import (
    NCHW_TO_NHWC,
    Importer,
    NodeError,
    Tensor,
    converter,
    optional,
)
from kiln.ir.graph import Value


def _axis_matrix(node: Any, opset: int, a: dict, n: int, scale: float | None,
                 size: int | None) -> np.ndarray:
    """W [n, out] of one axis: the node, applied by ONNX's reference to eye(n) along axis 1
    (axis 0 kept as is by a scale of 1)."""
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    attrs = {k: v for k, v in a.items() if v is not None and k not in ("axes", "scales")}
    inputs: list[str] = ["x"]
    inits = []
    if scale is not None:
        scales = np.array([1.0, scale], np.float32)
    if node.op_type == "Upsample" and opset < 9:
        attrs["scales"] = [1.0, float(scale)]  # type: ignore[arg-type]
    elif node.op_type == "Upsample" or opset < 11:
        inputs.append("scales")
        inits.append(helper.make_tensor("scales", TensorProto.FLOAT, [2], scales))
    elif size is not None:
        inputs += ["", "", "sizes"]
        inits.append(helper.make_tensor("sizes", TensorProto.INT64, [2], [n, size]))
    else:
        inputs += ["", "scales"]
        inits.append(helper.make_tensor("scales", TensorProto.FLOAT, [2], scales))
    graph = helper.make_graph(
        [helper.make_node(node.op_type, inputs, ["y"], **attrs)], "axis",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    (y,) = ReferenceEvaluator(model).run(None, {"x": np.eye(n)})
    return np.asarray(y, np.float64)


def _resize_axis(imp: Importer, v: Value, axis: int, weights: np.ndarray) -> Value:
    """v resized along `axis` by W [n, out] (out[i] = sum_j W[j, i] v[j])."""
    b = imp.b
    dtype = v.type.dtype
    nonzero = weights != 0
    taps = int(nonzero.sum(axis=0).max()) if weights.size else 0
    if taps == 1 and np.all(weights[nonzero] == 1.0) and np.all(nonzero.sum(axis=0) == 1):
        index = np.argmax(weights, axis=0).astype(np.int64)
        return b.gather(v, b.constant(index), axis=axis)
    out = weights.shape[1]
    shape = [1] * v.type.rank
    shape[axis] = out
    total = None
    for t in range(max(taps, 1)):
        index = np.zeros(out, np.int64)
        weight = np.zeros(out, np.float64)
        for i in range(out):
            rows = np.flatnonzero(nonzero[:, i])
            if t < len(rows):
                index[i], weight[i] = rows[t], weights[rows[t], i]
        term = b.mul(b.gather(v, b.constant(index), axis=axis),
                     b.constant(weight.astype(dtype).reshape(shape)))
        total = term if total is None else b.add(total, term)
    return total  # type: ignore[return-value]


def _resize(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    x = ins[0]
    if x is None:
        raise NodeError("expected the input X")
    if a.get("coordinate_transformation_mode") == "tf_crop_and_resize":
        raise NodeError("kiln does not import coordinate_transformation_mode="
                        "'tf_crop_and_resize' (its extrapolation is not linear in X)")
    if a.get("keep_aspect_ratio_policy") not in (None, "stretch"):
        raise NodeError(f"expected keep_aspect_ratio_policy='stretch'. Received: "
                        f"{a['keep_aspect_ratio_policy']!r}")
    shape, rank = x.shape(), x.rank
    opset = imp.opset
    scales = sizes = None
    if node.op_type == "Upsample" and opset < 9:
        scales = [float(s) for s in a["scales"]]
    elif node.op_type == "Upsample" or opset < 11:
        scales = [float(s) for s in _known(imp, ins, 1, "scales")]
    else:
        given = _known(imp, ins, 2, "scales")
        scales = [float(s) for s in given] if len(given) else None
        if scales is None:
            sizes = [int(s) for s in _known(imp, ins, 3, "sizes")]
    axes = list(range(rank)) if a.get("axes") is None else [int(k) % rank for k in a["axes"]]
    per_axis: dict[int, tuple[float | None, int | None]] = {}
    for k, axis in enumerate(axes):
        scale = scales[k] if scales is not None else None
        size = sizes[k] if sizes is not None else None
        if (scale is not None and scale == 1.0) or (size is not None and size == shape[axis]):
            continue
        if not isinstance(shape[axis], int):
            raise NodeError(f"expected resized axes of static size. Received: axis {axis} "
                            f"of shape {list(shape)}")
        per_axis[axis] = (scale, size)
    if not per_axis:  # the identity
        return [x]
    keep_layout = x.rank == 4 and x.channels_last and set(per_axis) <= {2, 3}
    v = imp.channels_last(x) if keep_layout else imp.value(x)
    for axis, (scale, size) in sorted(per_axis.items()):
        weights = _axis_matrix(node, opset, a, shape[axis], scale, size)
        v = _resize_axis(imp, v, NCHW_TO_NHWC.index(axis) if keep_layout else axis, weights)
    return [Tensor(nhwc=v) if keep_layout else Tensor(value=v)]


def _known(imp: Importer, ins: list, index: int, what: str) -> list:
    """scales or sizes, empty where the input is omitted."""
    t = optional(ins, index)
    return [] if t is None else imp.known_values(t, what)


# Defaults None: an attribute the node does not set is not set on the reference's node
# either, which then applies the spec's default of the model's opset.
converter("Resize", attrs={"antialias": None, "axes": None, "coordinate_transformation_mode":
                           None, "cubic_coeff_a": None, "exclude_outside": None,
                           "extrapolation_value": None, "keep_aspect_ratio_policy": None,
                           "mode": None, "nearest_mode": None})(_resize)
converter("Upsample", attrs={"mode": None, "scales": None})(_resize)
