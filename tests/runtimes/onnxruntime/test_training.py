"""Training and inference on onnxruntime against the reference runtime: the MLP, convnet and
LSTM train steps of tests/models.py over several steps of changing batch size (state and
outputs), the Executable contract (state arrays updated in place, rebinding an array that was
replaced, errors naming the value), and the compile-time refusal of an op with no lowering.
"""

from __future__ import annotations

import numpy as np
import pytest

from kiln.ir import GraphBuilder, KilnTypeError, KilnValueError, TensorType, f32
from kiln.ir.registry import OPS, OpDef
from kiln.ir.training import SGD, Adam, RMSprop
from kiln.runtimes import AVAILABLE, create_executable
from kiln.runtimes.onnxruntime import OnnxRuntimeExecutable
from kiln.runtimes.reference import ReferenceExecutable
from tests.models import convnet, lstm, mlp

RTOL, ATOL = 1e-4, 1e-5  # float32 over several steps: rounding differences compound
OPTIMIZERS = {"rmsprop": RMSprop(0.01), "adam": Adam(0.01), "sgd": SGD(0.1, momentum=0.9)}
MODELS = {"mlp": mlp, "convnet": convnet, "lstm": lstm}


def assert_close(got: dict, want: dict, what: str) -> None:
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype, f"{what} {name}"
        np.testing.assert_allclose(got[name], want[name], rtol=RTOL, atol=ATOL,
                                   err_msg=f"{what} {name}")


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam", "sgd"])
@pytest.mark.parametrize("model_name", list(MODELS))
def test_train_steps_match_the_reference(model_name: str, optimizer: str) -> None:
    model, opt = MODELS[model_name](), OPTIMIZERS[optimizer]
    graphs = {"train_step": model.train_step(opt).graph, "predict": model.forward}
    ref_state, ort_state = model.initial_state(opt), model.initial_state(opt)
    ref = ReferenceExecutable(graphs, ref_state)
    ex = create_executable("onnxruntime", graphs, ort_state)
    assert ex.backend == "onnxruntime"
    arrays = dict(ort_state)
    start = 0
    for batch in (16, 16, 7, 16):  # a short batch in between: N is symbolic
        feed = {"x": model.x[start:start + batch], "y": model.y[start:start + batch]}
        start += batch
        assert_close(ex.run("train_step", feed), ref.run("train_step", feed), "output")
        assert_close(ort_state, ref_state, "state")
    assert all(ort_state[k] is arrays[k] for k in arrays), "state arrays must change in place"
    assert ort_state["optimizer.iterations"] == 4
    x = {"x": model.x[:5]}
    assert_close(ex.run("predict", x), ref.run("predict", x), "predict")


def test_outputs_are_the_callers_own_arrays() -> None:
    model = mlp()
    ex = OnnxRuntimeExecutable({"predict": model.forward}, model.initial_state(SGD()))
    first = ex.run("predict", {"x": model.x[:4]})["out"]
    kept = first.copy()
    ex.run("predict", {"x": model.x[4:8]})
    np.testing.assert_array_equal(first, kept)


