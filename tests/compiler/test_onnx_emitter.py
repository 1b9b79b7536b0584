"""The ONNX emitter: a lowering for every op, the compile-time error for an op without one
(also inside fused and scan bodies), opset and symbols in the model, fused bodies expanded,
scan directions, the training step as one plain model, and the random bit stream."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from kiln.compiler import compile_graph
from kiln.compiler.codegen.onnx import LOWERINGS, OPSET, emit_model
from kiln.ir import OPS, GraphBuilder, KilnValueError, TensorType, f32, i64
from kiln.ir.registry import OpDef
from kiln.ir.training import RMSprop
from kiln.runtimes.reference import run_graph
from tests.ir.samples.control import DECAY
from tests.models import lstm, mlp


def run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def test_every_op_has_a_lowering() -> None:
    assert sorted(LOWERINGS) == sorted(OPS)


@pytest.fixture
def mystery(monkeypatch):  # noqa: ANN201, ANN001
    """A registered op no backend knows; monkeypatch removes it afterwards."""
    monkeypatch.setitem(OPS, "mystery", OpDef(
        name="mystery", family="test", inputs=("x",), infer=lambda types, attrs: [types[0]],
        reference=lambda ctx, x: x, differentiable=False, tags=frozenset({"elementwise"})))
    return "mystery"


def test_an_op_without_lowering_is_a_compile_time_error(mystery: str) -> None:
    b = GraphBuilder("model")
    x = b.input("x", f32["N", 3])
    with b.scope("dense"):
        b.output(b.op(mystery, x), "y")
    with pytest.raises(KilnValueError, match=r"no ONNX lowering for op 'mystery', which "
                                             r"defines %dense.mystery in @model: "
                                             r"`%dense.mystery = mystery\(%x\)"):
        emit_model(b.build())


@pytest.mark.parametrize("op", ["fused", "scan"])
def test_the_error_reaches_into_bodies(mystery: str, op: str) -> None:
    body = GraphBuilder("cell")
    h = body.input("h", f32[3])
    xt = body.input("xt", f32[3])
    with body.scope("lstm"):
        new = body.op(mystery, body.add(h, xt))
    body.output(new, "h")
    if op == "scan":
        body.output(new, "y")
    b = GraphBuilder("outer")
    h0 = b.input("h0", f32[3])
    xs = b.input("xs", f32[4, 3] if op == "scan" else f32[3])
    attrs = {"num_carry": 1, "num_seq": 1} if op == "scan" else {"kind": "elementwise"}
    result = b.op(op, h0, xs, body=body.build(), **attrs)
    b.output(result[0] if isinstance(result, tuple) else result, "out")
    with pytest.raises(KilnValueError, match=r"op 'mystery', which defines %lstm.mystery in @cell"):
        emit_model(b.build())


def test_the_model_declares_its_opset_and_keeps_symbols() -> None:
    model = emit_model(mlp().forward).model
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    assert OPSET >= 17
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (*model.graph.input, *model.graph.output)]
    assert dims[0] == ["N", 20] and dims[-1] == ["N", 3]


def test_a_training_step_is_one_plain_model() -> None:
    model = mlp()
    graph, _ = compile_graph(model.train_step(RMSprop()).graph, 2)
    assert any(node.op == "fused" for node in graph.nodes)
    emitted = emit_model(graph)
    onnx.checker.check_model(emitted.model, full_check=True)
    nodes = emitted.model.graph.node
    assert {n.domain for n in nodes} == {""}  # standard ops only, no training domain
    assert not emitted.model.functions  # fused bodies are expanded in place
    assert any("relu(" in n.doc_string for n in nodes)  # the IR line of an inner node
    assert [i.name for i in emitted.model.graph.input] == ["x", "y", *(v.name for v in
                                                                      graph.state)]
    assert emitted.updates["dense.kernel"] == "dense.kernel.updated"
    outputs = [o.name for o in emitted.model.graph.output]
    assert outputs == ["loss", "accuracy", *(f"{s}.updated" for s, _ in graph.updates)]


def test_reverse_scan_reads_and_writes_from_the_end() -> None:
    b = GraphBuilder("rev")
    c0, xs = b.input("c0", TensorType((3,), "float64")), b.input("xs", TensorType((4, 3),
                                                                                    "float64"))
    c, ys = b.op("scan", c0, xs, body=DECAY, num_carry=1, num_seq=1, reverse=True)
    b.output(c, "c")
    b.output(ys, "ys")
    graph = b.build()
    emitted = emit_model(graph)
    (scan,) = [n for n in emitted.model.graph.node if n.op_type == "Scan"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in scan.attribute}
    assert attrs["scan_input_directions"] == [1] and attrs["scan_output_directions"] == [1]
    rng = np.random.default_rng(0)
    feeds = {"c0": rng.standard_normal(3), "xs": rng.standard_normal((4, 3))}
    want = run_graph(graph, feeds)[0]
    for got, name in zip(run(emitted.model, feeds), ("c", "ys"), strict=True):
        np.testing.assert_allclose(got, want[name], rtol=1e-12)


def test_the_lstm_body_reads_the_batch_symbol() -> None:
    emitted = emit_model(lstm().forward)
    (scan,) = [n for n in emitted.model.graph.node if n.op_type == "Scan"]
    body = onnx.helper.get_attribute_value(scan.attribute[0])
    assert body.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


def test_the_bit_stream_is_splitmix64() -> None:
    # Key 0, stream 0 gives SplitMix64's published sequence for seed 0 (kiln/ir/ops/random.py).
    b = GraphBuilder("draw")
    key = b.input("key", i64[()])
    b.output(b.uniform(key, shape=(2,), dtype="float64"), "u")
    (u,) = run(emit_model(b.build()).model, {"key": np.array(0, np.int64)})
    expected = [(0xE220A8397B1DCDAF >> 11) * 2.0**-53, (0x6E789E6AA1B965F4 >> 11) * 2.0**-53]
    np.testing.assert_array_equal(u, expected)


@pytest.mark.parametrize("key", [0, -7, 2**62 + 12345])
def test_draws_shaped_by_a_symbol_match_bit_for_bit(key: int) -> None:
    b = GraphBuilder("dropout")
    x = b.input("x", f32["N", 5])
    k = b.input("key", i64[()])
    b.output(b.uniform(k, shape=("N", 5), low=-1.0, high=3.0, stream=9), "u")
    b.output(b.bernoulli(k, shape=("N", 5), p=0.25, stream=2), "keep")
    b.output(b.normal(k, shape=("N", 5), dtype="float64", stream=4), "z")
    b.output(x, "x")
    graph = b.build()
    feeds = {"x": np.zeros((6, 5), np.float32), "key": np.array(key, np.int64)}
    emitted = emit_model(graph)
    got = dict(zip([o.name for o in emitted.model.graph.output], run(emitted.model, feeds),
                   strict=True))
    want = run_graph(graph, feeds)[0]
    np.testing.assert_array_equal(got["u"], want["u"])
    np.testing.assert_array_equal(got["keep"], want["keep"])
    np.testing.assert_allclose(got["z"], want["z"], rtol=1e-12)


def test_one_hot_maps_out_of_range_indices_to_zeros() -> None:
    b = GraphBuilder("hot")
    ids = b.input("ids", TensorType(("N",), "int64"))
    b.output(b.one_hot(ids, depth=3), "hot")
    (hot,) = run(emit_model(b.build()).model, {"ids": np.array([0, 2, 3, -1, -3], np.int64)})
    np.testing.assert_array_equal(hot, [[1, 0, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0],
                                        [0, 0, 0]])


def test_shapes_with_two_symbols_are_built_at_run_time() -> None:
    b = GraphBuilder("shapes")
    x = b.input("x", TensorType(("N", "M", 2), "float32"))
    b.output(b.reshape(x, shape=("M", "N", 2)), "swapped")
    b.output(b.broadcast_to(b.constant(np.ones((1, 1, 2), np.float32)), shape=("N", "M", 2)),
             "ones")
    b.output(b.size(x, axes=(0, 1), dtype="int32"), "count")
    graph = b.build()
    feeds = {"x": np.random.default_rng(0).standard_normal((3, 4, 2)).astype(np.float32)}
    want = run_graph(graph, feeds)[0]
    emitted = emit_model(graph)
    for got, name in zip(run(emitted.model, feeds), want, strict=True):
        np.testing.assert_array_equal(got, want[name])
        assert got.dtype == want[name].dtype
