"""ONNX's recurrent ops (LSTM, GRU, RNN) as kiln scans.

Per direction, the input projection of every step is one matmul over the whole sequence
(x [T, B, I] times W^T, plus both biases where they add), outside the loop; the scan's body
adds h @ R^T and applies the gates, so each step is one small GEMM and elementwise work.
A reverse direction is a scan with reverse=True, whose outputs stay at their time index as
ONNX's do. The weights are transposed at import and stored as state.

Gate orders are ONNX's: LSTM i, o, f, c; GRU z, r, h. Supported: directions forward, reverse
and bidirectional; layout 0 and 1; initial states; LSTM peepholes (P); GRU's
linear_before_reset both ways. Refused: activations other than the defaults, clip,
input_forget, and sequence_lens that are not all the full length (a shorter sequence needs
masking kiln's scan does not do).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kiln.frontends.onnx.importer import Importer, NodeError, Tensor, converter, optional
from kiln.ir.builder import GraphBuilder
from kiln.ir.graph import Graph, Value
from kiln.ir.types import TensorType

_DEFAULTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
_ATTRS = {"activation_alpha": None, "activation_beta": None, "activations": None,
          "clip": None, "direction": "forward", "hidden_size": None, "layout": 0}


def _check(node: Any, a: dict) -> None:
    op = node.op_type
    if a["activations"] is not None:
        wanted = _DEFAULTS[op] * (2 if a["direction"] == "bidirectional" else 1)
        if [s.lower() for s in a["activations"]] != [s.lower() for s in wanted]:
            raise NodeError(f"kiln imports {op} with its default activations {wanted}. "
                            f"Received: {a['activations']}")
    if a["clip"] is not None:
        raise NodeError(f"kiln imports {op} without clip. Received: clip={a['clip']}")
    if a.get("input_forget"):
        raise NodeError("kiln imports LSTM with input_forget=0")
    if a["direction"] not in ("forward", "reverse", "bidirectional"):
        raise NodeError(f"expected direction forward, reverse or bidirectional. Received: "
                        f"{a['direction']!r}")
    if a["layout"] not in (0, 1):
        raise NodeError(f"expected layout 0 or 1. Received: {a['layout']}")


def _rows(imp: Importer, t: Tensor, d: int, start: int | None, stop: int | None,
          transpose: bool, name: str) -> Value:
    """t[d, start:stop] (transposed when asked) as a value: transposed at import when t is
    an initializer, in the graph otherwise."""
    if t.known:
        part = t.array[d, start:stop]  # type: ignore[index]
        return imp.materialize(np.ascontiguousarray(part.T if transpose else part), name)
    b = imp.b
    rank = t.rank
    v = b.squeeze(b.slice(imp.value(t), begin=[d, start] + [None] * (rank - 2),
                          end=[d + 1, stop] + [None] * (rank - 2)), axes=[0])
    return b.transpose(v, perm=[1, 0]) if transpose else v


def _sequence_lens(t: Tensor | None, steps: Any) -> None:
    if t is None:
        return
    if not t.known or not isinstance(steps, int) or np.any(t.array != steps):  # type: ignore
        raise NodeError(f"expected sequence_lens all equal to the sequence length {steps} "
                        f"(kiln's scan does not mask shorter sequences). Received: "
                        + ("a value computed at run time" if not t.known else
                           f"{t.array.tolist()}"))  # type: ignore[union-attr]


def _recurrent(imp: Importer, node: Any, ins: list, a: dict) -> list[Tensor]:
    _check(node, a)
    op, b = node.op_type, imp.b
    gates = _GATES[op]
    x_t = ins[0]
    if x_t is None:
        raise NodeError("expected the input X")
    w_t, r_t = (optional(ins, k) for k in (1, 2))
    if w_t is None or r_t is None:
        raise NodeError("expected the inputs W and R")
    bias = optional(ins, 3)
    dirs, rows, _ = w_t.shape()
    hidden = int(a["hidden_size"]) if a["hidden_size"] is not None else rows // gates
    if rows != gates * hidden or tuple(r_t.shape()) != (dirs, gates * hidden, hidden):
        raise NodeError(f"expected W [D, {gates}H, I] and R [D, {gates}H, H] with "
                        f"hidden_size H={hidden}. Received: W {list(w_t.shape())}, R "
                        f"{list(r_t.shape())}")
    if dirs != (2 if a["direction"] == "bidirectional" else 1):
        raise NodeError(f"expected {2 if a['direction'] == 'bidirectional' else 1} "
                        f"direction(s) in W for direction={a['direction']!r}. Received: "
                        f"{dirs}")
    x = imp.value(x_t)
    if x.type.rank != 3:
        raise NodeError(f"expected X of rank 3. Received: {x.type}")
    if a["layout"] == 1:
        x = b.transpose(x, perm=[1, 0, 2])
    steps, batch = x.type.shape[0], x.type.shape[1]
    _sequence_lens(optional(ins, 4), steps)
    initial = [optional(ins, k) for k in ((5, 6) if op == "LSTM" else (5,))]
    if a["layout"] == 1:  # initial states [B, D, H] -> [D, B, H]
        initial = [t if t is None else Tensor(value=b.transpose(imp.value(t), perm=[1, 0, 2]))
                   for t in initial]
    peep = optional(ins, 7) if op == "LSTM" else None
    dtype = x.type.dtype
    # GRU with linear_before_reset keeps R's bias of the candidate inside the reset product;
    # every other bias adds to the input projection, outside the loop.
    inside = op == "GRU" and bool(a.get("linear_before_reset"))
    names = {k: getattr(optional(ins, k), "origin", None) or op.lower() for k in (1, 2, 3, 7)}
    ys, finals = [], []
    for d in range(dirs):
        reverse = a["direction"] == "reverse" or d == 1
        xw = b.matmul(x, _rows(imp, w_t, d, 0, gates * hidden, True, f"{names[1]}.{d}"))
        if bias is not None:
            gh = gates * hidden
            outer = 2 * hidden if inside else gh  # R's bias terms that join the projection
            both = b.add(_rows(imp, bias, d, 0, outer, False, f"{names[3]}.{d}.input"),
                         _rows(imp, bias, d, gh, gh + outer, False, f"{names[3]}.{d}.rec"))
            if inside:
                both = b.concat(both, _rows(imp, bias, d, outer, gh, False,
                                            f"{names[3]}.{d}.input_h"), axis=0)
            xw = b.add(xw, both)
        carries = [b.constant(0.0, dtype, shape=(batch, hidden)) if t is None else
                   _rows(imp, t, d, None, None, False, "initial") for t in initial]
        consts = [_rows(imp, r_t, d, 0, gates * hidden, True, f"{names[2]}.{d}")]
        if inside:
            if bias is None:
                consts.append(b.constant(0.0, dtype, shape=(hidden,)))
            else:
                start = gates * hidden + 2 * hidden
                consts.append(_rows(imp, bias, d, start, start + hidden, False,
                                    f"{names[3]}.{d}.rec_h"))
        if peep is not None:
            consts.append(_rows(imp, peep, d, 0, 3 * hidden, False, f"{names[7]}.{d}"))
        body = _cell(op, hidden, batch, dtype, len(consts), inside)
        outs = b.op("scan", *carries, xw, *consts, num_carry=len(carries), num_seq=1,
                    reverse=reverse, body=body)
        finals.append(outs[:len(carries)])
        ys.append(outs[len(carries)])
    y = b.concat(*[b.expand_dims(v, axes=[1]) for v in ys], axis=1) if dirs > 1 else \
        b.expand_dims(ys[0], axes=[1])  # [T, D, B, H]
    last = [b.concat(*[b.expand_dims(f[k], axes=[0]) for f in finals], axis=0) if dirs > 1
            else b.expand_dims(finals[0][k], axes=[0]) for k in range(len(initial))]
    if a["layout"] == 1:
        y = b.transpose(y, perm=[2, 0, 1, 3])  # [B, T, D, H]
        last = [b.transpose(v, perm=[1, 0, 2]) for v in last]  # [B, D, H]
    return [Tensor(value=y), *[Tensor(value=v) for v in last]]


def _cell(op: str, hidden: int, batch: Any, dtype: str, consts: int, inside: bool) -> Graph:
    """The scan body: (carries..., the step's projected input, R^T[, extras]) -> (new
    carries..., the step's h)."""
    b = GraphBuilder(f"{op.lower()}_cell")
    state = TensorType((batch, hidden), dtype)
    h = b.input("h", state)
    c = b.input("c", state) if op == "LSTM" else None
    gates = _GATES[op]
    xw = b.input("xw", TensorType((batch, gates * hidden), dtype))
    rt = b.input("recurrent_kernel", TensorType((hidden, gates * hidden), dtype))
    extra = [b.input(f"extra{k}", TensorType((3 * hidden if op == "LSTM" else hidden,),
                                             dtype)) for k in range(consts - 1)]
    if op == "RNN":
        carries = [b.tanh(b.add(xw, b.matmul(h, rt)))]
    elif op == "LSTM":
        z = b.add(xw, b.matmul(h, rt))
        i, o, f, g = b.split(z, axis=1, sizes=[hidden] * 4)
        if extra:  # peepholes p_i, p_o, p_f
            p_i, p_o, p_f = b.split(extra[0], axis=0, sizes=[hidden] * 3)
            i, f = b.add(i, b.mul(c, p_i)), b.add(f, b.mul(c, p_f))
        c_new = b.add(b.mul(b.sigmoid(f), c), b.mul(b.sigmoid(i), b.tanh(g)))
        if extra:
            o = b.add(o, b.mul(c_new, p_o))
        carries = [b.mul(b.sigmoid(o), b.tanh(c_new)), c_new]
    else:  # GRU
        x_z, x_r, x_h = b.split(xw, axis=1, sizes=[hidden] * 3)
        r_zr, r_h = b.split(rt, axis=1, sizes=[2 * hidden, hidden])
        h_z, h_r = b.split(b.matmul(h, r_zr), axis=1, sizes=[hidden, hidden])
        z, r = b.sigmoid(b.add(x_z, h_z)), b.sigmoid(b.add(x_r, h_r))
        if inside:  # linear_before_reset: r * (h @ Rh^T + Rbh)
            cand = b.tanh(b.add(x_h, b.mul(r, b.add(b.matmul(h, r_h), extra[0]))))
        else:
            cand = b.tanh(b.add(x_h, b.matmul(b.mul(r, h), r_h)))
        carries = [b.add(b.mul(b.sub(1.0, z), cand), b.mul(z, h))]
    for name, v in zip(("h", "c"), carries, strict=False):
        b.output(v, name)
    b.output(b.reshape(carries[0], shape=state.shape), "y")  # the step's h, a copy
    return b.build()


converter("LSTM", attrs={**_ATTRS, "input_forget": 0}, outputs=3)(_recurrent)
converter("GRU", attrs={**_ATTRS, "linear_before_reset": 0}, outputs=2)(_recurrent)
converter("RNN", attrs=dict(_ATTRS), outputs=2)(_recurrent)