def test_a_replaced_state_array_is_bound_again() -> None:
    model = mlp()
    state = model.initial_state(SGD())
    ex = OnnxRuntimeExecutable({"predict": model.forward}, state)
    before = ex.run("predict", {"x": model.x[:3]})["out"]
    state["dense_1.bias"] = np.arange(3, dtype=np.float32)  # a new array, not written in place
    after = ex.run("predict", {"x": model.x[:3]})["out"]
    ref = ReferenceExecutable({"predict": model.forward}, state).run("predict",
                                                                     {"x": model.x[:3]})
    np.testing.assert_allclose(after, ref["out"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(before, after)


def test_inputs_by_position_and_their_errors() -> None:
    model = mlp()
    ex = OnnxRuntimeExecutable({"predict": model.forward}, model.initial_state(SGD()))
    assert ex.run("predict", [model.x[:2]])["out"].shape == (2, 3)
    with pytest.raises(KilnTypeError, match=r"@forward: %x expected dtype float32"):
        ex.run("predict", {"x": model.x[:2].astype(np.float64)})
    with pytest.raises(KilnValueError, match=r"%x expected shape f32\[N,20\]"):
        ex.run("predict", {"x": model.x[:2, :5]})
    with pytest.raises(KilnValueError, match="no value given for input %x"):
        ex.run("predict", {})
    with pytest.raises(KilnValueError, match="no entry point 'train'"):
        ex.run("train", {"x": model.x[:2]})


def test_missing_state_is_refused() -> None:
    model = mlp()
    state = model.initial_state(SGD())
    del state["dense.bias"]
    ex = OnnxRuntimeExecutable({"predict": model.forward}, state)
    with pytest.raises(KilnValueError, match="no value given for state %dense.bias"):
        ex.run("predict", {"x": model.x[:2]})


def test_onnxruntime_is_an_available_backend() -> None:
    assert "onnxruntime" in AVAILABLE


def test_an_op_without_lowering_fails_when_compiling_not_when_running(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setitem(OPS, "mystery", OpDef(
        name="mystery", family="test", inputs=("x",), infer=lambda types, attrs: [types[0]],
        reference=lambda ctx, x: x, differentiable=False))
    b = GraphBuilder("odd")
    x = b.input("x", f32["N", 3])
    with b.scope("layer"):
        b.output(b.op("mystery", b.relu(x)), "y")
    with pytest.raises(KilnValueError, match=r"no ONNX lowering for op 'mystery', which defines "
                                             r"%layer.mystery in @odd"):
        OnnxRuntimeExecutable({"predict": b.build()}, {})


def test_scan_state_of_one_int_carry_and_symbols() -> None:
    # A scan whose body sees the symbolic batch and an int carry, through the executable.
    body = GraphBuilder("step")
    count = body.input("count", TensorType((), "int64"))
    h = body.input("h", f32["N", 2])
    xt = body.input("xt", f32["N", 2])
    body.output(body.add(count, 1), "count")
    body.output(body.tanh(body.add(h, xt)), "h")
    body.output(body.mul(h, 2.0), "y")
    b = GraphBuilder("rnn")
    xs = b.input("xs", f32[4, "N", 2])
    c0 = b.constant(0, "int64")
    h0 = b.constant(0.0, "float32", shape=("N", 2))
    count_out, h_out, ys = b.op("scan", c0, h0, xs, body=body.build(), num_carry=2, num_seq=1,
                                reverse=True)
    b.output(count_out, "count")
    b.output(h_out, "h")
    b.output(ys, "ys")
    graph = b.build()
    feed = {"xs": np.random.default_rng(0).standard_normal((4, 3, 2)).astype(np.float32)}
    got = OnnxRuntimeExecutable({"f": graph}, {}).run("f", feed)
    want = ReferenceExecutable({"f": graph}, {}).run("f", feed)
    assert_close(got, want, "output")


def test_scalar_and_strided_inputs() -> None:
    b = GraphBuilder("noise")
    x = b.input("x", f32["N", 3])
    key = b.input("key", TensorType((), "int64"))
    b.output(b.add(x, b.uniform(key, shape=("N", 3))), "y")
    graph = b.build()
    feed = {"x": np.arange(12, dtype=np.float32).reshape(3, 4)[:, :3],  # not contiguous
            "key": np.array(5, np.int64)}
    got = OnnxRuntimeExecutable({"f": graph}, {}).run("f", feed)
    want = ReferenceExecutable({"f": graph}, {}).run("f", feed)
    np.testing.assert_array_equal(got["y"], want["y"])


def test_an_index_past_the_table_is_a_clear_error() -> None:
    model = lstm()
    ex = OnnxRuntimeExecutable({"predict": model.forward}, model.initial_state(SGD()))
    ids = model.x[:2].copy()
    ids[1, 3] = 99  # the vocabulary has 12 words
    with pytest.raises(KilnValueError, match=r"@forward: onnxruntime failed: .*Gather"):
        ex.run("predict", {"x": ids})


def test_a_failed_step_leaves_the_state_as_it_was() -> None:
    model, opt = lstm(), SGD(0.1)
    state = model.initial_state(opt)
    before = {k: v.copy() for k, v in state.items()}
    ex = OnnxRuntimeExecutable({"train_step": model.train_step(opt).graph}, state)
    ids = model.x[:4].copy()
    ids[0, 0] = 50
    with pytest.raises(KilnValueError, match="onnxruntime failed"):
        ex.run("train_step", {"x": ids, "y": model.y[:4]})
    for name, array in before.items():
        np.testing.assert_array_equal(state[name], array, err_msg=name)
